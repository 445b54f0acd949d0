"""Stage `fit_baseline@<fold>`: the benchmark's MFCC + SVM and its late fusion with video.

    python stages/fit_baseline.py 0 --mfcc data/features/mfcc.h5 \\
        --video data/features/fold0/fc_video.h5 --model models/baseline/fold0/mfcc_svm.joblib \\
        --predictions data/predictions/fold0 --metrics metrics/baseline/fold0.json

Reads the MFCC table, the fold's video FC features (when base.modalities has video) and
params `baseline.{svm_kernel,svm_C,svm_gamma}`, `base.{seed,modalities}`, `data.classes`.
Writes mfcc_svm.csv and mfcc_svm_video_late.csv in `--predictions`, the fitted model and
the fold's metrics. The work is :func:`avemotion.baseline.run_fit_baseline`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from avemotion.baseline import BaselinePaths, run_fit_baseline
from avemotion.errors import run_stage
from avemotion.params import stage_params


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("fold", type=int)
    for name, what in (
        ("mfcc", "the MFCC table"),
        ("video", "the fold's video FC-feature table (read when the run has video)"),
        ("model", "the MFCC-SVM (joblib) to write"),
        ("predictions", "the fold's predictions folder"),
        ("metrics", "baseline metrics JSON to write"),
    ):
        parser.add_argument(f"--{name}", type=Path, required=True, help=what)
    return parser.parse_args()


def main() -> None:
    args = arguments()
    paths = BaselinePaths(args.mfcc, args.video, args.model, args.predictions, args.metrics)
    summary = run_fit_baseline(stage_params("fit_baseline"), args.fold, paths)
    fold = args.fold
    if "skipped" in summary:
        print(f"fold {fold} baseline: {summary['skipped']}; wrote empty tables")
        return
    accuracy = summary["test_accuracy"]
    print(
        f"fold {fold} mfcc_svm: {summary['n_train_rows']} training rows, SVM training accuracy "
        f"{summary['svm_train_accuracy']:.3f}; test segment accuracy "
        f"{'n/a' if accuracy is None else f'{accuracy:.3f}'} "
        f"on {summary['written']['mfcc_svm']} rows"
    )


if __name__ == "__main__":
    run_stage(main)
