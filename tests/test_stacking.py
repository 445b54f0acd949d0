"""Which rows each fit may see: the validation speakers of a fold, the inner folds of
cross-fit stacking, the inner CNNs, and the cross-fit features the fusion learns from."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import joblib
import numpy as np
import pandas as pd
import pytest
from test_fusion import CLASSES, elm_paths, small_params, synthetic_index, write_features

from avemotion.errors import BadInputError
from avemotion.evaluation import read_predictions
from avemotion.fusion.inputs import add_crossfit, read_inputs
from avemotion.fusion.stages import SvmPaths, run_fit_elm, run_fit_svm
from avemotion.h5store import META_COLUMNS, SegmentWriter, read_attrs, read_meta
from avemotion.params import Params, validate_params
from avemotion.splits import test_rows, train_rows, validation_rows
from avemotion.stacking import inner_fold_rows, inner_groups, run_train_inner

#: The paper's fusion wiring (CNN features only): the defaults also read functionals.
PAPER_WIRING = {"inputs": ["cnn"], "gender_inputs": ["cnn"], "elm2_input": "hidden"}


def segment_meta(
    n_speakers: int = 12, clips_per_speaker: int = 3, n_folds: int = 2, copies=("snr15",)
) -> dict[str, np.ndarray]:
    """The meta columns of a segment table (as ``read_meta`` gives them): 2 segments per
    clip, the originals then one block per copy; speaker s is in fold s % n_folds."""
    rows = [
        {
            "clip_id": f"s{s}c{c}", "segment": segment, "start_s": 2.0 * segment,
            "speaker": f"spk{s:02d}", "gender": "male" if s % 2 else "female",
            "emotion": f"e{c % 3}", "label": c % 3, "fold": s % n_folds,
            "augmented": copy != "", "augmentation": copy,
        }
        for copy in ["", *copies]
        for s in range(n_speakers)
        for c in range(clips_per_speaker)
        for segment in (0, 1)
    ]  # fmt: skip
    frame = pd.DataFrame(rows, columns=list(META_COLUMNS))
    strings = {"clip_id", "speaker", "gender", "emotion", "augmentation"}
    return {
        column: frame[column].to_numpy(dtype=object if column in strings else None)
        for column in META_COLUMNS
    }


def subset(meta: dict[str, np.ndarray], keep: np.ndarray) -> dict[str, np.ndarray]:
    return {column: values[keep] for column, values in meta.items()}


def stacking_params(n_inner: int = 3, fraction: float = 0.25, **train) -> Params:
    return validate_params(
        {
            "base": {"seed": 3},
            "train": {"validation_fraction": fraction, **train},
            "fusion": {
                "stacking": "cross_fit",
                "inner_folds": list(range(n_inner)),
                **PAPER_WIRING,
            },
        }
    )


# --------------------------------------------------------------------------- validation speakers


def test_validation_rows_are_whole_training_speakers_in_every_fold() -> None:
    meta = segment_meta()
    speaker = meta["speaker"]
    for fold in (0, 1):
        held = validation_rows(meta, fold, 0.25, "speaker", seed=3)
        speakers = set(speaker[held])
        fitting = train_rows(meta["fold"], fold) & ~held
        assert len(speakers) == 2  # a quarter of the 6 training speakers, rounded up
        assert not speakers & set(speaker[meta["fold"] == fold])  # no test speaker
        assert not speakers & set(speaker[fitting])  # no fitting speaker
        # every row of a held speaker, noisy copies included: whoever fits drops them all
        np.testing.assert_array_equal(held, np.isin(speaker, list(speakers)))
        assert meta["augmented"][held].sum() == (~meta["augmented"][held]).sum()
        # a table with other rows (a branch rejected some clips) holds out the same speakers
        fewer = subset(meta, ~np.isin(meta["clip_id"], ["s1c0", "s2c1", "s5c2", "s8c0"]))
        again = validation_rows(fewer, fold, 0.25, "speaker", seed=3)
        assert set(fewer["speaker"][again]) == speakers
    # by clip: whole training clips with their copies, never a test clip
    held = validation_rows(meta, 0, 0.25, "clip", seed=3)
    clips = set(meta["clip_id"][held])
    assert clips and not clips & set(meta["clip_id"][meta["fold"] == 0])
    np.testing.assert_array_equal(held, np.isin(meta["clip_id"], list(clips)))
    assert not validation_rows(meta, 0, 0.0, "speaker", seed=3).any()


# --------------------------------------------------------------------------- inner folds


def test_inner_folds_deal_every_fitting_speaker_to_exactly_one_inner_fold() -> None:
    meta = segment_meta()
    params = stacking_params(n_inner=3)
    speaker = meta["speaker"]
    original = ~meta["augmented"].astype(bool)
    for fold in (0, 1):
        held = validation_rows(meta, fold, 0.25, "speaker", seed=3)
        validation_speakers = set(speaker[held])
        fitting = train_rows(meta["fold"], fold) & ~held
        test = test_rows(meta["fold"], meta["augmented"], fold)
        groups, kind = inner_groups(meta, fold, 3, params)
        assert kind == "speaker"
        dealt = np.concatenate(groups)
        assert len(dealt) == len(set(dealt)) and set(dealt) == set(speaker[fitting])
        assert sorted(len(g) for g in groups) == [1, 1, 2]  # 4 fitting speakers, 3 folds
        out_of_fold = np.zeros(len(speaker), dtype=int)
        for inner in range(3):
            rows, held_out, kind = inner_fold_rows(meta, fold, inner, 3, params)
            assert kind == "speaker" and list(held_out) == list(groups[inner])
            trained = set(speaker[rows.train])
            assert not trained & set(held_out)
            assert not trained & validation_speakers
            assert not (meta["fold"][rows.train] == fold).any()  # no test row
            # it trains on every other fitting row, noisy copies included
            mine = fitting & np.isin(speaker, held_out)
            np.testing.assert_array_equal(rows.train, np.flatnonzero(fitting & ~mine))
            # it stops on the validation speakers' originals, as the outer CNN does
            np.testing.assert_array_equal(rows.validation, np.flatnonzero(held & original))
            # it writes features of its held-out rows and of every row the fusion reads
            # outside the fitting part: validation and test rows with their noisy copies
            written = np.zeros(len(speaker), dtype=bool)
            written[rows.test] = True
            assert written[test].all() and written[held].all()
            np.testing.assert_array_equal(written, mine | ~fitting)
            out_of_fold += mine
        np.testing.assert_array_equal(out_of_fold, fitting.astype(int))  # each exactly once


def test_inner_folds_are_the_same_for_tables_with_other_rows() -> None:
    """The audio and the video table (whose rows differ) get the same inner folds."""
    meta = segment_meta()
    params = stacking_params(n_inner=3)
    video = subset(meta, ~np.isin(meta["clip_id"], ["s1c0", "s3c2"]) & (meta["segment"] == 0))
    for fold in (0, 1):
        audio_groups, _ = inner_groups(meta, fold, 3, params)
        video_groups, _ = inner_groups(video, fold, 3, params)
        assert [list(g) for g in audio_groups] == [list(g) for g in video_groups]


def test_too_few_fitting_speakers_fall_back_to_clips_then_stop() -> None:
    meta = segment_meta(n_speakers=6, n_folds=2)  # 3 training speakers: 1 held, 2 fitting
    groups, kind = inner_groups(meta, 0, 3, stacking_params(n_inner=3))
    held = validation_rows(meta, 0, 0.25, "speaker", seed=3)
    fitting_clips = set(meta["clip_id"][train_rows(meta["fold"], 0) & ~held])
    assert kind == "clip" and set(np.concatenate(groups)) == fitting_clips
    rows, held_out, _ = inner_fold_rows(meta, 0, 0, 3, stacking_params(n_inner=3))
    assert not set(meta["clip_id"][rows.train]) & set(held_out)
    with pytest.raises(BadInputError, match="lower the number of fusion.inner_folds"):
        inner_groups(meta, 0, 7, stacking_params(n_inner=7))


# --------------------------------------------------------------------------- inner CNNs


TINY = {
    "audio": {"channels": [4, 4, 8, 8], "fc": [16, 16]},
    "video": {"channels": [4] * 8, "fc": [16, 16]},  # unused; a profile names both branches
}


def write_spectrograms(path: Path, meta: dict[str, np.ndarray]) -> None:
    """Spectrogram-shaped rows (30, 100, 3) whose class shows as a brighter band."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(len(meta["label"]), 30, 100, 3)).astype(np.float32)
    for row, label in enumerate(meta["label"]):
        x[row, 8 * label : 8 * label + 6] += 1.0
    with SegmentWriter(path, (30, 100, 3)) as writer:
        writer.append(x, meta)


@pytest.mark.parametrize("standardise", [False, True])
def test_an_inner_cnn_writes_features_of_speakers_it_never_trained_on(
    tmp_path, standardise
) -> None:
    meta = segment_meta(n_speakers=6, clips_per_speaker=2, n_folds=3)
    table = tmp_path / "audio.h5"
    write_spectrograms(table, meta)
    params = validate_params(
        {
            "base": {"seed": 1, "profile": "tiny", "device": "cpu"},
            "data": {"classes": ["e0", "e1", "e2"]},
            "models": {"tiny": TINY},
            "train": {
                "epochs": 1,
                "batch_size": 8,
                "threads": 1,
                "validation_fraction": 0.25,
                "standardise_inputs": standardise,
                "by_modality": {},
            },
            "fusion": {"stacking": "cross_fit", "inner_folds": [0, 1], **PAPER_WIRING},
        }
    )
    features = tmp_path / "inner" / "fc_audio_1.h5"
    summary = run_train_inner(
        params, "audio", 0, 1, table, tmp_path / "inner1.pt", features, tmp_path / "m.json"
    )
    attrs = read_attrs(features)
    trained, held_out = set(attrs["trained_speakers"]), set(attrs["held_out_groups"])
    assert trained and held_out and not trained & held_out
    assert attrs["group_kind"] == "speaker" and attrs["inner_fold"] == 1
    assert summary["held_out_groups"] == sorted(held_out)
    # fold 0 tests spk00 and spk03; 1 of the other 4 is held out for validation
    validation = set(meta["speaker"][validation_rows(meta, 0, 0.25, "speaker", 1)])
    assert trained | held_out | validation == {"spk01", "spk02", "spk04", "spk05"}
    assert not trained & validation
    written = read_meta(features)
    assert not set(written["speaker"]) & trained
    rows, _, _ = inner_fold_rows(meta, 0, 1, 2, params)
    keys = set(zip(written["clip_id"], written["segment"], written["augmentation"], strict=True))
    expected = zip(
        meta["clip_id"][rows.test],
        meta["segment"][rows.test],
        meta["augmentation"][rows.test],
        strict=True,
    )
    assert keys == set(expected) and len(keys) == len(written["clip_id"])
    assert written["augmented"][np.isin(written["speaker"], list(held_out))].any()
    with h5py.File(features, "r") as handle:
        x, probs = handle["x"][:], handle["probs"][:]
    assert x.shape == (len(keys), 16) and np.isfinite(x).all()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert json.loads((tmp_path / "m.json").read_text())["n_train_rows"] == len(rows.train)


# --------------------------------------------------------------------------- cross-fit features


def write_inner_tables(features: Path, params: Params, fold: int) -> None:
    """Hand-made inner tables, written where train_inner writes them (``inner/``) with
    the rows it writes: inner fold j's audio features are all j + 1, its video ones
    10 (j + 1), so a fused row's cross-fit features say which inner CNN they came from."""
    n_inner = len(params.fusion.inner_folds)
    for modality, scale in (("audio", 1.0), ("video", 10.0)):
        meta = read_meta(features / f"fc_{modality}.h5")
        with h5py.File(features / f"fc_{modality}.h5", "r") as handle:
            dim = handle["x"].shape[1]
        for inner in range(n_inner):
            rows, held_out, kind = inner_fold_rows(meta, fold, inner, n_inner, params)
            attrs = {
                "held_out_groups": [str(g) for g in held_out],
                "group_kind": kind,
                "trained_speakers": sorted(set(meta["speaker"][rows.train])),
            }
            n = len(rows.test)
            path = features / "inner" / f"fc_{modality}_{inner}.h5"
            with SegmentWriter(
                path, (dim,), attrs=attrs, extra_shapes={"probs": (len(CLASSES),)}
            ) as writer:
                writer.append(
                    np.full((n, dim), scale * (inner + 1)),
                    {column: meta[column][rows.test] for column in META_COLUMNS},
                    extras={"probs": np.full((n, len(CLASSES)), 1 / len(CLASSES))},
                )


def crossfit_params(test_features: str = "outer") -> Params:
    return small_params(stacking="cross_fit", inner_folds=[0, 1], test_features=test_features)


@pytest.mark.parametrize("test_features", ["outer", "inner_mean"])
def test_each_fitting_row_gets_the_features_of_the_inner_cnn_that_held_its_speaker_out(
    tmp_path, test_features
) -> None:
    features = write_features(tmp_path / "features", synthetic_index())
    params = crossfit_params(test_features)
    write_inner_tables(features, params, 0)
    inputs = read_inputs(params, features, tmp_path / "functionals")
    meta = inputs.fused.meta
    held = validation_rows(meta, 0, 0.2, "speaker", 3)
    fitting = train_rows(meta["fold"], 0) & ~held
    add_crossfit(params, inputs, features, fitting)
    crossfit = inputs.cnn_crossfit
    assert crossfit.shape == inputs.blocks["cnn"].shape == (len(fitting), 22)

    groups, _ = inner_groups(read_meta(features / "fc_audio.h5"), 0, 2, params)
    inner_of = {speaker: j for j, group in enumerate(groups) for speaker in group}
    assert set(inner_of) == set(meta["speaker"][fitting])  # fold 0: spk 01, 05 (03 held)
    step = np.array([inner_of.get(s, -1) + 1 for s in meta["speaker"]], dtype=np.float32)
    np.testing.assert_array_equal(crossfit[fitting, :12], np.repeat(step[fitting, None], 12, 1))
    np.testing.assert_array_equal(crossfit[fitting, 12:], 10 * crossfit[fitting, :12][:, :10])
    if test_features == "outer":  # the validation and test rows keep the outer CNN's
        np.testing.assert_array_equal(crossfit[~fitting], inputs.blocks["cnn"][~fitting])
    else:  # the mean of the inner CNNs' (1 and 2; 10 and 20)
        np.testing.assert_array_equal(crossfit[~fitting, :12], 1.5)
        np.testing.assert_array_equal(crossfit[~fitting, 12:], 15.0)
    np.testing.assert_array_equal(inputs.blocks["cnn"], inputs.fused.x)  # left as it was


def test_fit_elm_and_fit_svm_run_the_cross_fit_family(tmp_path) -> None:
    features = write_features(tmp_path / "features", synthetic_index())
    params = crossfit_params()
    write_inner_tables(features, params, 0)
    paths = elm_paths(tmp_path / "out", features)
    summary = run_fit_elm(params, 0, paths)
    assert summary["stacking"] == "cross_fit"
    assert set(summary["parts"]["test"]) >= {"paper", "cnn_crossfit"}
    scores = np.load(paths.scores)
    for part in ("validation", "test"):
        for key in ("classes", "fit_same", "scored"):
            assert f"cnn_crossfit__{part}__{key}" in scores
    # each family's ELM pair learnt from its own features: the scaler's means
    inputs = read_inputs(params, features, paths.functionals)
    meta = inputs.fused.meta
    train = train_rows(meta["fold"], 0)
    add_crossfit(params, inputs, features, train & ~validation_rows(meta, 0, 0.2, "speaker", 3))
    for family, x in (("paper", inputs.blocks["cnn"]), ("cnn_crossfit", inputs.cnn_crossfit)):
        elm = joblib.load(paths.models / f"{family}.joblib")
        np.testing.assert_allclose(elm.scaler_.mean_, x[train].mean(axis=0), rtol=1e-5)

    svm_paths = SvmPaths(
        paths.scores, paths.models, paths.predictions, paths.validation, tmp_path / "systems"
    )
    run_fit_svm(params, 0, svm_paths)
    held = set(meta["speaker"][validation_rows(meta, 0, 0.2, "speaker", 3)])
    speaker_of = dict(zip(meta["clip_id"], meta["speaker"], strict=True))
    for folder, speakers in ((paths.predictions, {"00", "02", "04"}), (paths.validation, held)):
        table = read_predictions(folder / "elm_svm_cnn_crossfit.csv", len(CLASSES))
        assert len(table) and set(table["clip_id"].map(speaker_of)) == speakers
    assert (tmp_path / "systems" / "elm_svm_cnn_crossfit.joblib").is_file()


def test_missing_inner_tables_are_named(tmp_path) -> None:
    features = write_features(tmp_path / "features", synthetic_index())
    params = crossfit_params()
    paths = elm_paths(tmp_path / "out", features)
    with pytest.raises(BadInputError, match="run train_inner") as error:
        run_fit_elm(params, 0, paths)
    assert error.value.path == str(features / "inner" / "fc_audio_0.h5")
