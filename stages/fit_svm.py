"""Stage `fit_svm@<fold>`: the SVM on ELM-2's probabilities (paper section 2.4), one fold.

    python stages/fit_svm.py 0

Reads data/fusion/fold<fold>/elm_scores.npz and models/fusion/fold<fold>/elm.joblib
(from fit_elm) and params `fusion.{svm_kernel,svm_C,svm_gamma,svm_scores}`, `base.seed`,
`data.classes`. Fits the SVM twice: on ELM-2's scores of its own training rows (the
paper) and on the out-of-fold scores (cross-fitting). Writes elm_svm.csv and
elm_svm_crossfit.csv in data/predictions/fold<fold>/ and the two assembled models
(ELM-1 -> ELM-2 -> SVM, one joblib each) in models/fusion/fold<fold>/. The work is
:func:`avemotion.fusion.run_fit_svm`.
"""

from __future__ import annotations

import sys

from avemotion.errors import BadInputError, run_stage
from avemotion.fusion import FusionPaths, run_fit_svm, run_modalities
from avemotion.params import load_params


def main() -> None:
    if len(sys.argv) != 2 or not sys.argv[1].isdigit():
        raise BadInputError("usage: python stages/fit_svm.py <fold>")
    fold = int(sys.argv[1])
    params = load_params()
    summary = run_fit_svm(params, fold, FusionPaths.default(fold, run_modalities(params)))
    for system, numbers in summary.items():
        print(
            f"fold {fold} {system}: SVM training accuracy {numbers['svm_train_accuracy']:.3f}, "
            f"test segment accuracy {numbers['test_accuracy']:.3f}, "
            f"{numbers['n_support_vectors']} support vectors"
        )


if __name__ == "__main__":
    run_stage(main)
