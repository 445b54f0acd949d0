"""DVC stage ``extract_keyframes``: each clip's face keyframes per 2 s segment (paper 2.1).

Usage::

    python stages/extract_keyframes.py data/index.csv data/features/keyframes.h5 \
        data/features/keyframes_rejects.csv

Reads params ``video``, ``base.{modalities,segment_s,hop_s,last_segment,min_segment_s}``
(and ``base.{n_jobs,backend,dask_scheduler}``, which change speed only). Writes one row per
analysis segment, ``(n_keyframes, keyframe_size, keyframe_size)`` uint8 equalised gray face
crops with the clip's labels, and the clips it could not use, with the reason, to the
rejects CSV. The work is :func:`avemotion.video.extract_keyframes`.
"""

from __future__ import annotations

import sys

from avemotion.errors import BadInputError, run_stage
from avemotion.index import read_index
from avemotion.params import stage_params
from avemotion.video import extract_keyframes

USAGE = "usage: python stages/extract_keyframes.py INDEX_CSV KEYFRAMES_H5 REJECTS_CSV"


def main() -> None:
    if len(sys.argv) != 4:
        raise BadInputError(USAGE)
    index_path, out_path, rejects_path = sys.argv[1:]
    summary = extract_keyframes(
        read_index(index_path), stage_params("extract_keyframes"), out_path, rejects_path
    )
    if summary.get("skipped"):
        print(f"keyframes: {summary['skipped']}; wrote an empty table")
        return
    face_share = summary.get("face_frames", 0) / max(summary.get("frames", 0), 1)
    print(
        f"{out_path}: {summary['rows']} segments from {summary['clips_written']} of "
        f"{summary['clips']} clips ({summary.get('frames', 0)} frames, face in {face_share:.1%}, "
        f"{summary.get('corrupt_packets', 0)} corrupt packets skipped, "
        f"{summary.get('segments_without_face', 0)} segments without a face left out); "
        f"{summary['rejected']} clips rejected, see {rejects_path}"
    )


if __name__ == "__main__":
    run_stage(main)
