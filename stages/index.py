"""Stage `index`: walk the dataset, check every file, assign folds.

    python stages/index.py data/index.csv data/rejects.csv

Reads params `data:`, `split:` and `base.modalities` / `base.n_jobs`.
"""

from __future__ import annotations

import sys
from pathlib import Path

from avemotion.errors import run_stage
from avemotion.index import build_index, summarise
from avemotion.params import load_params, resolve_n_jobs, section
from avemotion.rejects import write_rejects


def main() -> None:
    index_path, rejects_path = (
        Path(p) for p in (sys.argv[1:3] or ["data/index.csv", "data/rejects.csv"])
    )
    params = load_params()
    base = section(params, "base")
    result = build_index(
        section(params, "data"),
        section(params, "split"),
        modalities=list(base["modalities"]),
        n_jobs=resolve_n_jobs(base.get("n_jobs")),
    )
    index_path.parent.mkdir(parents=True, exist_ok=True)
    result.clips.to_csv(index_path, index=False)
    write_rejects(rejects_path, result.rejects)
    print(summarise(result))
    for reject in result.rejects:
        print(f"  rejected {reject.path}: {reject.reason}")


if __name__ == "__main__":
    run_stage(main)
