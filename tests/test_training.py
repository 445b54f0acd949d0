"""Training a branch from HDF5: it learns, it is reproducible, it resumes, it extracts."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import torch

from avemotion.branch import BranchPaths, extract_branch_features, train_branch
from avemotion.h5store import SegmentWriter, read_meta
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


def params(epochs=3, seed=1):
    return {
        "base": {"seed": seed, "profile": "tiny", "device": "cpu"},
        "data": {"classes": ["e0", "e1", "e2"]},
        "models": {"tiny": {"audio": {"channels": [4, 4, 8, 8], "fc": [16, 16]}}},
        "train": {
            "epochs": epochs,
            "batch_size": 8,
            "lr": 0.01,
            "threads": 1,
            "validation_fraction": 0.25,
        },
    }


@pytest.fixture
def table(tmp_path):
    path = tmp_path / "audio.h5"
    write_audio_table(path)
    return path


def paths_in(tmp_path, table, name="run"):
    run = tmp_path / name
    return BranchPaths(
        table=table,
        best=run / "best.pt",
        checkpoint=run / "checkpoint.pt",
        metrics=run / "metrics.json",
        features=run / "fc_audio.h5",
        live_dir=run / "live",
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
    metrics = train_branch(params(epochs=4), "audio", 0, paths, log_epoch=epochs.append)
    assert metrics["n_validation_rows"] > 0
    written = json.loads(paths.metrics.read_text())
    assert written["epochs_run"] == 4 and written["train_samples_per_s"] > 0
    losses = [epoch["train_loss"] for epoch in epochs]
    assert losses[-1] < losses[0]
    assert not paths.checkpoint.exists()  # a finished run leaves no checkpoint
    assert 1 <= written["best_epoch"] <= 4


def test_same_seed_same_weights_and_other_seed_differs(tmp_path, table):
    runs = []
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        paths = paths_in(tmp_path, table, name)
        train_branch(params(epochs=2, seed=seed), "audio", 0, paths)
        runs.append(torch.load(paths.best, weights_only=True))
    for key in runs[0]:
        assert torch.equal(runs[0][key], runs[1][key]), key
    assert any(not torch.equal(runs[0][k], runs[2][k]) for k in runs[0])


def test_killed_run_resumes_to_the_same_end(tmp_path, table):
    whole = paths_in(tmp_path, table, "whole")
    train_branch(params(epochs=3), "audio", 0, whole)

    killed = paths_in(tmp_path, table, "killed")

    def die_after_second_epoch(record):
        if record["epoch"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_branch(params(epochs=3), "audio", 0, killed, log_epoch=die_after_second_epoch)
    assert torch.load(killed.checkpoint, weights_only=False)["epoch"] == 2
    logged = []
    metrics = train_branch(params(epochs=3), "audio", 0, killed, log_epoch=logged.append)
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
        train_branch(params(epochs=2), "audio", 0, paths, log_epoch=die_after_first_epoch)
    assert paths.checkpoint.exists()
    changed = params(epochs=2)
    changed["train"]["lr"] = 0.02
    assert train_branch(changed, "audio", 0, paths)["resumed_from_epoch"] == 0


def test_best_model_reloads_and_features_are_aligned(tmp_path, table):
    paths = paths_in(tmp_path, table)
    train_branch(params(epochs=2), "audio", 0, paths)
    n_rows = extract_branch_features(params(epochs=2), "audio", paths, batch_size=5)
    source = read_meta(table)
    features = read_meta(paths.features)
    assert n_rows == len(source["clip_id"])
    for column in source:
        assert (features[column] == source[column]).all(), column
    with h5py.File(paths.features) as handle:
        fc, probs = handle["x"][:], handle["probs"][:]
    assert fc.shape == (n_rows, 16) and probs.shape == (n_rows, N_CLASSES)
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-5)
    again = extract_branch_features(params(epochs=2), "audio", paths_in(tmp_path, table, "run"), 64)
    assert again == n_rows
    with h5py.File(paths.features) as handle:
        np.testing.assert_allclose(handle["x"][:], fc, rtol=1e-4, atol=1e-5)  # any batch size
