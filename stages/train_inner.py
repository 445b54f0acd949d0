"""Stage `train_inner@<modality>-<fold>-<inner>`: one inner CNN of cross-fit stacking.

    python stages/train_inner.py audio 0 1 --table data/features/audio.h5 \\
        --model models/audio/fold0/inner1.pt \\
        --features data/features/fold0/inner/fc_audio_1.h5 \\
        --metrics metrics/train/audio-fold0-inner1.json

Runs only with `fusion.stacking: cross_fit` (one instance per `fusion.inner_folds`
entry). Reads params `base.{seed,segment_s,profile,device}`, `data.classes`, `models`, `train`
(the same network and recipe as train_cnn; `train.{validation_fraction,validate_by}`
also fix the validation speakers every inner CNN stops on) and `fusion.inner_folds`
(K, the number of inner folds). Trains on the fold's fitting speakers outside inner fold
`<inner>` and writes the best weights to `--model`, the FC features and softmax of its
held-out, validation and test rows to `--features` and the run's metrics to
`--metrics`. The work is :func:`avemotion.stacking.run_train_inner`. With
`train.distributed` `nproc: N > 1` it runs as N processes, as train_cnn does (see there;
like it, it imports the training code only after the relaunch).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from avemotion.errors import run_stage
from avemotion.launch import World, relaunch
from avemotion.params import MODALITIES, stage_params


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modality", choices=MODALITIES)
    parser.add_argument("fold", type=int)
    parser.add_argument("inner", type=int)
    parser.add_argument("--table", type=Path, required=True, help="the branch's segment table")
    parser.add_argument("--model", type=Path, required=True, help="inner CNN weights to write")
    parser.add_argument("--features", type=Path, required=True, help="FC-feature table to write")
    parser.add_argument("--metrics", type=Path, required=True, help="training metrics JSON")
    return parser.parse_args()


def main() -> None:
    args = arguments()
    params = stage_params("train_inner")
    # from here on: one of the processes it starts (the branch's own nproc, if it has one)
    relaunch(params.train.for_branch(args.modality).distributed.nproc)
    from avemotion.stacking import run_train_inner  # after the relaunch, as in train_cnn

    summary = run_train_inner(
        params,
        args.modality,
        args.fold,
        args.inner,
        args.table,
        args.model,
        args.features,
        args.metrics,
    )
    if not World.from_env().is_main:
        return
    print(
        f"{args.modality} fold {args.fold} inner {args.inner}: held out "
        f"{', '.join(summary['held_out_groups'])}; best epoch {summary['best_epoch']} of "
        f"{summary['epochs_run']}, validation accuracy {summary['best_val_accuracy']}"
    )


if __name__ == "__main__":
    run_stage(main)
