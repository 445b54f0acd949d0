"""Stage `fit_svm@<fold>`: the SVM on ELM-2's probabilities (paper section 2.4), one fold.

    python stages/fit_svm.py 0 --scores data/fusion/fold0/elm_scores.npz \\
        --elm-models models/fusion/fold0/elm --predictions data/predictions/fold0 \\
        --validation data/validation/fold0 --models models/fusion/fold0/systems

Reads the scores and ELM pairs that fit_elm wrote and params
`fusion.{svm_kernel,svm_C,svm_gamma,svm_scores,cross_fit_folds}`, `base.seed`,
`data.classes`. Fits the SVM per system and part: on ELM-2's scores of its own training
rows (`elm_svm`, the paper), on the out-of-fold scores (`elm_svm_crossfit`) and, with
cross-fit stacking, on the scores of the inner CNNs' out-of-fold features
(`elm_svm_cnn_crossfit`). Writes each system's test (`--predictions`) and validation
(`--validation`) tables and its assembled test model (ELM-1 -> ELM-2 -> SVM, one joblib
each, `--models`). The work is :func:`avemotion.fusion.stages.run_fit_svm`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from avemotion.errors import run_stage
from avemotion.fusion.stages import SvmPaths, run_fit_svm
from avemotion.params import stage_params
from avemotion.splits import fold_argument, fold_name


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("fold", type=fold_argument, help="a test fold's number, or final")
    for name, what in (
        ("scores", "fit_elm's ELM-2 scores (npz)"),
        ("elm-models", "fit_elm's folder of ELM pairs"),
        ("predictions", "the fold's test predictions folder"),
        ("validation", "the fold's validation predictions folder"),
        ("models", "folder of the assembled systems (joblib) to write"),
    ):
        parser.add_argument(f"--{name}", type=Path, required=True, help=what)
    parser.add_argument(
        "--stage",
        default="fit_svm",
        help="the dvc.yaml stage whose params this run reads (the final model's stage)",
    )
    return parser.parse_args()


def main() -> None:
    args = arguments()
    paths = SvmPaths(args.scores, args.elm_models, args.predictions, args.validation, args.models)
    summary = run_fit_svm(stage_params(args.stage), args.fold, paths)
    for system, parts in summary.items():
        for part, numbers in parts.items():
            accuracy = numbers["accuracy"]
            print(
                f"{fold_name(args.fold)} {system} ({part}): SVM fitting accuracy "
                f"{numbers['svm_fit_accuracy']:.3f}, segment accuracy "
                f"{'n/a' if accuracy is None else f'{accuracy:.3f}'}, "
                f"{numbers['n_support_vectors']} support vectors"
            )


if __name__ == "__main__":
    run_stage(main)
