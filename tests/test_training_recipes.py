"""Training recipes beyond the paper (issue 12): each does what it says, only where it
should, reproducibly, and none of them is on in the paper's presets."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import yaml
from conftest import REPO
from torch.utils.data import DataLoader

from avemotion.branch import (
    build_branch,
    checkpoint_path,
    extract_branch_features,
    train_branch,
)
from avemotion.errors import BadInputError
from avemotion.h5store import SegmentWriter, read_meta
from avemotion.models import ROW_TIME_AXIS, build_audio_cnn, channels_first
from avemotion.params import Params, validate_params
from avemotion.params.schema import TrainParams
from avemotion.presets import load_preset
from avemotion.recipes import (
    balanced_sampler,
    channel_statistics,
    mask_spectrograms,
    mixup,
    spec_augment_mask,
    straddling_windows,
    window_offsets,
)
from avemotion.training import SegmentDataset, fold_rows

CLASSES = ["e0", "e1", "e2"]
TINY = {
    "audio": {"channels": [4, 4, 8, 8], "fc": [16, 16]},
    "video": {"channels": [2] * 8, "fc": [8, 8]},
}
AUDIO_SHAPE = (30, 100, 3)
VIDEO_SHAPE = (16, 16, 16, 3)  # the smallest keyframe size C3D's pools leave 1 x 1 of
# Each recipe key and the value that turns it off (the paper's recipe).
OFF = {
    "standardise_inputs": False,
    "optimizer": "sgd",
    "schedule": "constant",
    "label_smoothing": 0.0,
    "mixup_alpha": 0.0,
    "time_masks": 0,
    "freq_masks": 0,
    "balanced_sampling": False,
    "average_last": 1,
    "hop_s": None,
}


def write_table(path: Path, item_shape: tuple[int, ...], n_speakers: int = 6, seed: int = 0):
    """Six clips of two segments per speaker, class shown as a shifted channel mean; fold
    = speaker % 3, so fold 0 (speakers 0 and 3) is the test part."""
    rng = np.random.default_rng(seed)
    with SegmentWriter(path, item_shape) as writer:
        for s in range(n_speakers):
            for c in range(6):
                label = c % len(CLASSES)
                x = rng.normal(size=(2, *item_shape)).astype(np.float32)
                x[..., 0] += label
                x[..., 1] = 3.0 * x[..., 1] + 5.0  # channels on other scales
                writer.append(
                    x,
                    {
                        "clip_id": [f"s{s}c{c}"] * 2,
                        "segment": [0, 1],
                        "start_s": [0.0, 2.0],
                        "speaker": [f"s{s}"] * 2,
                        "gender": ["male" if s % 2 else "female"] * 2,
                        "emotion": [CLASSES[label]] * 2,
                        "label": [label] * 2,
                        "fold": [s % 3] * 2,
                        "augmented": [False, False],
                        "augmentation": ["", ""],
                    },
                )


def params(batch_norm: bool = False, **train) -> Params:
    return validate_params(
        {
            "base": {"seed": 1, "profile": "tiny", "device": "cpu"},
            "data": {"classes": CLASSES},
            "models": {"tiny": TINY, "batch_norm": batch_norm},
            "train": {
                "epochs": 1,
                "batch_size": 8,
                "lr": 0.01,
                "threads": 1,
                "validation_fraction": 0.25,
                "by_modality": {},
                **train,
            },
        }
    )


@pytest.fixture(scope="module")
def audio_table(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("tables") / "audio.h5"
    write_table(path, AUDIO_SHAPE)
    return path


@pytest.fixture(scope="module")
def video_table(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("tables") / "video.h5"
    write_table(path, VIDEO_SHAPE)
    return path


def train(p: Params, table: Path, run: Path, modality: str = "audio", log_epoch=None):
    """Train fold 0; returns the metrics and the written state dict."""
    best = run / "best.pt"
    metrics = train_branch(p, modality, 0, table, best, run / "metrics.json", log_epoch)
    return metrics, torch.load(best, weights_only=True)


def training_rows(p: Params, table: Path) -> np.ndarray:
    """The rows ``train_branch`` trains fold 0 on."""
    settings = p.train.for_branch("audio")
    meta = read_meta(table)
    return fold_rows(meta, 0, settings.validation_fraction, settings.validate_by, 1).train


def same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# --- SpecAugment ---------------------------------------------------------------------


def test_frequency_masks_zero_whole_bands_in_every_channel():
    settings = TrainParams(freq_masks=1, freq_mask_bands=4)
    x = torch.randn(16, 3, 30, 100) + 10.0  # no cell is 0 before masking
    masked = mask_spectrograms(x, settings, np.random.default_rng(0), fill=None)
    zero = masked == 0
    assert (zero == zero[:, :1]).all()  # the same cells in all three channels
    bands = zero[:, 0].all(2)  # (N, 30): bands zeroed over all 100 frames
    assert (zero[:, 0] == bands[:, :, None]).all()  # nothing else is zeroed
    widths = bands.sum(1)
    assert widths.max() <= 4 and widths.max() > 0
    for row in bands.numpy():  # one mask: a single run of adjacent bands
        where = np.flatnonzero(row)
        assert len(where) == 0 or where[-1] - where[0] + 1 == len(where)
    torch.testing.assert_close(masked[~zero], x[~zero], rtol=0, atol=0)


def test_time_masks_zero_whole_frames_and_off_draws_nothing():
    settings = TrainParams(time_masks=2, time_mask_frames=10)
    mask = spec_augment_mask(32, 30, 100, settings, np.random.default_rng(1))
    assert mask is not None and mask.shape == (32, 30, 100)
    frames = mask.all(1)  # (N, 100): frames masked over every band
    assert (mask == frames[:, None, :]).all()
    assert frames.sum(1).max() <= 20 and frames.any()
    again = spec_augment_mask(32, 30, 100, settings, np.random.default_rng(1))
    np.testing.assert_array_equal(mask, again)  # seeded
    rng = np.random.default_rng(1)
    before = rng.bit_generator.state
    x = torch.randn(2, 3, 30, 100)
    assert mask_spectrograms(x, TrainParams(), rng, fill=None) is x
    assert rng.bit_generator.state == before


def test_masked_cells_are_zero_after_standardisation():
    model = build_audio_cnn(3, TINY["audio"], standardise=True)
    model.set_input_statistics(np.array([1.0, 5.0, -2.0]), np.array([2.0, 3.0, 0.5]))
    settings = TrainParams(freq_masks=2, time_masks=2)
    rng = np.random.default_rng(3)
    x = torch.randn(8, 3, 30, 100) * 3 + 7
    mask = spec_augment_mask(8, 30, 100, settings, np.random.default_rng(3))
    z = model.standardise(mask_spectrograms(x, settings, rng, fill=model.input_mean))
    where = torch.from_numpy(mask)[:, None].expand_as(z)
    assert where.any() and (z[where] == 0).all()
    expected = (x - model.input_mean.view(1, 3, 1, 1)) / model.input_std.view(1, 3, 1, 1)
    torch.testing.assert_close(z[~where], expected[~where])


def test_masks_change_audio_training_and_never_touch_video(tmp_path, audio_table, video_table):
    masks = {"time_masks": 2, "time_mask_frames": 10, "freq_masks": 2, "freq_mask_bands": 4}
    _, audio_plain = train(params(), audio_table, tmp_path / "a0")
    _, audio_masked = train(params(**masks), audio_table, tmp_path / "a1")
    assert not same_weights(audio_plain, audio_masked)
    _, video_plain = train(params(), video_table, tmp_path / "v0", "video")
    _, video_masked = train(params(**masks), video_table, tmp_path / "v1", "video")
    assert same_weights(video_plain, video_masked)


# --- mixup, label smoothing, balanced sampling ----------------------------------------


def test_mixup_mixes_inputs_and_labels_with_lambda_from_the_seed():
    x = torch.randn(12, 3, 4, 5)
    y = torch.tensor([0, 1, 2] * 4)
    mixed, targets, lam = mixup(x, y, 3, 0.4, np.random.default_rng(7))
    replay = np.random.default_rng(7)
    assert lam == replay.beta(0.4, 0.4) and 0 < lam < 1
    partner = torch.from_numpy(replay.permutation(12))
    one_hot = torch.eye(3)[y]
    torch.testing.assert_close(targets, lam * one_hot + (1 - lam) * one_hot[partner])
    torch.testing.assert_close(mixed, lam * x + (1 - lam) * x[partner])
    assert (targets >= 0).all()
    torch.testing.assert_close(targets.sum(1), torch.ones(12))
    assert ((targets > 0).sum(1) == 2).any()  # some rows carry two labels
    assert mixup(x, y, 3, 0.4, np.random.default_rng(8))[2] != lam


def test_mixup_and_label_smoothing_change_the_loss(tmp_path, audio_table):
    recipes = {"plain": {}, "smoothed": {"label_smoothing": 0.2}, "mixup": {"mixup_alpha": 0.4}}
    losses, weights = {}, {}
    for name, keys in recipes.items():
        history = []
        _, weights[name] = train(
            params(**keys), audio_table, tmp_path / name, "audio", history.append
        )
        losses[name] = history[0]["train_loss"]
    for name in ("smoothed", "mixup"):
        assert losses[name] != losses["plain"], name
        assert not same_weights(weights[name], weights["plain"]), name


def test_balanced_sampler_draws_classes_evenly():
    labels = np.array([0] * 90 + [1] * 8 + [2] * 2)
    sampler = balanced_sampler(labels, torch.Generator().manual_seed(0))
    assert len(sampler) == 100
    drawn = np.concatenate([labels[list(sampler)] for _ in range(30)])
    shares = np.bincount(drawn, minlength=3) / len(drawn)
    np.testing.assert_allclose(shares, 1 / 3, atol=0.04)
    again = balanced_sampler(labels, torch.Generator().manual_seed(0))
    assert list(again) == list(balanced_sampler(labels, torch.Generator().manual_seed(0)))


# --- input standardisation ------------------------------------------------------------


def test_input_statistics_come_from_training_rows_only(tmp_path):
    table = tmp_path / "audio.h5"
    write_table(table, AUDIO_SHAPE)
    meta = read_meta(table)
    test_row = int(np.flatnonzero(meta["fold"] == 0)[0])
    with h5py.File(table, "r+") as handle:
        x = handle["x"]
        row = x[test_row]
        row[..., 1] = 1e6
        x[test_row] = row
        stored = x[:]
    rows = training_rows(params(), table)
    assert test_row not in rows
    row_bytes = int(np.prod(AUDIO_SHAPE)) * 4
    mean, std = channel_statistics(table, rows, chunk_bytes=5 * row_bytes)  # several blocks
    values = stored[rows].reshape(-1, 3).astype(np.float64)
    np.testing.assert_allclose(mean, values.mean(0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(std, values.std(0), rtol=1e-5)
    assert mean.shape == std.shape == (3,) and abs(mean[1] - 5.0) < 0.2  # not ~1e6
    whole, _ = channel_statistics(table, rows)  # one block: the same numbers
    np.testing.assert_allclose(whole, mean, rtol=1e-6)
    everything, _ = channel_statistics(table, np.arange(len(stored)))
    assert everything[1] > 1000  # the huge test value does count when its row is given


def test_standardisation_is_stored_in_best_pt_and_used_by_extraction(tmp_path, audio_table):
    p = params(standardise_inputs=True)
    run = tmp_path / "run"
    _, state = train(p, audio_table, run)
    mean, std = channel_statistics(audio_table, training_rows(p, audio_table))
    np.testing.assert_array_equal(state["input_mean"].numpy(), mean)
    np.testing.assert_array_equal(state["input_std"].numpy(), std)
    features_path = run / "fc_audio.h5"
    extract_branch_features(p, "audio", audio_table, run / "best.pt", features_path, 16)
    with h5py.File(features_path) as handle:
        extracted = handle["x"][:]
    # the same weights without the statistics, fed inputs standardised by hand
    plain = build_branch(p, "audio", 3, audio_table)
    weights = {k: v for k, v in state.items() if not k.startswith("input_")}
    plain.load_state_dict(weights)
    plain.eval()
    with h5py.File(audio_table) as handle:
        x = channels_first(handle["x"][:])
    scaled = (x - torch.from_numpy(mean).view(1, 3, 1, 1)) / torch.from_numpy(std).view(1, 3, 1, 1)
    with torch.no_grad():
        np.testing.assert_allclose(extracted, plain.features(scaled).numpy(), rtol=1e-4, atol=1e-5)
        assert not np.allclose(extracted, plain.features(x).numpy(), atol=1e-3)


# --- optimiser, schedule, weight averaging --------------------------------------------


def test_cosine_schedule_anneals_to_zero_and_adamw_trains(tmp_path, audio_table):
    history = []
    p = params(epochs=2, schedule="cosine", optimizer="adamw", lr=0.002)
    train(p, audio_table, tmp_path / "cos", "audio", history.append)
    assert history[0]["train_lr"] == pytest.approx(0.001)  # half-way: cos(pi / 2)
    assert history[1]["train_lr"] == pytest.approx(0.0, abs=1e-12)
    _, sgd = train(params(epochs=2, schedule="cosine", lr=0.002), audio_table, tmp_path / "sgd")
    _, adamw = train(p, audio_table, tmp_path / "adamw")
    assert not same_weights(sgd, adamw)


def test_average_last_writes_the_mean_of_the_last_epochs(tmp_path, audio_table):
    p = params(epochs=3, average_last=2)
    run = tmp_path / "avg"
    checkpoints = {}

    def stop_after(epoch):
        def log(record):
            if record["epoch"] == epoch:
                checkpoints[epoch] = torch.load(checkpoint_path(run / "best.pt"))["model"]
                raise KeyboardInterrupt

        return log

    for epoch in (2, 3):  # keep each epoch's weights, resuming each time
        with pytest.raises(KeyboardInterrupt):
            train(p, audio_table, run, "audio", stop_after(epoch))
    metrics, best = train(p, audio_table, run)
    assert metrics["resumed_from_epoch"] == 3 and metrics["epochs_run"] == 3
    assert metrics["weights"] == "averaged" and metrics["averaged_epochs"] == 2
    assert best.keys() == checkpoints[3].keys()
    for key in best:
        torch.testing.assert_close(best[key], (checkpoints[2][key] + checkpoints[3][key]) / 2)
    assert not same_weights(best, checkpoints[3])
    _, whole = train(p, audio_table, tmp_path / "whole")  # resuming changed nothing
    assert same_weights(best, whole)


def test_average_last_recomputes_batchnorm_statistics_on_training_rows(tmp_path, audio_table):
    p = params(batch_norm=True, epochs=2, average_last=2, batch_size=12)
    rows = training_rows(p, audio_table)
    assert len(rows) % 12 == 0  # equal batches: the running mean is the rows' mean
    metrics, best = train(p, audio_table, tmp_path / "bn")
    assert metrics["weights"] == "averaged"
    model = build_branch(p, "audio", 3, audio_table, standardise="input_mean" in best)
    model.load_state_dict(best)
    labels = read_meta(audio_table)["label"][rows]
    inputs = DataLoader(SegmentDataset(audio_table, rows, labels), batch_size=len(rows))
    with torch.no_grad():
        conv = model.conv1a(model.standardise(next(iter(inputs))[0]))
    torch.testing.assert_close(model.bn1a.running_mean, conv.mean((0, 2, 3)), rtol=1e-4, atol=1e-5)


def test_all_recipes_together_are_reproducible_and_resume_exactly(tmp_path, audio_table):
    p = params(
        epochs=3,
        standardise_inputs=True,
        optimizer="adamw",
        schedule="onecycle",
        label_smoothing=0.1,
        mixup_alpha=0.4,
        time_masks=1,
        freq_masks=1,
        balanced_sampling=True,
        average_last=2,
        hop_s=1.0,
        batch_norm=True,
    )
    _, first = train(p, audio_table, tmp_path / "first")
    _, second = train(p, audio_table, tmp_path / "second")
    assert same_weights(first, second)

    def die_after_second_epoch(record):
        if record["epoch"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(p, audio_table, tmp_path / "killed", "audio", die_after_second_epoch)
    metrics, resumed = train(p, audio_table, tmp_path / "killed")
    assert metrics["resumed_from_epoch"] == 2
    assert same_weights(first, resumed)


# --- overlapping training windows (train.hop_s) -------------------------------------


def test_window_offsets_step_by_the_hop_in_each_branchs_time_steps():
    assert window_offsets(1.0, 2.0, 100) == [50]
    assert window_offsets(0.5, 2.0, 100) == [25, 50, 75]
    assert window_offsets(1.0, 2.0, 16) == [8]
    assert window_offsets(0.75, 2.0, 16) == [6, 12]
    with pytest.raises(ValueError, match="between 0 and segment_s"):
        window_offsets(2.0, 2.0, 100)


def window_meta(entries: list[tuple[str, str, int, float]]) -> dict[str, np.ndarray]:
    """Meta columns of rows given as (clip_id, augmentation, segment, start_s)."""
    clip, augmentation, segment, start = zip(*entries, strict=True)
    return {
        "clip_id": np.asarray(clip, dtype=object),
        "augmentation": np.asarray(augmentation, dtype=object),
        "segment": np.asarray(segment),
        "start_s": np.asarray(start, dtype=float),
    }


def test_windows_join_consecutive_training_segments_of_one_clip_and_one_augmentation():
    meta = window_meta(
        [
            ("a", "", 0, 0.0),  # 0
            ("a", "", 1, 2.0),  # 1
            ("a", "", 2, 4.0),  # 2
            ("a", "snr15", 0, 0.0),  # 3: a noisy copy pairs with its own kind only
            ("a", "snr15", 1, 2.0),  # 4
            ("b", "", 0, 0.0),  # 5: its next segment is not a training row
            ("b", "", 1, 2.0),  # 6
            ("c", "", 0, 0.0),  # 7: the next segment does not start 2 s later
            ("c", "", 1, 3.0),  # 8
            ("d", "", 1, 2.0),  # 9: the first segment of another clip
        ]
    )
    training = np.array([9, 8, 7, 5, 4, 3, 2, 1, 0])
    windows = straddling_windows(meta, training, 1.0, 2.0, 100)
    assert windows.tolist() == [[0, 1, 50], [1, 2, 50], [3, 4, 50]]
    assert straddling_windows(meta, training, 0.5, 2.0, 100)[:, 2].tolist() == [25, 50, 75] * 3
    assert straddling_windows(meta, training, None, 2.0, 100).shape == (0, 3)


@pytest.mark.parametrize(("modality", "shape"), [("audio", AUDIO_SHAPE), ("video", VIDEO_SHAPE)])
def test_a_window_is_the_end_of_one_segment_then_the_start_of_the_next(tmp_path, modality, shape):
    path = tmp_path / f"{modality}.h5"
    write_table(path, shape, n_speakers=1)
    meta = read_meta(path)
    rows = np.arange(len(meta["label"]))
    axis = ROW_TIME_AXIS[modality]
    steps = shape[axis]
    windows = straddling_windows(meta, rows, 1.0, 2.0, steps)
    assert len(windows) == 6  # one per clip: its two segments
    labels = meta["label"][rows]
    dataset = SegmentDataset(path, rows, labels, windows, labels[windows[:, 0]], axis)
    assert len(dataset) == len(rows) + 6 and len(dataset.labels) == len(dataset)
    with h5py.File(path, "r") as handle:
        x = handle["x"][:]
    for j, (first, following, offset) in enumerate(windows):
        example, label = dataset[len(rows) + j]
        assert offset == steps // 2 and label == meta["label"][first]
        time = {"audio": -1, "video": 1}[modality]  # the same axis, channels first
        joined = torch.cat(
            [
                channels_first(x[first][None])[0].narrow(time, offset, steps - offset),
                channels_first(x[following][None])[0].narrow(time, 0, offset),
            ],
            dim=time,
        )
        torch.testing.assert_close(example, joined, rtol=0, atol=0)
    example, _ = dataset[3]  # a row is still the row
    torch.testing.assert_close(example, channels_first(x[3][None])[0], rtol=0, atol=0)


def test_hop_s_adds_training_windows_and_changes_training(tmp_path, audio_table):
    plain, plain_weights = train(params(), audio_table, tmp_path / "plain")
    windowed, windowed_weights = train(params(hop_s=1.0), audio_table, tmp_path / "hop")
    assert plain["n_train_windows"] == 0
    # every clip has two back-to-back segments, both training or neither
    assert windowed["n_train_windows"] == plain["n_train_rows"] // 2
    assert windowed["n_validation_rows"] == plain["n_validation_rows"]
    assert not same_weights(plain_weights, windowed_weights)


@pytest.mark.parametrize(
    ("base", "train_keys"),
    [
        ({}, {"hop_s": 2.0}),  # not shorter than the segment
        ({"hop_s": 1.0}, {"hop_s": 0.5}),  # segments already overlap
        ({}, {"by_modality": {"video": {"hop_s": 3.0}}}),  # one branch's own
    ],
)
def test_hop_s_needs_back_to_back_segments_longer_than_it(base, train_keys):
    tree = {"base": {"segment_s": 2.0, **base}, "train": {"by_modality": {}, **train_keys}}
    with pytest.raises(BadInputError, match="train.hop_s="):
        validate_params(tree)
    assert validate_params({"train": {"hop_s": 1.0}}).train.hop_s == 1.0


# --- presets --------------------------------------------------------------------------


def merged_params(preset: str) -> Params:
    """params.yaml with a preset's keys set on top, as ``dvc exp run -S`` sets them."""
    tree = yaml.safe_load((REPO / "params.yaml").read_text())
    for dotted, value in load_preset(preset, REPO / "params").items():
        *parents, leaf = dotted.split(".")
        node = tree
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return validate_params(tree)


@pytest.mark.parametrize("preset", sorted(p.stem for p in (REPO / "params").glob("paper*.yaml")))
@pytest.mark.parametrize("modality", ["audio", "video"])
def test_every_recipe_is_off_in_the_paper_presets(preset, modality):
    settings = merged_params(preset).train.for_branch(modality)
    assert {key: getattr(settings, key) for key in OFF} == OFF


def test_training_rows_are_decoded_once_within_a_bounded_cache(tmp_path, monkeypatch):
    """SegmentDataset keeps decoded rows up to ROW_CACHE_BYTES and reads the rest from the
    file each time; either way a row is the table's row, and changing a returned tensor
    does not change the next read."""
    import avemotion.training as training

    path = tmp_path / "audio.h5"
    write_table(path, AUDIO_SHAPE)
    row_bytes = int(np.prod(AUDIO_SHAPE)) * 4
    monkeypatch.setattr(training, "ROW_CACHE_BYTES", 5 * row_bytes)
    rows = np.arange(12)
    dataset = SegmentDataset(path, rows, np.zeros(12))
    with h5py.File(path, "r") as handle:
        expected = [channels_first(handle["x"][row][None])[0] for row in rows]
    for _ in range(2):  # the second pass: 5 rows from memory, 7 from the file
        for i, row in enumerate(rows):
            x, _ = dataset[i]
            torch.testing.assert_close(x, expected[row], rtol=0, atol=0)
            x.add_(1.0)
    assert sorted(dataset._decoded) == [0, 1, 2, 3, 4]
    assert dataset._decoded_bytes == 5 * row_bytes
