"""How many ELM pairs should the fusion average? A screen on validation speakers.

    .venv/bin/python benchmarks/elm_members.py --run /path/to/finished/run \\
        [--members 1 5 10 20] [--elm-C 0.01] [--hidden-per-class 200]

``--run`` is a workspace whose pipeline has run (its ``params.yaml`` and each test
fold's ``data/features/fold<f>`` and ``data/features/functionals``), e.g. a scratch
clone after the README's RAVDESS command. For each test fold it fits what fit_elm fits
for the validation part (the paper stacking: the ELM pairs on the fitting rows, the SVM
on their own scores) with the fusion params of ``--run`` but the ensemble size, C and
ELM-2 width given here, and prints the clip accuracy on the fold's validation speakers.
The members of a size-N ensemble are the first N of the largest one, so the sizes are
compared on the same random draws. The test folds are never scored: this screens
candidates before they are run as DVC experiments (``-S fusion.elm_members=N``).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import pandas as pd

from avemotion.evaluation import clip_level, predicted
from avemotion.fusion.estimators import TwoStageELM, make_svm, svm_class_scores
from avemotion.fusion.inputs import block_columns, block_order, read_inputs
from avemotion.fusion.stages import elm_params
from avemotion.params import load_params
from avemotion.splits import held_and_fitting


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="a workspace that has run")
    parser.add_argument("--members", type=int, nargs="+", default=[1, 5, 10, 20])
    parser.add_argument("--elm-C", type=float, default=None, help="default: the run's")
    parser.add_argument("--hidden-per-class", type=int, default=None, help="default: the run's")
    return parser.parse_args()


def clip_accuracy(probs: np.ndarray, classes: np.ndarray, labels, clips) -> float:
    """Accuracy of the clips' mean segment scores (evaluate's :func:`clip_level`);
    ``probs`` columns follow ``classes``."""
    table = pd.DataFrame(probs, columns=[f"p{i}" for i in range(probs.shape[1])])
    clips_table = clip_level(table.assign(clip_id=clips, label=labels))
    return float(np.mean(classes[predicted(clips_table)] == clips_table["label"].to_numpy()))


def screen_fold(params, fold: int, args: argparse.Namespace) -> dict[int, float]:
    """Validation clip accuracy of elm_svm for each ensemble size of ``args.members``."""
    fusion, seed = params.fusion, params.base.seed
    inputs = read_inputs(
        params, Path(f"data/features/fold{fold}"), Path("data/features/functionals")
    )
    meta = inputs.fused.meta
    held, fitting = held_and_fitting(meta, fold, params.train, seed)
    fit = np.flatnonzero(fitting)
    scored = np.flatnonzero(held & ~np.asarray(meta["augmented"], dtype=bool))
    columns = block_columns(params, inputs)
    x, y = inputs.matrix(block_order(params)), meta["label"]
    gender = np.asarray(meta["gender"]).astype(str)
    ensemble = TwoStageELM(
        **{
            **elm_params(fusion, seed),
            "elm2_hidden_per_class": args.hidden_per_class or fusion.elm2_hidden_per_class,
            "elm_C": args.elm_C or fusion.elm_C,
            "n_members": max(args.members),
        },
        emotion_columns=np.concatenate([columns[n] for n in fusion.inputs]),
        gender_columns=np.concatenate([columns[n] for n in fusion.gender_inputs]),
    ).fit(x[fit], y[fit], gender[fit])
    full = ensemble.members_
    accuracy = {}
    for n in args.members:
        ensemble.members_ = full[:n]
        svm = make_svm(
            fusion.svm_kernel, fusion.svm_C, fusion.svm_gamma, fusion.svm_scores, seed
        ).fit(ensemble.predict_proba(x[fit]), y[fit])
        probs = svm_class_scores(svm, ensemble.predict_proba(x[scored]), ensemble.classes_)
        clips = np.asarray(meta["clip_id"][scored])
        accuracy[n] = clip_accuracy(probs, ensemble.classes_, y[scored], clips)
    return accuracy


def main() -> None:
    args = arguments()
    os.chdir(args.run)
    params = load_params(Path("params.yaml"))
    print(
        f"{args.run}: seed {params.base.seed}, elm_C {args.elm_C or params.fusion.elm_C}, "
        f"{args.hidden_per_class or params.fusion.elm2_hidden_per_class} ELM-2 nodes per class"
    )
    folds = {fold: screen_fold(params, fold, args) for fold in params.split.folds}
    for n in args.members:
        per_fold = [folds[f][n] for f in folds]
        print(
            f"elm_members {n:3d}: validation clip accuracy {100 * np.mean(per_fold):.1f} % "
            f"(folds: {', '.join(f'{100 * a:.1f}' for a in per_fold)})"
        )


if __name__ == "__main__":
    main()
