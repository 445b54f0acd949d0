"""Training speed of one CNN branch in one process and in N data-parallel processes.

    python benchmarks/distributed_training.py [--modality audio] \\
        [--table data/features/<modality>.h5] [--epochs 2] [--nproc 1 2] [--cores 2]

Runs the real stage (``stages/train_cnn.py``, fold 0) with the project's ``params.yaml``
and ``train.distributed.nproc`` = each ``--nproc`` in turn, for ``--epochs`` epochs, in a
temporary folder. ``--cores`` are shared out: each of N processes gets ``cores // N``
torch threads (``train.threads``), so every run uses the same cores. Prints the training
samples per second the stage measured (all processes' samples over the slowest one's
training time) and the stage's wall time, start-up and validation included. Without the
demo's table (``dvc repro`` writes it) a random one of the demo's shape is made. Not a
test: figures depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import yaml

from avemotion.h5store import SegmentWriter, clip_rows

REPO = Path(__file__).resolve().parents[1]


def random_table(path: Path, n_speakers: int = 8, clips: int = 12, seed: int = 0) -> None:
    """Spectrogram rows of the demo's shape (30 Mel bands x 100 frames x 3), 2 per clip,
    fold = speaker % 4, so fold 0 trains on three quarters of them."""
    rng = np.random.default_rng(seed)
    with SegmentWriter(path, (30, 100, 3)) as writer:
        for s in range(n_speakers):
            for c in range(clips):
                label = c % 4
                x = rng.normal(size=(2, 30, 100, 3)).astype(np.float32)
                x[:, 6 * label : 6 * label + 5] += 1.0
                clip = SimpleNamespace(
                    clip_id=f"s{s}c{c}",
                    speaker=f"s{s}",
                    gender="male" if s % 2 else "female",
                    emotion=["neutral", "happy", "sad", "angry"][label],
                    label=label,
                    fold=s % 4,
                )
                writer.append(x, clip_rows(clip, [0, 1], [0.0, 2.0]))


def run(
    folder: Path, modality: str, table: Path, nproc: int, epochs: int, cores: int
) -> tuple[dict, float]:
    """The stage's metrics (with the training speed its log line prints: the metrics file
    leaves wall-clock figures out) and wall seconds for one process count."""
    folder.mkdir()
    tree = yaml.safe_load((REPO / "params.yaml").read_text())
    train = tree["train"]
    train.update(epochs=epochs, threads=max(1, cores // nproc))
    train["by_modality"] = {**train.get("by_modality", {}), modality: {"epochs": epochs}}
    train["distributed"] = {**train.get("distributed", {}), "nproc": nproc}
    (folder / "params.yaml").write_text(yaml.safe_dump(tree, sort_keys=False))
    shutil.copy(REPO / "dvc.yaml", folder / "dvc.yaml")
    command = [sys.executable, str(REPO / "stages" / "train_cnn.py"), modality, "0"]
    command += ["--table", str(table.resolve()), "--model", "best.pt", "--metrics", "m.json"]
    command += ["--live", "live", "--features", "fc.h5"]
    began = time.perf_counter()
    done = subprocess.run(command, cwd=folder, check=True, capture_output=True, text=True)
    wall = time.perf_counter() - began
    metrics = json.loads((folder / "m.json").read_text())
    speed = re.search(r"([\d.]+) training samples/s", done.stdout)
    metrics["train_samples_per_s"] = float(speed.group(1)) if speed else float("nan")
    return metrics, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modality", choices=("audio", "video"), default="audio")
    parser.add_argument("--table", type=Path, default=None, help="default: the demo's")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--nproc", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--cores", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="avemotion-bench-") as scratch:
        table = args.table or REPO / "data" / "features" / f"{args.modality}.h5"
        if not table.is_file():
            if args.modality != "audio":
                raise SystemExit(f"{table}: not found; run dvc repro first")
            table = Path(scratch) / "audio.h5"
            random_table(table)
        origin = table if table.is_relative_to(REPO) or args.table else "random (demo shape)"
        print(f"table {origin}, {args.modality}")
        print(f"{args.epochs} epochs, {args.cores} cores shared out, {os.cpu_count()} CPUs seen")
        print(f"{'processes':>9} {'threads':>7} {'train rows':>10} {'train/s':>9} {'wall s':>7}")
        for nproc in args.nproc:
            metrics, wall = run(
                Path(scratch) / f"n{nproc}", args.modality, table, nproc, args.epochs, args.cores
            )
            print(
                f"{nproc:>9} {max(1, args.cores // nproc):>7} {metrics['n_train_rows']:>10} "
                f"{metrics['train_samples_per_s']:>9.1f} {wall:>7.1f}"
            )


if __name__ == "__main__":
    main()
