"""Stage `index`: walk the dataset, check every file, assign folds.

    python stages/index.py data/index.csv data/rejects.csv

Reads params `data`, `split.{protocol,n_folds,test_size,test_speakers,seed}`,
`base.modalities` (and `base.{n_jobs,backend,dask_scheduler}`, which change speed only).
The work is :func:`avemotion.index.build_index`.
"""

from __future__ import annotations

import sys
from pathlib import Path

from avemotion.atomic import atomic_path
from avemotion.errors import BadInputError, run_stage
from avemotion.index import build_index, summarise
from avemotion.parallel import Workers
from avemotion.params import stage_params
from avemotion.rejects import write_rejects

USAGE = "usage: python stages/index.py INDEX_CSV REJECTS_CSV"


def main() -> None:
    if len(sys.argv) != 3:
        raise BadInputError(USAGE)
    index_path, rejects_path = (Path(p) for p in sys.argv[1:])
    params = stage_params("index")
    result = build_index(
        params.data,
        params.split,
        modalities=params.base.modalities,
        n_jobs=Workers.from_params(params.base),
    )
    with atomic_path(index_path) as partial:
        result.clips.to_csv(partial, index=False)
    write_rejects(rejects_path, result.rejects)
    print(summarise(result))
    for reject in result.rejects:
        print(f"  rejected {reject.path}: {reject.reason}")


if __name__ == "__main__":
    run_stage(main)
