"""Stage `fit_elm@<fold>`: the two ELMs of the paper's fusion (section 2.3.3) for one fold.

    python stages/fit_elm.py 0

Reads data/features/fold<fold>/fc_<modality>.h5 for each of base.modalities and params
`fusion` (all but the svm_* keys), `base.{seed,modalities}`, `augment`, `data.classes`.
Pairs the audio and video rows, standardises and concatenates their FC features, fits
ELM-1 (gender) and ELM-2 (emotion) on the fold's training rows, and cross-fits them by
speaker. Writes models/fusion/fold<fold>/elm.joblib, the ELM-2 probabilities of the
training rows (same-data and out-of-fold) and test rows in
data/fusion/fold<fold>/elm_scores.npz, the audio_cnn, video_cnn and late_fusion tables
in data/predictions/fold<fold>/, and metrics/fusion/fold<fold>.json (ELM-1's gender
accuracy, row counts, rows left unpaired). The work is :func:`avemotion.fusion.run_fit_elm`.
"""

from __future__ import annotations

import sys

from avemotion.errors import BadInputError, run_stage
from avemotion.fusion import FusionPaths, run_fit_elm, run_modalities
from avemotion.params import load_params


def main() -> None:
    if len(sys.argv) != 2 or not sys.argv[1].isdigit():
        raise BadInputError("usage: python stages/fit_elm.py <fold>")
    fold = int(sys.argv[1])
    params = load_params()
    summary = run_fit_elm(params, fold, FusionPaths.default(fold, run_modalities(params)))
    pairing = summary["pairing"]
    gender = summary["elm1_gender_accuracy"]
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
