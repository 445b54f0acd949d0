"""Stage `extract_features@<modality>-<fold>`: FC features and class probabilities.

    python stages/extract_features.py audio 0

Runs the fold's best model over every row of data/features/<modality>.h5 (all folds,
augmented rows marked) and writes data/features/fold<fold>/fc_<modality>.h5: the last
hidden FC layer as `x`, the branch's softmax as `probs`, and the aligned meta columns.
"""

from __future__ import annotations

import sys

from avemotion.branch import BranchPaths, extract_branch_features
from avemotion.errors import BadInputError, run_stage
from avemotion.params import load_params


def main() -> None:
    if len(sys.argv) != 3:
        raise BadInputError("usage: python stages/extract_features.py <audio|video> <fold>")
    modality, fold = sys.argv[1], int(sys.argv[2])
    paths = BranchPaths.default(modality, fold)
    n_rows = extract_branch_features(load_params(), modality, paths)
    print(f"{modality} fold {fold}: {n_rows} rows of FC features -> {paths.features}")


if __name__ == "__main__":
    run_stage(main)
