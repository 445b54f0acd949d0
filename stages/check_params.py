"""Stage `check_params`: the whole params.yaml checked before any other stage runs.

    python stages/check_params.py params.yaml data/params_checked.txt

Every other stage descends from this one, so a misspelled key or a bad value anywhere in
params.yaml (`train: {epoch: 5}`, `fusion: {svm_c: 2}`) stops `dvc repro` before any work,
with one line naming the key, even where the stages that read that section would not
rerun. The output names the schema that passed and nothing else: it stays byte-identical
across valid edits, so no downstream stage reruns because of it. Reads no params through
DVC (its dependency is the whole file).
"""

from __future__ import annotations

import sys
from pathlib import Path

from avemotion.atomic import atomic_path
from avemotion.errors import BadInputError, run_stage
from avemotion.params import load_params

USAGE = "usage: python stages/check_params.py PARAMS_YAML CHECKED_TXT"


def main() -> None:
    if len(sys.argv) != 3:
        raise BadInputError(USAGE)
    params_path, out_path = (Path(p) for p in sys.argv[1:])
    load_params(params_path)
    with atomic_path(out_path) as partial:
        partial.write_text(f"{params_path} satisfies avemotion.params.schema.Params\n")
    print(f"{params_path}: every key and value checked")


if __name__ == "__main__":
    run_stage(main)
