"""Stage `extract_features@<modality>-<fold>`: FC features and class probabilities.

    python stages/extract_features.py audio 0 --table data/features/audio.h5 \\
        --model models/audio/fold0/best.pt --out data/features/fold0/fc_audio.h5

Reads params `base.{profile,device}`, `data.classes` and `models`. Runs the fold's best
model over every row of `--table` (all folds, augmented rows marked) and writes `--out`:
the last hidden FC layer as `x`, the branch's softmax as `probs`, and the aligned meta
columns. The work is :func:`avemotion.branch.extract_branch_features`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from avemotion.branch import extract_branch_features
from avemotion.errors import run_stage
from avemotion.params import MODALITIES, stage_params
from avemotion.splits import fold_argument, fold_name


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modality", choices=MODALITIES)
    parser.add_argument("fold", type=fold_argument, help="a test fold's number, or final")
    parser.add_argument("--table", type=Path, required=True, help="the branch's segment table")
    parser.add_argument("--model", type=Path, required=True, help="the fold's best.pt")
    parser.add_argument("--out", type=Path, required=True, help="FC-feature table to write")
    parser.add_argument(
        "--stage",
        default="extract_features",
        help="the dvc.yaml stage whose params this run reads (the final model's stage)",
    )
    return parser.parse_args()


def main() -> None:
    args = arguments()
    params = stage_params(args.stage)
    n_rows = extract_branch_features(params, args.modality, args.table, args.model, args.out)
    print(f"{args.modality} {fold_name(args.fold)}: {n_rows} rows of FC features -> {args.out}")


if __name__ == "__main__":
    run_stage(main)
