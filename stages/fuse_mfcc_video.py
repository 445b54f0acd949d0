"""Stage `fuse_mfcc_video@<fold>`: the benchmark's late fusion of the MFCC-SVM with video.

    python stages/fuse_mfcc_video.py 0 --video data/features/fold0/fc_video.h5 \\
        --audio data/predictions/fold0/mfcc_svm.csv \\
        --audio-validation data/validation/fold0/mfcc_svm.csv \\
        --out data/predictions/fold0/mfcc_svm_video_late.csv \\
        --out-validation data/validation/fold0/mfcc_svm_video_late.csv

Reads the MFCC-SVM's test and validation predictions (stage fit_baseline), the fold's
video FC-feature table (its class probabilities) and param `base.modalities`; writes
the mean of the two branches' probabilities per segment, for the test fold and the
validation speakers (header-only tables, with the MFCC-SVM's class columns, when the run
lacks a branch).
Its own stage so that a changed video CNN reruns this mean, not the SVMs' C grids. The
work is :func:`avemotion.baseline.run_mfcc_video_late`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from avemotion.baseline import run_mfcc_video_late
from avemotion.errors import run_stage
from avemotion.params import stage_params


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("fold", type=int)
    for name, what in (
        ("video", "the fold's video FC-feature table"),
        ("audio", "the MFCC-SVM's test predictions"),
        ("audio-validation", "the MFCC-SVM's validation predictions"),
        ("out", "the late fusion's test predictions to write"),
        ("out-validation", "the late fusion's validation predictions to write"),
    ):
        parser.add_argument(f"--{name}", type=Path, required=True, help=what)
    return parser.parse_args()


def main() -> None:
    args = arguments()
    written = run_mfcc_video_late(
        stage_params("fuse_mfcc_video"),
        {"test": args.audio, "validation": args.audio_validation},
        args.video,
        {"test": args.out, "validation": args.out_validation},
    )
    print(
        f"fold {args.fold} mfcc_svm_video_late: {written['test']} test rows, "
        f"{written['validation']} validation rows"
    )


if __name__ == "__main__":
    run_stage(main)
