"""Stage `build_functionals`: openSMILE functionals per analysis segment and per clip.

    python stages/build_functionals.py data/index.csv data/features/functionals \\
        data/features/functionals_rejects.csv

Reads params `functionals.sets` (egemaps: eGeMAPSv02, 88 values; compare: ComParE_2016,
6373 values), `audio.{sample_rate,max_missing_s}`,
`base.{modalities,segment_s,hop_s,last_segment,min_segment_s,seed}` (and
`base.{n_jobs,backend,dask_scheduler}`, which change speed only) and `augment.snr_db`.
Writes `<set>.h5` (one row per row of the spectrogram table `audio.h5`, noisy copies
included, same keys in the same order) and `<set>_clip.h5` (one row per clip and copy)
into the folder for each set; the folder is empty when `functionals.sets` is []. The
work is :func:`avemotion.audio.functionals.build_functionals`.
"""

from __future__ import annotations

import sys
from pathlib import Path

from avemotion.audio.functionals import build_functionals, summarise
from avemotion.errors import BadInputError, run_stage
from avemotion.index import read_index
from avemotion.params import stage_params
from avemotion.rejects import read_rejects

USAGE = "usage: python stages/build_functionals.py INDEX_CSV OUT_DIR REJECTS_CSV"


def main() -> None:
    if len(sys.argv) != 4:
        raise BadInputError(USAGE)
    index_path, out_dir, rejects_path = (Path(p) for p in sys.argv[1:4])
    params = stage_params("build_functionals")
    summaries = build_functionals(read_index(index_path), params, out_dir, rejects_path)
    if not summaries:
        print(f"functionals: functionals.sets is empty; {out_dir} holds no table")
    for table, summary in summaries.items():
        print(summarise(table, summary))
    for reject in read_rejects(rejects_path):
        print(f"  rejected from {reject.stage}: {reject.path}: {reject.reason}")


if __name__ == "__main__":
    run_stage(main)
