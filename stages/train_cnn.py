"""Stage `train_cnn@<modality>-<fold>`: train one CNN branch on one fold's training rows.

    python stages/train_cnn.py audio 0 --table data/features/audio.h5 \\
        --model models/audio/fold0/best.pt --metrics metrics/train/audio-fold0.json \\
        --live dvclive/audio-fold0 --features data/features/fold0/fc_audio.h5

Reads params `base.{seed,segment_s,profile,device}`, `data.classes`, `models` and `train`; writes
the best epoch's weights by validation accuracy to `--model` (a resumable checkpoint
beside it while training runs), the run's metrics to `--metrics` (its log line adds the
training samples per second, a wall-clock figure kept out of the DVC output), the
per-epoch curves to `--live` (dvclive), then the trained network's FC features and
softmax of every row of `--table` (all folds, augmented rows marked) to `--features`.
The paths come from dvc.yaml. The work is :func:`avemotion.branch.train_branch` and
:func:`avemotion.branch.extract_branch_features`. Extraction is part of this stage, not
a stage of its own: it reads the same code and params, so it reran whenever training
did, and a stage of its own cost DVC and Python a few seconds of start-up each time
(10 of the demo's stages).

With `train.distributed` `nproc: N > 1` (or the branch's own,
`train.by_modality.<branch>.distributed`) the script starts N copies of itself on this
machine and waits for them (:func:`avemotion.launch.relaunch`): data-parallel
training, every copy on 1/N of each batch, rank 0 alone writing the files above. It
does not go through torchrun for this: torchrun's stores listen on every network
interface and its agent costs seconds of start-up, while these copies meet through a
temporary file and talk over the loopback interface only. With `nproc: 1` nothing is
started, so the demo's many small trainings pay nothing. Under a torchrun the user
starts (several machines: `torchrun --nnodes 2 --nproc-per-node 4 --rdzv-endpoint
host:29400 stages/train_cnn.py ...`), the script is one of torchrun's processes and
`nproc` is not used. Rank 0 extracts the features once the group has finished, on the
threads the processes had between them. PyTorch, dvclive and the training code are
imported after the relaunch, so the launching process, which only waits, does not spend
its 5 s of start-up on them.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from avemotion.errors import run_stage
from avemotion.launch import World, relaunch
from avemotion.params import MODALITIES, stage_params
from avemotion.splits import fold_argument, fold_name

if TYPE_CHECKING:
    from dvclive import Live


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modality", choices=MODALITIES)
    parser.add_argument("fold", type=fold_argument, help="a test fold's number, or final")
    parser.add_argument("--table", type=Path, required=True, help="the branch's segment table")
    parser.add_argument("--model", type=Path, required=True, help="best.pt to write")
    parser.add_argument("--metrics", type=Path, required=True, help="metrics JSON to write")
    parser.add_argument("--live", type=Path, required=True, help="dvclive folder")
    parser.add_argument("--features", type=Path, required=True, help="FC-feature table to write")
    parser.add_argument(
        "--stage",
        default="train_cnn",
        help="the dvc.yaml stage whose params this run reads (the final model's stage)",
    )
    return parser.parse_args()


def log_epoch_to(live: Live) -> Callable[[dict[str, float]], None]:
    """One epoch's record as dvclive curves (``train_loss`` -> ``train/loss``)."""

    def log_epoch(record: dict[str, float]) -> None:
        for key, value in record.items():
            if key != "epoch":
                split, _, name = key.partition("_")
                live.log_metric(f"{split}/{name}", value)
        live.next_step()

    return log_epoch


def main() -> None:
    args = arguments()
    params = stage_params(args.stage)
    settings = params.train.for_branch(args.modality)
    # from here on: one of the processes it starts (the branch's own nproc, if it has one)
    relaunch(settings.distributed.nproc)
    from avemotion.branch import extract_after_training, train_branch  # after the relaunch
    from dvclive import Live

    run = (params, args.modality, args.fold, args.table, args.model, args.metrics)
    if not World.from_env().is_main:  # trains its share of every batch, writes nothing
        train_branch(*run)
        return
    with Live(str(args.live), save_dvc_exp=False, dvcyaml=None) as live:
        metrics = train_branch(*run, log_epoch_to(live))
    print(
        f"{args.modality} {fold_name(args.fold)}: best epoch {metrics['best_epoch']} of "
        f"{metrics['epochs_run']}, validation accuracy {metrics['best_val_accuracy']}, "
        f"{metrics['train_samples_per_s']:.1f} training samples/s"
    )
    n_rows = extract_after_training(params, args.modality, args.table, args.model, args.features)
    print(f"{args.modality} {fold_name(args.fold)}: {n_rows} rows of FC features, {args.features}")


if __name__ == "__main__":
    run_stage(main)
