"""Data-parallel CNN training (train.distributed): two Gloo processes on the loopback
interface train, write once, resume and repeat themselves; one process is plain training.

Every run is the real stage script in a subprocess, in a small project folder of its own
(params.yaml, dvc.yaml, a table of 72 rows), bounded by a timeout. Each start costs
seconds on a small machine, so one 2-process run serves several tests: the killed and
resumed run, two more launches, must end on its very weights.
"""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import REPO
from test_training_recipes import AUDIO_SHAPE, CLASSES, TINY, same_weights, write_table

from avemotion.branch import train_branch
from avemotion.distributed import (
    BalancedDistributedSampler,
    per_process_batch,
    process_group,
    resolve_backend,
)
from avemotion.errors import BadInputError
from avemotion.h5store import read_meta
from avemotion.launch import World, launch_local
from avemotion.params import validate_params
from avemotion.scores import read_branch

STAGE = REPO / "stages" / "train_cnn.py"
EPOCHS = 4
STOP_AFTER = 2  # the killed run's last finished epoch
TIMEOUT_S = 90
# Stops every rank right after epoch STOP_AFTER's checkpoint, as a kill would; then the
# stage script runs as DVC runs it (argv: the stage script and its arguments).
KILLING_DRIVER = f"""
import os, runpy, sys
import avemotion.branch as branch

real = branch.train_branch

def stopping(*args):
    *run, log = args if len(args) == 7 else (*args, None)

    def log_epoch(record):
        if log:
            log(record)
        if record["epoch"] == {STOP_AFTER}:
            os._exit(75)

    return real(*run, log_epoch)

branch.train_branch = stopping
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def params_tree(nproc: int, for_audio_only: bool = False) -> dict:
    """Batch norm, balanced sampling, time masks and weight averaging on: every step that
    differs between one process and several. ``for_audio_only`` sets ``nproc`` as the
    audio branch's own (``by_modality.audio.distributed``) over a global 1."""
    distributed = {"nproc": nproc, "backend": "gloo"}
    return {
        "base": {"seed": 3, "profile": "tiny", "device": "cpu"},
        "data": {"classes": CLASSES},
        "models": {"tiny": TINY, "batch_norm": True},
        "train": {
            "epochs": EPOCHS,
            "batch_size": 8,
            "lr": 0.01,
            "threads": 1,
            "validation_fraction": 0.25,
            "by_modality": {"audio": {"distributed": distributed}} if for_audio_only else {},
            "balanced_sampling": True,
            "time_masks": 1,
            "average_last": 2,
            "distributed": {"nproc": 1, "backend": "gloo"} if for_audio_only else distributed,
        },
    }


@pytest.fixture(scope="module")
def table(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("table") / "audio.h5"
    write_table(path, AUDIO_SHAPE)
    return path


def project(folder: Path, nproc: int, for_audio_only: bool = False) -> Path:
    """A folder the stage can run in: its params.yaml and the repository's dvc.yaml."""
    folder.mkdir(parents=True)
    (folder / "params.yaml").write_text(yaml.safe_dump(params_tree(nproc, for_audio_only)))
    shutil.copy(REPO / "dvc.yaml", folder / "dvc.yaml")
    return folder


def run_stage(folder: Path, table: Path, driver: Path | None = None) -> subprocess.CompletedProcess:
    command = [sys.executable, *([str(driver)] if driver else []), str(STAGE), "audio", "0"]
    command += ["--table", str(table), "--model", "run/best.pt", "--metrics", "run/metrics.json"]
    command += ["--live", "run/live", "--features", "run/fc_audio.h5"]
    return subprocess.run(
        command, cwd=folder, capture_output=True, text=True, timeout=TIMEOUT_S, check=False
    )


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return torch.load(folder / "run" / "best.pt", weights_only=True)


def curve(folder: Path, name: str) -> list[float]:
    """One dvclive curve's values, step by step (``train/loss``)."""
    path = folder / "run" / "live" / "plots" / "metrics" / f"{name}.tsv"
    with path.open() as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    assert [int(row["step"]) for row in rows] == list(range(len(rows)))
    return [float(row[Path(name).name]) for row in rows]


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory, table) -> Path:
    """One uninterrupted 2-process training, the audio branch's own setting (the killed
    run below sets it for both branches and must end on the same weights)."""
    folder = project(tmp_path_factory.mktemp("ddp") / "whole", nproc=2, for_audio_only=True)
    done = run_stage(folder, table)
    assert done.returncode == 0, done.stderr
    return folder


def test_two_processes_train_and_only_rank_0_writes(two_process_run, table):
    """Rank 0 writes the weights, the metrics, the curves and, once the group is done,
    the FC features of every row of the table."""
    folder = two_process_run
    written = sorted(p.name for p in (folder / "run").iterdir())
    assert written == ["best.pt", "fc_audio.h5", "live", "metrics.json"]
    features = read_branch(folder / "run" / "fc_audio.h5", "audio")
    assert len(features.x) == len(read_meta(table)["label"]) and np.isfinite(features.x).all()
    metrics = json.loads((folder / "run" / "metrics.json").read_text())
    assert metrics["processes"] == 2 and metrics["epochs_run"] == EPOCHS
    assert metrics["weights"] == "averaged" and metrics["resumed_from_epoch"] == 0
    loss = curve(folder, "train/loss")  # one row per epoch: one process logged
    assert len(loss) == EPOCHS and loss[-1] < loss[0]
    assert len(curve(folder, "val/accuracy")) == EPOCHS


def test_a_killed_two_process_run_resumes_to_the_same_weights(tmp_path, table, two_process_run):
    """Killed after epoch STOP_AFTER's checkpoint, run again: both ranks pick up rank 0's
    checkpoint (weights, optimiser, every rank's random states) and end on the weights of
    the uninterrupted run, so 2-process training is also deterministic across launches."""
    folder = project(tmp_path / "killed", nproc=2)
    driver = tmp_path / "killing_driver.py"
    driver.write_text(KILLING_DRIVER)
    killed = run_stage(folder, table, driver)
    assert killed.returncode == 75, killed.stderr
    assert (folder / "run" / "checkpoint.pt").is_file()
    assert not (folder / "run" / "metrics.json").exists()
    resumed = run_stage(folder, table)
    assert resumed.returncode == 0, resumed.stderr
    metrics = json.loads((folder / "run" / "metrics.json").read_text())
    assert metrics["resumed_from_epoch"] == STOP_AFTER and metrics["epochs_run"] == EPOCHS
    assert not (folder / "run" / "checkpoint.pt").exists()
    assert len(curve(folder, "train/loss")) == EPOCHS  # the finished epochs replayed
    assert same_weights(weights(folder), weights(two_process_run))


def test_one_process_trains_exactly_as_train_branch_does(tmp_path, table):
    """nproc 1 starts no process and joins no group: the stage's weights are bit for bit
    those of training in this process."""
    folder = project(tmp_path / "stage", nproc=1)
    done = run_stage(folder, table)
    assert done.returncode == 0, done.stderr
    here = tmp_path / "here"
    torch.set_num_threads(1)
    metrics = train_branch(
        validate_params(params_tree(nproc=1)), "audio", 0, table, here / "best.pt", here / "m.json"
    )
    assert metrics["processes"] == 1
    assert same_weights(weights(folder), torch.load(here / "best.pt", weights_only=True))


def test_a_branch_may_train_with_its_own_process_count():
    """``by_modality.video.distributed`` replaces the whole section for video only; a
    branch without one keeps the global setting."""
    tree = params_tree(nproc=1)
    tree["train"]["by_modality"] = {"video": {"threads": 1, "distributed": {"nproc": 2}}}
    train = validate_params(tree).train
    video, audio = train.for_branch("video"), train.for_branch("audio")
    assert (video.distributed.nproc, video.distributed.backend, video.threads) == (2, "auto", 1)
    assert audio.distributed == train.distributed and audio.distributed.backend == "gloo"
    tree["train"]["by_modality"]["video"]["distributed"] = {"nproc": 0}
    with pytest.raises(BadInputError, match="by_modality.video.distributed.nproc"):
        validate_params(tree)


def test_more_processes_than_gpus_stop_with_a_message(monkeypatch):
    """Two processes on one GPU would fail inside NCCL; the stage says what to change."""
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(BadInputError, match="1 CUDA device"):
        with process_group("auto", torch.device("cuda")):
            pass


@pytest.mark.parametrize("stage", ["train_cnn.py", "train_inner.py"])
def test_the_launching_process_imports_neither_torch_nor_scikit_learn(stage):
    """A stage relaunches itself before it imports the training code, so the process that
    only waits for its copies skips their start-up (about 5 s on 2 cores)."""
    code = (
        "import runpy, sys; "
        f"runpy.run_path({str(REPO / 'stages' / stage)!r}, run_name='imported'); "
        "print(sorted({'torch', 'sklearn', 'dvclive'} & set(sys.modules)))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "[]"


def test_a_failed_process_stops_the_others():
    """One rank failing (here at once) must not leave the other waiting for ever in a
    collective step: the launcher stops it and reports the failure's status."""
    command = [
        sys.executable,
        "-c",
        "import os, sys, time; sys.exit(3) if os.environ['RANK'] == '1' else time.sleep(60)",
    ]
    began = time.monotonic()
    assert launch_local(2, command, timeout_s=30) == 3
    assert time.monotonic() - began < 20


def test_balanced_shares_interleave_to_one_draw_and_change_each_epoch():
    labels = [0] * 8 + [1] * 2
    shares = [BalancedDistributedSampler(labels, World(rank, rank, 2), seed=5) for rank in (0, 1)]
    drawn = [list(share) for share in shares]
    whole = list(BalancedDistributedSampler(labels, World(), seed=5))
    assert drawn[0] + drawn[1] != whole and sorted(drawn[0] + drawn[1]) == sorted(whole)
    assert [drawn[i % 2][i // 2] for i in range(10)] == whole
    thirds = [BalancedDistributedSampler([*labels, 1], World(r, r, 3), seed=5) for r in range(3)]
    assert [len(list(share)) for share in thirds] == [4, 4, 4]  # 11 rows: equal shares
    shares[0].set_epoch(1)
    assert list(shares[0]) != drawn[0]


def test_the_batch_is_the_global_one_and_must_divide_among_processes():
    assert per_process_batch(16, World(0, 0, 2)) == 8
    with pytest.raises(BadInputError, match="batch of all 3 processes"):
        per_process_batch(16, World(0, 0, 3))


def test_backend_auto_is_gloo_on_the_cpu_and_nccl_needs_cuda():
    assert resolve_backend("auto", torch.device("cpu")) == "gloo"
    assert resolve_backend("auto", torch.device("cuda")) == "nccl"
    with pytest.raises(BadInputError, match="needs CUDA"):
        resolve_backend("nccl", torch.device("cpu"))
