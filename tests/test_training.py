"""Training a branch from HDF5: it learns, it is reproducible, it resumes, it extracts."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from avemotion.branch import (
    checkpoint_path,
    extract_after_training,
    extract_branch_features,
    train_branch,
)
from avemotion.h5store import SegmentWriter, read_meta
from avemotion.params import Params, validate_params
from avemotion.training import fold_rows

N_CLASSES = 3


def write_audio_table(path, n_speakers=6, clips_per_speaker=6, seed=0):
    """Spectrogram-shaped rows whose class shows as a brighter band: learnable, not trivial."""
    rng = np.random.default_rng(seed)
    with SegmentWriter(path, (30, 100, 3)) as writer:
        for s in range(n_speakers):
            for c in range(clips_per_speaker):
                label = c % N_CLASSES
                x = rng.normal(size=(2, 30, 100, 3)).astype(np.float32)
                x[:, 8 * label : 8 * label + 6] += 1.0
                writer.append(
                    x,
                    {
                        "clip_id": [f"s{s}c{c}"] * 2,
                        "segment": [0, 1],
                        "start_s": [0.0, 2.0],
                        "speaker": [f"s{s}"] * 2,
                        "gender": ["male" if s % 2 else "female"] * 2,
                        "emotion": [f"e{label}"] * 2,
                        "label": [label] * 2,
                        "fold": [s % 3] * 2,
                        "augmented": [False, False],
                        "augmentation": ["", ""],
                    },
                )


TINY = {
    "audio": {"channels": [4, 4, 8, 8], "fc": [16, 16]},
    "video": {"channels": [4] * 8, "fc": [16, 16]},  # unused; a profile names both branches
}


def params(epochs=3, seed=1, lr=0.01) -> Params:
    return validate_params(
        {
            "base": {"seed": seed, "profile": "tiny", "device": "cpu"},
            "data": {"classes": ["e0", "e1", "e2"]},
            "models": {"tiny": TINY},
            "train": {
                "epochs": epochs,
                "batch_size": 8,
                "lr": lr,
                "threads": 1,
                "validation_fraction": 0.25,
                "by_modality": {},
            },
        }
    )


@pytest.fixture
def table(tmp_path):
    path = tmp_path / "audio.h5"
    write_audio_table(path)
    return path


@dataclass(frozen=True)
class RunPaths:
    """Where one training run of the tests reads and writes."""

    table: Path
    best: Path
    metrics: Path
    features: Path

    @property
    def checkpoint(self) -> Path:
        return checkpoint_path(self.best)


def paths_in(tmp_path, table, name="run") -> RunPaths:
    run = tmp_path / name
    return RunPaths(table, run / "best.pt", run / "metrics.json", run / "fc_audio.h5")


def train(params, paths: RunPaths, log_epoch=None):
    return train_branch(params, "audio", 0, paths.table, paths.best, paths.metrics, log_epoch)


def extract(params, paths: RunPaths, batch_size: int) -> int:
    return extract_branch_features(
        params, "audio", paths.table, paths.best, paths.features, batch_size
    )


def test_validation_is_carved_from_training_speakers_only(table):
    meta = read_meta(table)
    rows = fold_rows(meta, test_fold=0, validation_fraction=0.25, validate_by="speaker", seed=0)
    speakers = {k: set(meta["speaker"][getattr(rows, k)]) for k in ("train", "validation", "test")}
    assert speakers["validation"] and not speakers["validation"] & speakers["train"]
    assert not speakers["test"] & (speakers["train"] | speakers["validation"])
    assert set(meta["fold"][rows.test]) == {0}


def test_training_lowers_loss_and_writes_metrics(tmp_path, table):
    paths = paths_in(tmp_path, table)
    epochs = []
    metrics = train(params(epochs=4), paths, log_epoch=epochs.append)
    written = json.loads(paths.metrics.read_text())
    # the file (a DVC output) holds no wall-clock figure, so a rerun writes the same bytes
    assert metrics["train_samples_per_s"] > 0 and "train_samples_per_s" not in written
    assert written == {k: v for k, v in metrics.items() if k != "train_samples_per_s"}
    meta = read_meta(table)
    # fold 0 tests speakers 0 and 3; the other four speakers train or validate
    assert metrics["n_test_rows"] == int((meta["fold"] == 0).sum()) == 24
    assert metrics["n_validation_rows"] > 0
    assert metrics["n_train_rows"] + metrics["n_validation_rows"] == 48
    assert written["epochs_run"] == 4 and [e["epoch"] for e in epochs] == [1, 2, 3, 4]
    losses = [epoch["train_loss"] for epoch in epochs]
    assert losses[-1] < losses[0]
    assert not paths.checkpoint.exists()  # a finished run leaves no checkpoint
    # the best epoch is the first with the highest validation accuracy
    accuracies = [epoch["val_accuracy"] for epoch in epochs]
    assert written["best_epoch"] == 1 + int(np.argmax(accuracies))
    assert written["best_val_accuracy"] == max(accuracies)


def test_same_seed_same_weights_and_other_seed_differs(tmp_path, table):
    runs, written = [], []
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        paths = paths_in(tmp_path, table, name)
        train(params(epochs=2, seed=seed), paths)
        runs.append(torch.load(paths.best, weights_only=True))
        written.append(paths.metrics.read_bytes())
    for key in runs[0]:
        assert torch.equal(runs[0][key], runs[1][key]), key
    assert written[0] == written[1]  # and the same metrics file, byte for byte
    assert any(not torch.equal(runs[0][k], runs[2][k]) for k in runs[0])


def test_killed_run_resumes_to_the_same_end(tmp_path, table):
    whole = paths_in(tmp_path, table, "whole")
    train(params(epochs=3), whole)

    killed = paths_in(tmp_path, table, "killed")

    def die_after_second_epoch(record):
        if record["epoch"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(params(epochs=3), killed, log_epoch=die_after_second_epoch)
    assert torch.load(killed.checkpoint, weights_only=False)["epoch"] == 2
    logged = []
    metrics = train(params(epochs=3), killed, log_epoch=logged.append)
    assert metrics["resumed_from_epoch"] == 2 and metrics["epochs_run"] == 3
    assert [r["epoch"] for r in logged] == [1, 2, 3]  # finished epochs replayed for the curves
    a = torch.load(whole.best, weights_only=True)
    b = torch.load(killed.best, weights_only=True)
    for key in a:
        assert torch.allclose(a[key], b[key]), key


def test_changed_params_do_not_resume_a_stale_checkpoint(tmp_path, table):
    paths = paths_in(tmp_path, table)

    def die_after_first_epoch(record):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(params(epochs=2), paths, log_epoch=die_after_first_epoch)
    assert paths.checkpoint.exists()
    assert train(params(epochs=2, lr=0.02), paths)["resumed_from_epoch"] == 0


def test_best_model_reloads_and_features_are_aligned(tmp_path, table):
    paths = paths_in(tmp_path, table)
    train(params(epochs=2), paths)
    n_rows = extract(params(epochs=2), paths, batch_size=5)
    source = read_meta(table)
    features = read_meta(paths.features)
    assert n_rows == len(source["clip_id"])
    for column in source:
        assert (features[column] == source[column]).all(), column
    with h5py.File(paths.features) as handle:
        fc, probs = handle["x"][:], handle["probs"][:]
    assert fc.shape == (n_rows, 16) and probs.shape == (n_rows, N_CLASSES)
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-5)
    again = extract(params(epochs=2), paths_in(tmp_path, table, "run"), 64)
    assert again == n_rows
    with h5py.File(paths.features) as handle:
        np.testing.assert_allclose(handle["x"][:], fc, rtol=1e-4, atol=1e-5)  # any batch size


def test_after_training_only_rank_0_extracts_on_every_local_process_s_threads(
    tmp_path, table, monkeypatch
):
    """A training stage's last step: rank 1 writes nothing; rank 0 writes the features
    with train.threads x LOCAL_WORLD_SIZE threads (the cores its 2 local processes had)."""
    paths = paths_in(tmp_path, table)
    train(params(epochs=1), paths)
    io = (paths.table, paths.best, paths.features)
    threads_before = torch.get_num_threads()
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    try:
        monkeypatch.setenv("RANK", "1")
        assert extract_after_training(params(epochs=1), "audio", *io) is None
        assert not paths.features.exists()
        monkeypatch.setenv("RANK", "0")
        n_rows = extract_after_training(params(epochs=1), "audio", *io)
        assert torch.get_num_threads() == 2  # train.threads 1, 2 local processes
    finally:
        torch.set_num_threads(threads_before)
    assert n_rows == len(read_meta(table)["clip_id"]) == len(read_meta(paths.features)["clip_id"])


def augmented_meta(n_speakers=8, clips_per_speaker=3, copies=2) -> dict[str, np.ndarray]:
    """A segment table's meta: per clip two original segments, then ``copies`` augmented
    copies of each for clips on the training side (folds 1-3; fold 0 is tested)."""
    columns = {"clip_id": [], "speaker": [], "fold": [], "augmented": []}
    for s in range(n_speakers):
        for c in range(clips_per_speaker):
            fold = s % 4
            n_copies = 0 if fold == 0 else copies
            for k in range(1 + n_copies):
                for _segment in range(2):
                    columns["clip_id"].append(f"s{s}c{c}")
                    columns["speaker"].append(f"s{s}")
                    columns["fold"].append(fold)
                    columns["augmented"].append(k > 0)
    return {
        "clip_id": np.array(columns["clip_id"], dtype=object),
        "speaker": np.array(columns["speaker"], dtype=object),
        "fold": np.array(columns["fold"]),
        "augmented": np.array(columns["augmented"]),
    }


@pytest.mark.parametrize("validate_by", ["speaker", "clip"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_augmented_rows_never_validate_and_validation_clips_never_train(validate_by, seed):
    meta = augmented_meta()
    rows = fold_rows(meta, 0, validation_fraction=0.3, validate_by=validate_by, seed=seed)
    augmented, clip_id, speaker = meta["augmented"], meta["clip_id"], meta["speaker"]
    assert len(rows.validation) and not augmented[rows.validation].any()
    assert augmented[rows.train].any()  # the copies of the training clips do train
    # no row of a validation group (its augmented copies included) is in the training part
    group = speaker if validate_by == "speaker" else clip_id
    assert not set(group[rows.validation]) & set(group[rows.train])
    assert not set(clip_id[rows.validation]) & set(clip_id[rows.train])
    # what leaves the training side is exactly the validation groups' augmented copies
    candidates = np.flatnonzero(meta["fold"] != 0)
    left = np.setdiff1d(candidates, np.concatenate([rows.train, rows.validation]))
    held_copies = np.isin(group, list(set(group[rows.validation]))) & augmented
    np.testing.assert_array_equal(left, np.flatnonzero(held_copies))
    assert len(left) > 0
    assert not np.intersect1d(rows.train, rows.validation).size
    # the test part is fold 0's original rows, none of them anywhere else
    assert set(meta["fold"][rows.test]) == {0} and not augmented[rows.test].any()
    assert not np.intersect1d(rows.test, np.concatenate([rows.train, rows.validation])).size
