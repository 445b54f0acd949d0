"""Speaker normalisation (``base.speaker_norm``): the helper, and what the fusion and the
SVM baselines make of it. The behaviour that matters: a speaker whose every feature is
shifted and scaled (a louder, higher voice) gets the same scores."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
from test_baseline import CLIPS, baseline_params, paths_in, segment_rows
from test_fusion import elm_paths, small_params, synthetic_index, write_features

from avemotion.baseline import run_fit_baseline
from avemotion.evaluation import read_predictions
from avemotion.fusion.inputs import read_inputs
from avemotion.fusion.stages import SvmPaths, run_fit_elm, run_fit_svm
from avemotion.h5store import SegmentWriter, read_meta
from avemotion.params import Params
from avemotion.speakers import standardise_by_speaker


def with_speaker_norm(params: Params, on: bool = True) -> Params:
    return params.model_copy(update={"base": params.base.model_copy(update={"speaker_norm": on})})


def test_each_speakers_rows_get_zero_mean_and_unit_spread() -> None:
    rng = np.random.default_rng(0)
    speakers = np.repeat(["a", "b", "c"], [5, 7, 9])
    offset = {"a": 10.0, "b": -3.0, "c": 0.5}
    scale = {"a": 1.0, "b": 4.0, "c": 0.1}
    x = np.stack([rng.normal(offset[s], scale[s], size=4) for s in speakers])
    z = standardise_by_speaker(x, speakers)
    assert z.dtype == np.float32 and z.shape == x.shape
    for s in "abc":
        np.testing.assert_allclose(z[speakers == s].mean(axis=0), 0.0, atol=1e-6)
        np.testing.assert_allclose(z[speakers == s].std(axis=0), 1.0, atol=1e-5)
    # a speaker's values depend on its own rows only
    moved = x.copy()
    moved[speakers == "c"] *= 100
    np.testing.assert_array_equal(
        standardise_by_speaker(moved, speakers)[speakers != "c"], z[speakers != "c"]
    )


def test_copies_are_scaled_by_their_speakers_reference_rows() -> None:
    """Augmented copies are standardised with the statistics of the original segments,
    so noise added to a copy shows in its values instead of being normalised away."""
    speakers = np.array(["a"] * 4)
    x = np.array([[0.0], [2.0], [100.0], [4.0]])
    reference = np.array([True, True, False, True])  # row 2: a noisy copy
    z = standardise_by_speaker(x, speakers, reference)
    mean, std = 2.0, np.std([0.0, 2.0, 4.0])
    np.testing.assert_allclose(z[:, 0], (x[:, 0] - mean) / std, rtol=1e-6)


def test_a_constant_column_is_centred_and_bad_input_is_refused() -> None:
    x = np.array([[1.0, 5.0], [3.0, 5.0]])
    np.testing.assert_array_equal(standardise_by_speaker(x, ["a", "a"])[:, 1], 0.0)
    with pytest.raises(ValueError, match="1 speaker names for 2 rows"):
        standardise_by_speaker(x, ["a"])
    with pytest.raises(ValueError, match="speaker 'b' has no reference rows"):
        standardise_by_speaker(x, ["a", "b"], np.array([True, False]))


def louder(path: Path, speaker: str, scale: float = 4.0, shift: float | np.ndarray = 64.0) -> None:
    """Scale and shift every feature of ``speaker``'s rows (copies too) in an HDF5 table;
    ``shift`` a number or one per column."""
    rows = np.flatnonzero(read_meta(path)["speaker"] == speaker)
    assert len(rows)
    with h5py.File(path, "r+") as handle:
        x = handle["x"][:]
        x[rows] = x[rows] * scale + shift
        handle["x"][:] = x


def test_fusion_blocks_are_standardised_within_each_speaker(tmp_path) -> None:
    features = write_features(tmp_path / "features", synthetic_index())
    params = small_params()
    plain = read_inputs(params, features, tmp_path / "functionals")
    normed = read_inputs(with_speaker_norm(params), features, tmp_path / "functionals")
    meta = plain.fused.meta
    original = ~np.asarray(meta["augmented"], dtype=bool)
    expected = standardise_by_speaker(plain.blocks["cnn"], meta["speaker"], original)
    np.testing.assert_array_equal(normed.blocks["cnn"], expected)
    for speaker in np.unique(meta["speaker"]):
        rows = original & (meta["speaker"] == speaker)
        np.testing.assert_allclose(normed.blocks["cnn"][rows].mean(axis=0), 0.0, atol=1e-5)


@pytest.mark.parametrize("speaker_norm", [True, False])
def test_with_speaker_norm_a_louder_test_speaker_gets_the_same_fusion_scores(
    tmp_path, speaker_norm
) -> None:
    """Fold 0 tests speakers 00, 02 and 04. Scaling and shifting every CNN feature of
    speaker 00 leaves its fused scores as they were with ``speaker_norm`` (up to float32
    rounding), and moves them without."""
    index = synthetic_index()
    params = with_speaker_norm(small_params(), speaker_norm)
    scores = {}
    for name in ("same", "louder"):
        features = write_features(tmp_path / name / "features", index)
        if name == "louder":
            for table in ("fc_audio.h5", "fc_video.h5"):
                louder(features / table, "00")
        paths = elm_paths(tmp_path / name, features)
        run_fit_elm(params, 0, paths)
        systems = tmp_path / name / "systems"
        run_fit_svm(
            params,
            0,
            SvmPaths(paths.scores, paths.models, paths.predictions, paths.validation, systems),
        )
        scores[name] = read_predictions(paths.predictions / "elm_svm.csv", 4)
    same, moved = scores["same"], scores["louder"]
    assert same["clip_id"].tolist() == moved["clip_id"].tolist()
    speaker00 = same["clip_id"].str.startswith("s0_").to_numpy()
    columns = ["p0", "p1", "p2", "p3"]
    difference = np.abs(same[columns].to_numpy() - moved[columns].to_numpy())[speaker00]
    if speaker_norm:
        assert difference.max() < 1e-3
    else:
        assert difference.max() > 0.05


@pytest.mark.parametrize("speaker_norm", [True, False])
def test_with_speaker_norm_a_louder_test_speaker_gets_the_same_baseline_scores(
    tmp_path, speaker_norm
) -> None:
    """The SVM baselines read the same per-speaker features as the fusion: speaker s0
    (test fold 0), its features shifted towards class 0's, gets the scores it had."""
    rng = np.random.default_rng(1)
    rows = segment_rows(CLIPS)
    x = (np.eye(2, 5)[rows["label"]] * 4 + rng.normal(size=(24, 5))).astype(np.float32)
    params = baseline_params(
        base={"seed": 1, "modalities": ["audio"], "speaker_norm": speaker_norm},
        baseline={"svm_C_grid": [1.0]},
    )
    scores = {}
    for name in ("same", "louder"):
        paths = paths_in(tmp_path / name)
        with SegmentWriter(paths.mfcc, (5,)) as writer:
            writer.append(x, rows)
        if name == "louder":
            louder(paths.mfcc, "s0", scale=1.0, shift=np.array([4.0, -4.0, 0.0, 0.0, 0.0]))
        run_fit_baseline(params, 0, paths)
        scores[name] = read_predictions(paths.predictions / "mfcc_svm.csv", 2)
    s0 = scores["same"]["clip_id"].isin([c for c, s, _ in CLIPS if s == 0]).to_numpy()
    assert s0.sum() == 4
    columns = ["p0", "p1"]
    difference = np.abs(scores["same"][columns] - scores["louder"][columns]).to_numpy()[s0]
    if speaker_norm:
        assert difference.max() < 1e-4
    else:
        assert difference.max() > 0.05
