"""DVC stage ``build_visual_tensors``: keyframes -> the 3D-CNN's input tensors (paper 2.1).

Usage::

    python stages/build_visual_tensors.py data/features/keyframes.h5 data/features/video.h5

Reads params ``video`` (input_size, idp_combine, dtype), ``augment.rotation_deg`` and
``base.modalities`` (and ``base.{n_jobs,backend,dask_scheduler}``, which change speed
only). Each keyframe becomes three images, mean-normalised gray, LBP and IDP, stacked to
``(n_keyframes, input_size, input_size, 3)`` per segment; training-side clips also get
one rotated copy per angle, marked ``augmented``. The work is
:func:`avemotion.video.build_visual_tensors`.
"""

from __future__ import annotations

import sys

from avemotion.errors import BadInputError, run_stage
from avemotion.params import stage_params
from avemotion.video import build_visual_tensors

USAGE = "usage: python stages/build_visual_tensors.py KEYFRAMES_H5 VIDEO_H5"


def main() -> None:
    if len(sys.argv) != 3:
        raise BadInputError(USAGE)
    keyframes_path, out_path = sys.argv[1:]
    summary = build_visual_tensors(keyframes_path, stage_params("build_visual_tensors"), out_path)
    print(
        f"{out_path}: {summary['segments']} segments, "
        f"{summary['augmented']} rotated copies for training"
    )


if __name__ == "__main__":
    run_stage(main)
