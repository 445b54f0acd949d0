"""DVC stage ``extract_keyframes``: each clip's face keyframes per 2 s segment (paper 2.1).

Usage::

    python stages/extract_keyframes.py data/index.csv data/features/keyframes.h5 \
        data/features/keyframes_rejects.csv

Reads ``params.yaml`` sections ``base`` (segments, n_jobs) and ``video``. Writes one row per
analysis segment, ``(n_keyframes, keyframe_size, keyframe_size)`` uint8 equalised gray face
crops with the clip's labels, and the clips it could not use, with the reason, to the
rejects CSV. The work is :func:`avemotion.video.extract_keyframes`.
"""

from __future__ import annotations

import sys

from avemotion.errors import BadInputError, run_stage
from avemotion.index import read_index
from avemotion.params import load_params
from avemotion.video import extract_keyframes

USAGE = "usage: python stages/extract_keyframes.py INDEX_CSV KEYFRAMES_H5 REJECTS_CSV"


def main() -> None:
    if len(sys.argv) != 4:
        raise BadInputError(USAGE)
    index_path, out_path, rejects_path = sys.argv[1:]
    summary = extract_keyframes(read_index(index_path), load_params(), out_path, rejects_path)
    face_share = summary["face_frames"] / max(summary["frames"], 1)
    print(
        f"{out_path}: {summary['segments']} segments from {summary['clips']} clips "
        f"({summary['frames']} frames, face in {face_share:.1%}, "
        f"{summary['corrupt_packets']} corrupt packets skipped, "
        f"{summary['segments_without_face']} segments without a face left out); "
        f"{summary['rejects']} clips rejected, see {rejects_path}"
    )


if __name__ == "__main__":
    run_stage(main)
