"""Stage `spectrograms`: every clip's 2 s segments as log-mel + delta + delta-delta images.

    python stages/build_spectrograms.py data/index.csv data/features/audio.h5 \\
        data/features/audio_rejects.csv

Reads params `audio`,
`base.{modalities,segment_s,hop_s,last_segment,min_segment_s,seed}` (and
`base.{n_jobs,backend,dask_scheduler}`, which change speed only) and `augment.snr_db`.
The work is :func:`avemotion.audio.frontend.build_audio_features` (paper section 2.2).
"""

from __future__ import annotations

import sys
from pathlib import Path

from avemotion.audio.frontend import build_audio_features, summarise
from avemotion.errors import BadInputError, run_stage
from avemotion.index import read_index
from avemotion.params import stage_params
from avemotion.rejects import read_rejects

USAGE = "usage: python stages/build_spectrograms.py INDEX_CSV AUDIO_H5 REJECTS_CSV"


def main() -> None:
    if len(sys.argv) != 4:
        raise BadInputError(USAGE)
    index_path, out_path, rejects_path = (Path(p) for p in sys.argv[1:4])
    params = stage_params("build_spectrograms")
    index = read_index(index_path)
    summary = build_audio_features(index, params, out_path, rejects_path)
    print(summarise(summary))
    for reject in read_rejects(rejects_path):
        print(f"  rejected {reject.path}: {reject.reason}")


if __name__ == "__main__":
    run_stage(main)
