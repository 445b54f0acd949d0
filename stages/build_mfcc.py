"""Stage `build_mfcc`: MFCC statistics per analysis segment, for the benchmark baseline.

    python stages/build_mfcc.py data/index.csv data/features/mfcc.h5 \\
        data/features/mfcc_rejects.csv

Reads params `baseline.{n_mfcc,n_filters,frame_s,step_s,preemph,delta_n}`,
`base.{modalities,segment_s,hop_s,last_segment,min_segment_s}` (and
`base.{n_jobs,backend,dask_scheduler}`, which change speed only) and
`audio.{sample_rate,max_missing_s}`. One row per segment, the same segments as the CNN
branches, original rows only. The work is
:func:`avemotion.audio.mfcc.build_mfcc_features`.
"""

from __future__ import annotations

import sys
from pathlib import Path

from avemotion.audio.mfcc import build_mfcc_features
from avemotion.errors import BadInputError, run_stage
from avemotion.index import read_index
from avemotion.params import stage_params

USAGE = "usage: python stages/build_mfcc.py INDEX_CSV MFCC_H5 REJECTS_CSV"


def main() -> None:
    if len(sys.argv) != 4:
        raise BadInputError(USAGE)
    index_path, out_path, rejects_path = (Path(p) for p in sys.argv[1:4])
    summary = build_mfcc_features(
        read_index(index_path), stage_params("build_mfcc"), out_path, rejects_path
    )
    if summary.get("skipped"):
        print(f"mfcc: {summary['skipped']}; wrote an empty table")
        return
    print(
        f"mfcc: {summary['clips_written']} of {summary['clips']} clips -> {summary['rows']} rows;"
        f" {summary['rejected']} rejected (see {rejects_path})"
    )


if __name__ == "__main__":
    run_stage(main)
