"""Stage `fit_elm@<fold>`: the two ELMs of the paper's fusion (section 2.3.3) for one fold.

    python stages/fit_elm.py 0 --features data/features/fold0 \\
        --model models/fusion/fold0/elm.joblib --scores data/fusion/fold0/elm_scores.npz \\
        --predictions data/predictions/fold0 --metrics metrics/fusion/fold0.json

Reads `fc_<modality>.h5` in `--features` for each of base.modalities and params
`fusion.{elm1_hidden,elm2_hidden_per_class,elm_C,activation,standardise,use_gender,
elm2_input,cross_fit_folds}`, `base.{seed,modalities}`, `augment.{snr_db,rotation_deg}`,
`data.{classes,dataset}`. Pairs the audio and video rows, standardises and concatenates
their FC features, fits ELM-1 (gender; skipped, with the reason printed, when the
training rows have one gender) and ELM-2 (emotion) on the fold's training rows, and
cross-fits them by speaker. Writes the ELM pair (`--model`), the ELM-2 probabilities of
the training rows (same-data and out-of-fold) and test rows (`--scores`), the audio_cnn,
video_cnn and late_fusion tables (`--predictions`) and the fold's fusion metrics
(`--metrics`). The work is :func:`avemotion.fusion.stages.run_fit_elm`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from avemotion.errors import run_stage
from avemotion.fusion.stages import ElmPaths, run_fit_elm
from avemotion.params import stage_params


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("fold", type=int)
    for name, what in (
        ("features", "the fold's folder of fc_<modality>.h5 tables"),
        ("model", "ELM pair (joblib) to write"),
        ("scores", "ELM-2 scores (npz) to write"),
        ("predictions", "the fold's predictions folder"),
        ("metrics", "fusion metrics JSON to write"),
    ):
        parser.add_argument(f"--{name}", type=Path, required=True, help=what)
    return parser.parse_args()


def main() -> None:
    args = arguments()
    paths = ElmPaths(args.features, args.model, args.scores, args.predictions, args.metrics)
    summary = run_fit_elm(stage_params("fit_elm"), args.fold, paths)
    fold, pairing, gender = args.fold, summary["pairing"], summary["elm1_gender_accuracy"]
    if summary["elm1_skipped"]:
        print(f"fold {fold}: ELM-1 skipped: {summary['elm1_skipped']}")
    print(
        f"fold {fold}: ELM pair on {summary['n_train_rows']} training rows "
        f"({summary['feature_dim']} features of {'+'.join(summary['modalities'])}), "
        f"{summary['n_test_rows']} test rows; ELM-2 test accuracy "
        f"{summary['elm2_test_accuracy']:.3f}; ELM-1 gender accuracy "
        f"{'n/a' if gender is None else f'{gender:.3f}'}"
    )
    if pairing:
        print(
            f"  pairing: {pairing['pairs']} pairs; left out "
            f"{pairing['audio_original_rows_left_out']} audio-only and "
            f"{pairing['video_original_rows_left_out']} video-only original rows "
            f"({pairing['test_rows_left_out']} of them test segments of this fold), "
            f"{pairing['audio_copies_left_out'] + pairing['video_copies_left_out']} augmented "
            f"copies; clips affected: {len(pairing['clips_left_out'])}"
        )


if __name__ == "__main__":
    run_stage(main)
