"""Stage `train_cnn@<modality>-<fold>`: train one CNN branch on one fold's training rows.

    python stages/train_cnn.py audio 0

Reads data/features/<modality>.h5 and params `base`, `train`, `models`; writes
models/<modality>/fold<fold>/best.pt (the best epoch by validation accuracy), a
resumable checkpoint beside it, metrics/train/<modality>-fold<fold>.json (with training
samples per second) and dvclive curves in dvclive/<modality>-fold<fold>/.
"""

from __future__ import annotations

import sys

from dvclive import Live

from avemotion.branch import BranchPaths, train_branch
from avemotion.errors import BadInputError, run_stage
from avemotion.params import load_params


def main() -> None:
    if len(sys.argv) != 3:
        raise BadInputError("usage: python stages/train_cnn.py <audio|video> <fold>")
    modality, fold = sys.argv[1], int(sys.argv[2])
    paths = BranchPaths.default(modality, fold)
    with Live(str(paths.live_dir), save_dvc_exp=False, dvcyaml=None) as live:

        def log_epoch(record: dict[str, float]) -> None:
            for key, value in record.items():
                if key != "epoch":
                    split, _, name = key.partition("_")
                    live.log_metric(f"{split}/{name}", value)
            live.next_step()

        metrics = train_branch(load_params(), modality, fold, paths, log_epoch)
    print(
        f"{modality} fold {fold}: best epoch {metrics['best_epoch']} of {metrics['epochs_run']}, "
        f"validation accuracy {metrics['best_val_accuracy']}, "
        f"{metrics['train_samples_per_s']:.1f} training samples/s"
    )


if __name__ == "__main__":
    run_stage(main)
