"""Stage `fit_baseline@<fold>`: the benchmark's MFCC + SVM and its late fusion with video.

    python stages/fit_baseline.py 0

Reads data/features/mfcc.h5, data/features/fold<fold>/fc_video.h5 (when base.modalities
has video) and params `baseline.{svm_kernel,svm_C,svm_gamma}`, `base.{seed,modalities}`,
`data.classes`. Writes mfcc_svm.csv and mfcc_svm_video_late.csv in
data/predictions/fold<fold>/, models/baseline/fold<fold>/mfcc_svm.joblib and
metrics/baseline/fold<fold>.json. The work is :func:`avemotion.baseline.run_fit_baseline`.
"""

from __future__ import annotations

import sys

from avemotion.baseline import BaselinePaths, run_fit_baseline
from avemotion.errors import BadInputError, run_stage
from avemotion.params import load_params


def main() -> None:
    if len(sys.argv) != 2 or not sys.argv[1].isdigit():
        raise BadInputError("usage: python stages/fit_baseline.py <fold>")
    fold = int(sys.argv[1])
    summary = run_fit_baseline(load_params(), fold, BaselinePaths.default(fold))
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
