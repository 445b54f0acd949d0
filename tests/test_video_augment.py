"""Rotated copies: rotation by 0 is the identity, and copies exist only where allowed."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from avemotion import splits
from avemotion.augment import rotate_image
from avemotion.h5store import META_COLUMNS, SegmentWriter, read_meta
from avemotion.params import validate_params
from avemotion.video import build_visual_tensors, keyframe_tensor
from avemotion.video.texture import visual_channels

RNG = np.random.default_rng(11)
N_SPEAKERS, CLIPS_PER_SPEAKER, SEGMENTS_PER_CLIP = 8, 2, 2
N_KEYFRAMES, KEYFRAME_SIZE, INPUT_SIZE = 4, 16, 8


def test_rotation_by_zero_is_the_identity():
    keyframes = RNG.integers(0, 256, (N_KEYFRAMES, KEYFRAME_SIZE, KEYFRAME_SIZE), dtype=np.uint8)
    assert np.array_equal(rotate_image(keyframes[0], 0), keyframes[0])
    assert np.array_equal(
        keyframe_tensor(keyframes, INPUT_SIZE, angle_deg=0),
        keyframe_tensor(keyframes, INPUT_SIZE),
    )
    assert np.array_equal(
        keyframe_tensor(keyframes, KEYFRAME_SIZE, angle_deg=360), visual_channels(keyframes)
    )


def test_a_rotated_copy_computes_lbp_and_idp_from_the_rotated_crop():
    keyframes = RNG.integers(0, 256, (N_KEYFRAMES, KEYFRAME_SIZE, KEYFRAME_SIZE), dtype=np.uint8)
    rotated = np.stack([rotate_image(k, 8) for k in keyframes])
    assert np.array_equal(
        keyframe_tensor(keyframes, KEYFRAME_SIZE, angle_deg=8), visual_channels(rotated)
    )
    assert not np.array_equal(
        keyframe_tensor(keyframes, KEYFRAME_SIZE, angle_deg=8), visual_channels(keyframes)
    )


def _protocol_folds(protocol: str) -> np.ndarray:
    """The index's fold column (one value per clip) under each split protocol."""
    speakers = np.repeat(np.arange(N_SPEAKERS), CLIPS_PER_SPEAKER)
    clips = np.arange(len(speakers))
    if protocol == "speaker":  # speaker-independent k-fold, 4 folds
        return speakers % 4
    if protocol == "loso":
        return speakers.copy()
    if protocol == "fixed":  # speakers 6 and 7 test, the rest train
        return np.where(speakers >= 6, 0, -1)
    if protocol == "kfold":  # clip-level 4 folds
        return RNG.permutation(clips) % 4
    if protocol == "random":  # single 70/30 split
        fold = np.full(len(clips), -1)
        fold[RNG.choice(clips, size=round(0.3 * len(clips)), replace=False)] = 0
        return fold
    raise ValueError(protocol)


def _write_keyframes(path, clip_folds: np.ndarray) -> np.ndarray:
    n_clips = len(clip_folds)
    n_rows = n_clips * SEGMENTS_PER_CLIP
    x = RNG.integers(0, 256, (n_rows, N_KEYFRAMES, KEYFRAME_SIZE, KEYFRAME_SIZE), dtype=np.uint8)
    clip = np.repeat(np.arange(n_clips), SEGMENTS_PER_CLIP)
    rows = {
        "clip_id": [f"c{c:02d}" for c in clip],
        "segment": np.tile(np.arange(SEGMENTS_PER_CLIP), n_clips).tolist(),
        "start_s": (2.0 * np.tile(np.arange(SEGMENTS_PER_CLIP), n_clips)).tolist(),
        "speaker": [f"s{c // CLIPS_PER_SPEAKER}" for c in clip],
        "gender": ["male"] * n_rows,
        "emotion": ["sad"] * n_rows,
        "label": [2] * n_rows,
        "fold": clip_folds[clip].tolist(),
        "augmented": [False] * n_rows,
        "augmentation": [""] * n_rows,
    }
    with SegmentWriter(path, x.shape[1:], np.uint8) as writer:
        writer.append(x, rows)
    return x


@pytest.mark.parametrize("protocol", ["speaker", "loso", "fixed", "kfold", "random"])
def test_augmented_rows_exist_only_where_allowed_and_never_test(protocol, tmp_path):
    clip_folds = _protocol_folds(protocol)
    keyframes = _write_keyframes(tmp_path / "keyframes.h5", clip_folds)
    params = validate_params(
        {
            "base": {"n_jobs": 1},
            "video": {"input_size": INPUT_SIZE},
            "augment": {"rotation_deg": [4, 8, 16, 32]},
        }
    )
    summary = build_visual_tensors(tmp_path / "keyframes.h5", params, tmp_path / "video.h5")
    meta = read_meta(tmp_path / "video.h5")
    assert set(meta) == set(META_COLUMNS)
    fold, augmented, clip_id = meta["fold"], meta["augmented"], meta["clip_id"]
    original = ~augmented

    # every original row is there once; copies carry their angle
    assert original.sum() == len(keyframes)
    assert set(meta["augmentation"][augmented]) <= {"rot4", "rot8", "rot16", "rot32"}
    assert set(meta["augmentation"][original]) == {""}

    # copies exactly for the clips augment_mask allows, four per original row
    allowed_clips = set(np.asarray(clip_id[original])[splits.augment_mask(fold[original])])
    assert set(clip_id[augmented]) == allowed_clips
    assert augmented.sum() == 4 * np.isin(clip_id[original], list(allowed_clips)).sum()
    assert summary == {"segments": int(original.sum()), "augmented": int(augmented.sum())}

    for f in np.unique(fold[fold >= 0]):
        tested = splits.test_rows(fold, augmented, f)
        assert not augmented[tested].any()
        assert tested.sum() == (original & (fold == f)).sum()
        assert not (splits.train_rows(fold, f) & (fold == f)).any()

    single_split = len(np.unique(clip_folds[clip_folds >= 0])) == 1
    if single_split:  # no test clip has augmented copies at all
        test_clips = set(clip_id[original & (fold >= 0)])
        assert test_clips and not test_clips & set(clip_id[augmented])
    else:  # every clip trains in some fold, so every clip has copies
        assert allowed_clips == set(clip_id)

    # the copies are the rotated keyframes' images, in place after their originals
    with h5py.File(tmp_path / "video.h5", "r") as handle:
        x = handle["x"][:]
    assert x.shape == (len(fold), N_KEYFRAMES, INPUT_SIZE, INPUT_SIZE, 3)
    first_copy = np.flatnonzero(augmented)[0]
    source = np.flatnonzero(original & (clip_id == clip_id[first_copy]))[0]
    angle = float(meta["augmentation"][first_copy][3:])
    expected = keyframe_tensor(keyframes[source], INPUT_SIZE, angle_deg=angle)
    assert np.array_equal(x[first_copy], expected)
