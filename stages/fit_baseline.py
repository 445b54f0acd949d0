"""Stage `fit_baseline@<fold>`: SVMs on MFCCs and openSMILE functionals.

    python stages/fit_baseline.py 0 --mfcc data/features/mfcc.h5 \\
        --functionals data/features/functionals --video data/features/video.h5 \\
        --models models/baseline/fold0 --predictions data/predictions/fold0 \\
        --validation data/validation/fold0 --metrics metrics/baseline/fold0.json

Reads the MFCC table, the functionals of `functionals.sets`, the video segment table's
keys (when base.modalities has video: audio systems are scored on the segments video
has too) and params
`baseline.{svm_kernel,svm_C_grid,svm_gamma}`, `train.{validation_fraction,validate_by}`
(the validation speakers C is chosen on), `base.{seed,modalities,speaker_norm}`,
`data.classes`.
Writes mfcc_svm, egemaps_svm and compare_svm tables in
`--predictions` (test) and `--validation`, the fitted SVMs in `--models` and the fold's
summary (the C chosen, validation accuracy per C). The work is
:func:`avemotion.baseline.run_fit_baseline`.
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
        ("functionals", "the folder of openSMILE functionals tables (<set>.h5)"),
        ("video", "the video segment table, whose keys are read when the run has video"),
        ("models", "the folder of fitted SVMs (joblib) to write"),
        ("predictions", "the fold's test predictions folder"),
        ("validation", "the fold's validation predictions folder"),
        ("metrics", "baseline summary JSON to write"),
    ):
        parser.add_argument(f"--{name}", type=Path, required=True, help=what)
    return parser.parse_args()


def main() -> None:
    args = arguments()
    paths = BaselinePaths(
        args.mfcc,
        args.functionals,
        args.video,
        args.models,
        args.predictions,
        args.validation,
        args.metrics,
    )
    summary = run_fit_baseline(stage_params("fit_baseline"), args.fold, paths)
    if not summary["systems"]:
        print(f"fold {args.fold} baselines: no audio table; wrote empty tables")
    for system, fitted in summary["systems"].items():
        chosen = fitted["validation_clip_accuracy_by_C"].get(str(fitted["C"]))
        print(
            f"fold {args.fold} {system}: C={fitted['C']:g} (validation clip accuracy "
            f"{'n/a' if chosen is None else f'{chosen:.3f}'}), "
            f"{summary['written']['test'][system]} test rows"
        )


if __name__ == "__main__":
    run_stage(main)
