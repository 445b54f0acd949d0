"""Stage `fit_svm@<fold>`: the SVM on ELM-2's probabilities (paper section 2.4), one fold.

    python stages/fit_svm.py 0 --scores data/fusion/fold0/elm_scores.npz \\
        --elm-model models/fusion/fold0/elm.joblib --predictions data/predictions/fold0 \\
        --elm-svm-model models/fusion/fold0/elm_svm.joblib \\
        --crossfit-model models/fusion/fold0/elm_svm_crossfit.joblib

Reads the scores and ELM pair that fit_elm wrote and params
`fusion.{svm_kernel,svm_C,svm_gamma,svm_scores,cross_fit_folds}`, `base.seed`,
`data.classes`. Fits the SVM twice: on ELM-2's scores of its own training rows (the
paper) and on the out-of-fold scores (cross-fitting). Writes elm_svm.csv and
elm_svm_crossfit.csv in `--predictions` and the two assembled models (ELM-1 -> ELM-2 ->
SVM, one joblib each). The work is :func:`avemotion.fusion.stages.run_fit_svm`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from avemotion.errors import run_stage
from avemotion.fusion.stages import SvmPaths, run_fit_svm
from avemotion.params import stage_params


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("fold", type=int)
    parser.add_argument("--scores", type=Path, required=True, help="fit_elm's ELM-2 scores")
    parser.add_argument("--elm-model", type=Path, required=True, help="fit_elm's ELM pair")
    parser.add_argument("--predictions", type=Path, required=True, help="predictions folder")
    parser.add_argument("--elm-svm-model", type=Path, required=True, help="elm_svm to write")
    parser.add_argument("--crossfit-model", type=Path, required=True, help="crossfit to write")
    return parser.parse_args()


def main() -> None:
    args = arguments()
    models = {"elm_svm": args.elm_svm_model, "elm_svm_crossfit": args.crossfit_model}
    paths = SvmPaths(args.scores, args.elm_model, args.predictions, models)
    summary = run_fit_svm(stage_params("fit_svm"), args.fold, paths)
    for system, numbers in summary.items():
        print(
            f"fold {args.fold} {system}: SVM training accuracy "
            f"{numbers['svm_train_accuracy']:.3f}, test segment accuracy "
            f"{numbers['test_accuracy']:.3f}, {numbers['n_support_vectors']} support vectors"
        )


if __name__ == "__main__":
    run_stage(main)
