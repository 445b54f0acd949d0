"""Stage `fit_elm@<fold>`: the two ELMs of the paper's fusion (section 2.3.3) for one fold.

    python stages/fit_elm.py 0 --features data/features/fold0 \\
        --functionals data/features/functionals --models models/fusion/fold0/elm \\
        --scores data/fusion/fold0/elm_scores.npz --predictions data/predictions/fold0 \\
        --validation data/validation/fold0 --metrics metrics/fusion/fold0.json

Reads `fc_<modality>.h5` in `--features` for each of base.modalities (and, with
`fusion.stacking: cross_fit`, the inner CNNs' `inner/fc_<modality>_<j>.h5`), the
functionals sets `fusion.inputs` / `fusion.gender_inputs` name, and params
`fusion.{elm1_hidden,elm2_hidden_per_class,elm_C,elm_members,activation,standardise,
use_gender,elm2_input,cross_fit_folds,inputs,gender_inputs,stacking,inner_folds,
test_features}`,
`train.{validation_fraction,validate_by}` (the validation speakers),
`base.{seed,modalities,speaker_norm}`, `augment.{snr_db,rotation_deg}`,
`data.{classes,dataset}`.
Pairs the audio and video rows and fits ELM-1 (gender; skipped, with the reason printed,
when the rows have one gender) and ELM-2 (emotion) twice: on the fitting rows (training
less validation speakers) to score the validation speakers, and on all training rows to
score the test fold; per feature family (the CNNs' own features; with cross-fit, also
the inner CNNs' out-of-fold ones). Writes the test ELM pairs (`--models`), the SVMs'
inputs (`--scores`), the audio_cnn, video_cnn and late_fusion tables of both parts
(`--predictions`, `--validation`) and the fold's fusion metrics (`--metrics`). The work
is :func:`avemotion.fusion.stages.run_fit_elm`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from avemotion.errors import run_stage
from avemotion.fusion.stages import ElmPaths, run_fit_elm
from avemotion.params import stage_params
from avemotion.splits import fold_argument, fold_name


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("fold", type=fold_argument, help="a test fold's number, or final")
    for name, what in (
        ("features", "the fold's folder of fc_<modality>.h5 tables"),
        ("functionals", "the folder of openSMILE functionals tables"),
        ("models", "folder of the ELM pairs (joblib) to write"),
        ("scores", "ELM-2 scores (npz) to write"),
        ("predictions", "the fold's test predictions folder"),
        ("validation", "the fold's validation predictions folder"),
        ("metrics", "fusion metrics JSON to write"),
    ):
        parser.add_argument(f"--{name}", type=Path, required=True, help=what)
    parser.add_argument(
        "--stage",
        default="fit_elm",
        help="the dvc.yaml stage whose params this run reads (the final model's stage)",
    )
    return parser.parse_args()


def main() -> None:
    args = arguments()
    paths = ElmPaths(
        args.features,
        args.functionals,
        args.models,
        args.scores,
        args.predictions,
        args.validation,
        args.metrics,
    )
    summary = run_fit_elm(stage_params(args.stage), args.fold, paths)
    fold, pairing = fold_name(args.fold), summary["pairing"]
    gender = summary["elm1_gender_accuracy"]
    if summary["elm1_skipped"]:
        print(f"{fold}: ELM-1 skipped: {summary['elm1_skipped']}")
    accuracy = summary["elm2_test_accuracy"]
    inputs = ", ".join(f"{name} {dim}" for name, dim in summary["inputs"].items())
    print(
        f"{fold}: ELM pair on {summary['n_train_rows']} training rows ({inputs}), "
        f"{summary['n_validation_rows']} validation and {summary['n_test_rows']} test rows; "
        f"ELM-2 test accuracy {'n/a' if accuracy is None else f'{accuracy:.3f}'}; "
        f"ELM-1 gender accuracy {'n/a' if gender is None else f'{gender:.3f}'}"
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
