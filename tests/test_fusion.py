"""The ELM-1 -> ELM-2 -> SVM fusion: what feeds what, the cross-fitting, the row pairing,
and the fit_elm / fit_svm / fit_baseline / evaluate stages end to end on synthetic tables."""

from __future__ import annotations

import json
import runpy
import shutil
import sys
from pathlib import Path

import h5py
import joblib
import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.base import clone
from sklearn.calibration import CalibratedClassifierCV
from sklearn.utils.estimator_checks import check_estimator

from avemotion.errors import BadInputError
from avemotion.evaluation import SYSTEMS, read_predictions
from avemotion.fusion.estimators import ELMFusion, TwoStageELM, cross_fit_probs
from avemotion.fusion.inputs import read_inputs
from avemotion.fusion.pairing import fuse_tables, pair_rows
from avemotion.fusion.stages import PARTS, ElmPaths, run_fit_elm
from avemotion.h5store import META_COLUMNS, SegmentWriter, read_meta
from avemotion.index import INDEX_COLUMNS
from avemotion.params import Params, validate_params
from avemotion.params.schema import AugmentParams
from avemotion.scores import BranchTable
from avemotion.splits import train_rows, validation_groups

REPO = Path(__file__).resolve().parents[1]
PIPELINE = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
CLASSES = ["neutral", "happy", "sad", "angry"]


def gendered_blobs(n_per_class: int = 30, n_speakers: int = 6, seed: int = 0):
    """Features that carry emotion and gender, with a speaker per row: X (n, 8), y, g, s."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(4), n_per_class)
    speaker = np.tile(np.arange(n_speakers), len(y) // n_speakers + 1)[: len(y)]
    gender = np.where(speaker % 2, "male", "female")
    centres = rng.normal(size=(4, 8)) * 2
    X = centres[y] + rng.normal(size=(len(y), 8)) + (speaker % 2)[:, None] * 1.5
    return X, y, gender, np.array([f"spk{s}" for s in speaker])


# --------------------------------------------------------------------------- estimators


def test_elm2_reads_elm1_hidden_output_not_its_predictions() -> None:
    X, y, gender, _ = gendered_blobs()
    elm = TwoStageELM(elm1_hidden=20, elm2_hidden_per_class=5, random_state=3).fit(X, y, gender)
    scaled = elm.scaler_.transform(X)
    assert elm.elm1_.n_features_in_ == 8 and elm.elm1_.classes_.tolist() == ["female", "male"]
    assert elm.elm2_.n_features_in_ == 20  # ELM-1's hidden width, not its 2 gender outputs
    assert elm.elm2_.n_hidden == 5 * 4  # elm2_hidden_per_class x classes
    np.testing.assert_array_equal(elm.elm2_features(X), elm.elm1_.transform(scaled))
    np.testing.assert_allclose(
        elm.predict_proba(X), elm.elm2_.predict_proba(elm.elm1_.transform(scaled))
    )
    assert elm.predict_gender(X).tolist().count("male") > 0.8 * np.sum(gender == "male")


def test_gender_labels_do_not_reach_elm2_through_the_hidden_layer() -> None:
    """ELM-1's hidden layer is random, so (as the paper describes it) gender shapes only
    ELM-1's discarded output layer; hidden_and_gender lets it through."""
    X, y, gender, _ = gendered_blobs()
    flipped = np.where(gender == "male", "female", "male")
    a = TwoStageELM(elm1_hidden=20, elm2_hidden_per_class=5, random_state=3).fit(X, y, gender)
    b = TwoStageELM(elm1_hidden=20, elm2_hidden_per_class=5, random_state=3).fit(X, y, flipped)
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
    both = TwoStageELM(
        elm1_hidden=20, elm2_hidden_per_class=5, elm2_input="hidden_and_gender", random_state=3
    ).fit(X, y, gender)
    assert both.elm2_.n_features_in_ == 22
    np.testing.assert_allclose(both.elm2_features(X)[:, 20:].sum(axis=1), 1.0)


def test_without_gender_elm2_reads_the_standardised_features() -> None:
    X, y, _, _ = gendered_blobs()
    elm = TwoStageELM(use_gender=False, elm2_hidden_per_class=5, random_state=0).fit(X, y)
    assert elm.elm1_ is None and elm.elm2_.n_features_in_ == 8
    np.testing.assert_allclose(elm.elm2_features(X), elm.scaler_.transform(X))
    with pytest.raises(ValueError, match="use_gender=False"):
        elm.predict_gender(X)


def test_an_ensemble_averages_its_members_and_its_first_member_is_the_single_pair() -> None:
    """``n_members=3``: three ELM pairs with their own hidden layers on one scaler; the
    scores are the members' mean ELM-2 softmax, the gender their mean ELM-1 vote, and
    member 0 draws exactly the hidden layers of ``n_members=1``."""
    X, y, gender, _ = gendered_blobs()
    kwargs = {"elm1_hidden": 20, "elm2_hidden_per_class": 5, "random_state": 3}
    single = TwoStageELM(**kwargs).fit(X, y, gender)
    ensemble = TwoStageELM(**kwargs, n_members=3).fit(X, y, gender)
    assert len(ensemble.members_) == 3 and len(single.members_) == 1
    for name in ("input_weights_", "biases_", "output_weights_"):
        np.testing.assert_array_equal(getattr(ensemble.elm1_, name), getattr(single.elm1_, name))
        np.testing.assert_array_equal(getattr(ensemble.elm2_, name), getattr(single.elm2_, name))
    weights = [elm2.input_weights_ for _, elm2 in ensemble.members_]
    assert not np.allclose(weights[0], weights[1]) and not np.allclose(weights[1], weights[2])
    scaled = ensemble.scaler_.transform(X)
    members = [elm2.predict_proba(elm1.transform(scaled)) for elm1, elm2 in ensemble.members_]
    np.testing.assert_allclose(ensemble.predict_proba(X), np.mean(members, axis=0))
    assert not np.allclose(ensemble.predict_proba(X), single.predict_proba(X))
    votes = np.mean([elm1.predict_proba(scaled) for elm1, _ in ensemble.members_], axis=0)
    np.testing.assert_array_equal(
        ensemble.predict_gender(X), ensemble.elm1_.classes_[votes.argmax(axis=1)]
    )
    with pytest.raises(ValueError, match="n_members must be a positive integer"):
        TwoStageELM(**kwargs, n_members=0).fit(X, y, gender)


def test_the_fusion_passes_its_ensemble_size_to_every_elm_it_fits() -> None:
    """ELMFusion's ELM pair is an ensemble, and so are the clones its cross-fitting fits:
    their out-of-fold scores are what an ensemble fitted without each speaker gives."""
    X, y, gender, speaker = gendered_blobs()
    fusion = ELMFusion(
        elm1_hidden=20, elm2_hidden_per_class=5, n_members=2, stacking="crossfit", random_state=0
    ).fit(X, y, gender, groups=speaker)
    assert len(fusion.elm_.members_) == 2
    crossed = cross_fit_probs(fusion.elm_, X, y, gender, speaker, 3, fusion.classes_)
    fitted, scored = crossed.splits[0]
    alone = TwoStageELM(**fusion.elm_.get_params()).fit(X[fitted], y[fitted], gender[fitted])
    assert len(alone.members_) == 2
    np.testing.assert_allclose(crossed.probs[scored], alone.predict_proba(X[scored]))


def test_unknown_gender_is_refused() -> None:
    X, y, gender, _ = gendered_blobs()
    gender = gender.astype(object)
    gender[:3] = "unknown"
    with pytest.raises(ValueError, match="unknown gender"):
        TwoStageELM().fit(X, y, gender)
    with pytest.raises(ValueError, match="needs the gender"):
        TwoStageELM().fit(X, y)


def test_features_and_gender_gives_elm2_the_emotion_columns_and_2_gender_probabilities() -> None:
    """``elm2_input="features_and_gender"``: ELM-1 reads ``gender_columns`` only, ELM-2 the
    standardised ``emotion_columns`` beside ELM-1's 2 gender probabilities."""
    X, y, gender, _ = gendered_blobs()
    elm = TwoStageELM(
        elm1_hidden=20,
        elm2_hidden_per_class=5,
        elm2_input="features_and_gender",
        gender_columns=np.array([6, 7]),
        emotion_columns=np.arange(5),
        random_state=3,
    ).fit(X, y, gender)
    scaled = elm.scaler_.transform(X)
    second = elm.elm2_features(X)
    assert second.shape == (len(X), 5 + 2)
    assert elm.elm1_.n_features_in_ == 2 and elm.elm2_.n_features_in_ == 7
    np.testing.assert_allclose(second[:, :5], scaled[:, :5])
    np.testing.assert_allclose(second[:, 5:], elm.elm1_.predict_proba(scaled[:, [6, 7]]))
    np.testing.assert_allclose(second[:, 5:].sum(axis=1), 1.0)
    # column 5 is read by neither ELM: moving it changes no score, no gender
    moved = X.copy()
    moved[:, 5] += 100.0
    np.testing.assert_array_equal(elm.predict_proba(moved), elm.predict_proba(X))
    np.testing.assert_array_equal(elm.predict_gender(moved), elm.predict_gender(X))
    # an emotion column moves ELM-2's input but not ELM-1's gender
    moved = X.copy()
    moved[:, 0] += 100.0
    np.testing.assert_array_equal(elm.predict_gender(moved), elm.predict_gender(X))
    assert not np.allclose(elm.predict_proba(moved), elm.predict_proba(X))


@pytest.mark.parametrize("scores", ["softmax", "platt"])
def test_svm_is_fitted_on_probability_rows(scores: str) -> None:
    X, y, gender, _ = gendered_blobs()
    fusion = ELMFusion(
        elm1_hidden=20, elm2_hidden_per_class=5, svm_scores=scores, random_state=0
    ).fit(X, y, gender)
    svc = fusion.svm_
    if isinstance(svc, CalibratedClassifierCV):
        svc = svc.calibrated_classifiers_[0].estimator
    assert svc.n_features_in_ == 4  # one input per emotion class
    np.testing.assert_allclose(svc.support_vectors_.sum(axis=1), 1.0)  # training rows
    assert np.all(svc.support_vectors_ >= 0)
    proba = fusion.predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert np.mean(fusion.predict(X) == y) > 0.9
    if scores == "softmax":  # the softmax keeps the SVC's own decision
        np.testing.assert_array_equal(fusion.predict(X), svc.predict(fusion.elm_.predict_proba(X)))


def test_cross_fit_scores_no_row_with_an_elm_that_saw_its_speaker() -> None:
    X, y, gender, speaker = gendered_blobs()
    template = TwoStageELM(elm1_hidden=20, elm2_hidden_per_class=5, random_state=1)
    crossed = cross_fit_probs(template, X, y, gender, speaker, 3, np.arange(4))
    scored_once = np.concatenate([scored for _, scored in crossed.splits])
    assert sorted(scored_once) == list(range(len(X)))  # every row scored exactly once
    for fitted, scored in crossed.splits:
        assert not set(speaker[fitted]) & set(speaker[scored])
        assert not set(fitted) & set(scored)
        # the scores of these rows are those of an ELM pair fitted on `fitted` only
        refit = clone(template).fit(X[fitted], y[fitted], gender[fitted])
        np.testing.assert_allclose(crossed.probs[scored], refit.predict_proba(X[scored]))
    np.testing.assert_allclose(crossed.probs.sum(axis=1), 1.0)

    fusion = ELMFusion(
        elm1_hidden=20,
        elm2_hidden_per_class=5,
        stacking="crossfit",
        cross_fit_folds=3,
        random_state=1,
    ).fit(X, y, gender, groups=speaker)
    for fitted, scored in fusion.cross_fit_splits_:
        assert not set(speaker[fitted]) & set(speaker[scored])
    same = ELMFusion(elm1_hidden=20, elm2_hidden_per_class=5, random_state=1).fit(X, y, gender)
    assert same.cross_fit_splits_ is None
    # the test side is the same ELM pair in both stackings
    np.testing.assert_array_equal(fusion.elm_.predict_proba(X), same.elm_.predict_proba(X))


@pytest.mark.parametrize("stacking", ["same", "crossfit"])
# check_array_api_input skips itself unless SCIPY_ARRAY_API=1 is set before scipy loads.
@pytest.mark.filterwarnings("ignore:.*SCIPY_ARRAY_API:sklearn.exceptions.SkipTestWarning")
def test_elm_fusion_passes_sklearn_checks(stacking: str) -> None:
    check_estimator(
        ELMFusion(
            use_gender=False,
            elm2_hidden_per_class=5,
            stacking=stacking,
            cross_fit_folds=2,
            random_state=0,
        )
    )


def test_params_name_every_bad_fusion_value() -> None:
    with pytest.raises(BadInputError) as error:
        validate_params({"fusion": {"elm1_hidden": 0, "svm_gamma": "wide"}})
    message = str(error.value)
    assert "\n" not in message
    assert "`fusion.elm1_hidden` = 0" in message and "`fusion.svm_gamma` = 'wide'" in message
    with pytest.raises(BadInputError, match=r"unknown key `fusion\.epsilon`") as error:
        validate_params({"fusion": {"epsilon": 1.0}})
    assert "\n" not in str(error.value)


# --------------------------------------------------------------------------- pairing


def branch(modality: str, rows: list[tuple[str, int, str]], dim: int = 3) -> BranchTable:
    """A hand-made branch table: rows of (clip_id, segment, augmentation)."""
    n = len(rows)
    meta = {
        "clip_id": np.array([r[0] for r in rows], dtype=object),
        "segment": np.array([r[1] for r in rows]),
        "start_s": np.array([2.0 * r[1] for r in rows]),
        "speaker": np.array(["a"] * n, dtype=object),
        "gender": np.array(["male"] * n, dtype=object),
        "emotion": np.array(["happy"] * n, dtype=object),
        "label": np.ones(n, dtype=np.int32),
        "fold": np.zeros(n, dtype=np.int32),
        "augmented": np.array([r[2] != "" for r in rows]),
        "augmentation": np.array([r[2] for r in rows], dtype=object),
    }
    x = np.arange(n * dim, dtype=np.float32).reshape(n, dim)
    return BranchTable(modality, Path(f"fc_{modality}.h5"), x, np.full((n, 2), 0.5), meta)


def test_pairing_rule_with_augmented_copies_and_unpaired_rows() -> None:
    audio = branch(
        "audio",
        [
            ("c1", 0, ""), ("c1", 1, ""), ("c2", 0, ""),  # c2 has no video at all
            ("c1", 0, "snr15"), ("c1", 0, "snr20"), ("c1", 1, "snr15"), ("c2", 0, "snr15"),
        ],
    )  # fmt: skip
    video = branch(
        "video",
        [
            ("c1", 0, ""), ("c1", 1, ""), ("c3", 0, ""),  # c3 has no audio
            ("c1", 0, "rot4"), ("c1", 0, "rot8"), ("c1", 0, "rot16"), ("c3", 0, "rot4"),
        ],
    )  # fmt: skip
    augment = AugmentParams(snr_db=[15, 20], rotation_deg=[4, 8, 16])
    row_a, row_v, counts = pair_rows(audio, video, augment)
    pairs = {
        (audio.meta["augmentation"][a] or "-", video.meta["augmentation"][v] or "-",
         audio.meta["segment"][a])
        for a, v in zip(row_a, row_v, strict=True)
    }  # fmt: skip
    assert pairs == {
        ("-", "-", 0), ("-", "-", 1),  # c1's originals
        ("snr15", "rot4", 0), ("snr20", "rot8", 0),  # the k-th copy with the k-th
        ("-", "rot16", 0),  # video's 3rd copy has no audio partner: audio's original
        ("snr15", "-", 1),  # audio's copy of segment 1, no rotated copy: video's original
    }  # fmt: skip
    assert counts["audio_original_rows_left_out"] == 1  # c2 segment 0
    assert counts["video_original_rows_left_out"] == 1  # c3 segment 0
    assert counts["audio_copies_left_out"] == 1 and counts["video_copies_left_out"] == 1
    assert counts["copies_paired_with_an_original"] == 2
    assert counts["clips_left_out"] == ["c2", "c3"]

    fused = fuse_tables([audio, video], augment)
    assert fused.x.shape == (6, 6)
    assert sorted(fused.meta["augmentation"]) == sorted(
        ["", "", "snr15+rot4", "snr20+rot8", "rot16", "snr15"]
    )
    assert fused.meta["augmented"].sum() == 4


def test_pairing_refuses_an_augmentation_not_in_params() -> None:
    audio = branch("audio", [("c1", 0, ""), ("c1", 0, "snr10")])
    video = branch("video", [("c1", 0, "")])
    with pytest.raises(BadInputError, match=r"snr10.*augment.snr_db"):
        pair_rows(audio, video, AugmentParams(snr_db=[15], rotation_deg=[]))


# --------------------------------------------------------------------------- stages


def write_fc(
    path: Path, modality: str, index: pd.DataFrame, dim: int, augmentations: list[str], seed: int
) -> None:
    """A synthetic fc_<modality>.h5: 2 segments per clip, features near a class centre."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(100 + dim).normal(size=(len(CLASSES), dim)) * 1.5
    rows: dict[str, list] = {column: [] for column in META_COLUMNS}
    x, probs = [], []
    for name in ["", *augmentations]:
        for clip in index.itertuples():
            if modality == "video" and clip.clip_id == "s1_c3":
                continue  # the video branch rejected this clip
            for segment in range(2):
                x.append(centres[clip.label] + rng.normal(size=dim))
                p = rng.random(len(CLASSES)) + np.eye(len(CLASSES))[clip.label]
                probs.append(p / p.sum())
                values = {
                    "clip_id": clip.clip_id, "segment": segment, "start_s": 2.0 * segment,
                    "speaker": clip.speaker, "gender": clip.gender, "emotion": clip.emotion,
                    "label": clip.label, "fold": clip.fold, "augmented": name != "",
                    "augmentation": name,
                }  # fmt: skip
                for column, value in values.items():
                    rows[column].append(value)
    with SegmentWriter(path, (dim,), extra_shapes={"probs": (len(CLASSES),)}) as writer:
        writer.append(np.array(x), rows, extras={"probs": np.array(probs)})


def write_functionals(
    path: Path,
    index: pd.DataFrame,
    dim: int,
    augmentations: list[str],
    leave_out: frozenset[tuple[str, int, str]] = frozenset(),
) -> None:
    """A synthetic functionals table (build_functionals' layout): every audio segment,
    the originals then one block per noisy copy, but the (clip, segment, copy) keys in
    ``leave_out``. Columns 0-2 name the row (the clip's position in the index, the
    segment, the copy's SNR or 0); the others carry the class."""
    rng = np.random.default_rng(dim)
    rows: dict[str, list] = {column: [] for column in META_COLUMNS}
    x = []
    for name in ["", *augmentations]:
        snr = float(name.removeprefix("snr")) if name else 0.0
        for position, clip in enumerate(index.itertuples()):
            for segment in range(2):
                if (clip.clip_id, segment, name) in leave_out:
                    continue
                signal = np.eye(len(CLASSES), dim - 3)[clip.label] * 2 + rng.normal(size=dim - 3)
                x.append([position, segment, snr, *signal])
                values = {
                    "clip_id": clip.clip_id, "segment": segment, "start_s": 2.0 * segment,
                    "speaker": clip.speaker, "gender": clip.gender, "emotion": clip.emotion,
                    "label": clip.label, "fold": clip.fold, "augmented": name != "",
                    "augmentation": name,
                }  # fmt: skip
                for column, value in values.items():
                    rows[column].append(value)
    with SegmentWriter(path, (dim,)) as writer:
        writer.append(np.array(x), rows)


def synthetic_index(n_speakers: int = 6, clips_per_speaker: int = 8) -> pd.DataFrame:
    rows = []
    for s in range(n_speakers):
        for j in range(clips_per_speaker):
            label = j % len(CLASSES)
            rows.append(
                {
                    "clip_id": f"s{s}_c{j}", "path": f"s{s}_c{j}.mp4", "dataset": "synthetic",
                    "speaker": f"{s:02d}", "gender": "female" if s < 3 else "male",
                    "emotion": CLASSES[label], "label": label, "sentence": "", "duration_s": 4.0,
                    "audio_duration_s": 4.0, "video_duration_s": 4.0,
                    "has_audio": True, "has_video": True, "fold": s % 2,
                }
            )  # fmt: skip
    return pd.DataFrame(rows, columns=list(INDEX_COLUMNS))


def write_mfcc(path: Path, index: pd.DataFrame) -> None:
    rng = np.random.default_rng(5)
    rows: dict[str, list] = {column: [] for column in META_COLUMNS}
    x = []
    for clip in index.itertuples():
        for segment in range(2):
            x.append(np.eye(len(CLASSES), 8)[clip.label] * 2 + rng.normal(size=8))
            values = {
                "clip_id": clip.clip_id, "segment": segment, "start_s": 2.0 * segment,
                "speaker": clip.speaker, "gender": clip.gender, "emotion": clip.emotion,
                "label": clip.label, "fold": clip.fold, "augmented": False, "augmentation": "",
            }  # fmt: skip
            for column, value in values.items():
                rows[column].append(value)
    with SegmentWriter(path, (8,)) as writer:
        writer.append(np.array(x), rows)


#: The project fixture's seed and train.validation_fraction (the schema's default).
SEED, VALIDATION_FRACTION = 3, 0.2


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    """A project folder with params.yaml, the index, fc tables for 2 folds, mfcc.h5 and
    the egemaps and compare functionals tables."""
    params = {
        "base": {"seed": SEED, "modalities": ["audio", "video"], "n_jobs": 1},
        "data": {"dataset": "manifest", "classes": CLASSES},
        "split": {"protocol": "speaker"},
        "augment": {"snr_db": [15, 20], "rotation_deg": [4]},
        "fusion": {
            "elm1_hidden": 20,
            "elm2_hidden_per_class": 10,
            "elm_C": 1.0,
            "cross_fit_folds": 2,
            # the paper's wiring, which the tests below read; the defaults add functionals
            "inputs": ["cnn"],
            "gender_inputs": ["cnn"],
            "elm2_input": "hidden",
        },
        "baseline": {"svm_C_grid": [0.1, 1.0, 10.0]},
        "functionals": {"sets": ["egemaps", "compare"]},
    }
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    index = synthetic_index()
    (tmp_path / "data").mkdir()
    index.to_csv(tmp_path / "data" / "index.csv", index=False)
    for fold in (0, 1):
        folder = tmp_path / "data" / "features" / f"fold{fold}"
        write_fc(folder / "fc_audio.h5", "audio", index, 12, ["snr15", "snr20"], fold)
        write_fc(folder / "fc_video.h5", "video", index, 10, ["rot4"], 10 + fold)
    # the video segment table, whose keys fit_baseline reads: the FC tables have its rows
    shutil.copy(tmp_path / "data/features/fold0/fc_video.h5", tmp_path / "data/features/video.h5")
    write_mfcc(tmp_path / "data" / "features" / "mfcc.h5", index)
    functionals = tmp_path / "data" / "features" / "functionals"
    write_functionals(functionals / "egemaps.h5", index, 7, ["snr15", "snr20"])
    write_functionals(functionals / "compare.h5", index, 9, ["snr15", "snr20"])
    shutil.copy(REPO / "dvc.yaml", tmp_path / "dvc.yaml")  # the stages read their params' keys
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run_stage(stage: str, fold: str = "", *, monkeypatch) -> None:
    """Run ``stages/<stage>.py`` in this process with the paths its ``dvc.yaml`` cmd gives
    (``${item}`` is the fold)."""
    entry = PIPELINE[stage]
    words = entry.get("do", entry)["cmd"].replace("${item}", fold).split()
    assert words[0] == "python" and not any("${" in word for word in words), words
    monkeypatch.setattr(sys, "argv", words[1:])
    runpy.run_path(str(REPO / words[1]), run_name="__main__")


def probabilities(table: pd.DataFrame) -> np.ndarray:
    return table.filter(regex=r"^p\d+$").to_numpy()


def assert_validation_tables_hold_only_the_validation_speakers() -> None:
    """For every fold, every system's validation table scores the original segments of
    the speakers held out of the fold's training speakers, each once: no test-fold clip,
    no clip of a speaker the validation fits learned from."""
    index = synthetic_index()
    speaker_of = dict(zip(index["clip_id"], index["speaker"], strict=True))
    for fold in (0, 1):
        training = np.unique(index.loc[index["fold"] != fold, "speaker"])
        held = set(validation_groups(training, VALIDATION_FRACTION, SEED))
        assert len(held) == 1 and held < set(training)
        clips = index.loc[index["speaker"].isin(held) & (index["clip_id"] != "s1_c3"), "clip_id"]
        expected = {(clip, segment) for clip in clips for segment in (0, 1)}
        folder = Path(f"data/validation/fold{fold}")
        tables = {p.stem: read_predictions(p, 4) for p in folder.glob("*.csv")}
        assert set(tables) == set(SYSTEMS)
        assert tables.pop("elm_svm_cnn_crossfit").empty
        for name, table in tables.items():
            keys = list(zip(table["clip_id"], table["segment"], strict=True))
            assert set(table["clip_id"].map(speaker_of)) == held, (fold, name)
            assert len(keys) == len(set(keys)) and set(keys) == expected, (fold, name)
        summary = json.loads(Path(f"metrics/fusion/fold{fold}.json").read_text())
        assert summary["n_validation_rows"] == len(expected)
        # the validation fit drops the held speakers' rows and their copies: 3 fused rows
        # per segment (original, snr15+rot4, snr20)
        validation_part = summary["parts"]["validation"]
        assert validation_part["n_fit_rows"] == summary["n_train_rows"] - 3 * len(expected)
        assert summary["parts"]["test"]["n_fit_rows"] == summary["n_train_rows"]


def test_stages_end_to_end_on_synthetic_tables(project: Path, monkeypatch, capsys) -> None:
    for fold in ("0", "1"):
        for stage in ("fit_elm", "fit_svm", "fit_baseline", "fuse_mfcc_video"):
            run_stage(stage, fold, monkeypatch=monkeypatch)
    run_stage("evaluate", monkeypatch=monkeypatch)
    out = capsys.readouterr().out
    assert "pairing:" in out and "elm_svm: clip accuracy" in out
    assert_validation_tables_hold_only_the_validation_speakers()

    # fold 0 tests speakers 0, 2, 4: 24 clips x 2 segments; s1_c3 (no video) is in fold 1
    tables = {p.stem: read_predictions(p, 4) for p in Path("data/predictions/fold1").glob("*.csv")}
    assert set(tables) == set(SYSTEMS)
    assert tables.pop("elm_svm_cnn_crossfit").empty  # paper stacking: no inner CNNs
    for name, table in tables.items():
        assert len(table) == 23 * 2, name  # every system on the same 46 fused test segments
        np.testing.assert_allclose(probabilities(table).sum(axis=1), 1.0, atol=1e-5)
    halves = [probabilities(tables[name]) for name in ("audio_cnn", "video_cnn")]
    np.testing.assert_allclose(
        probabilities(tables["late_fusion"]), (halves[0] + halves[1]) / 2, atol=1e-5
    )

    fold1 = json.loads(Path("metrics/fusion/fold1.json").read_text())
    assert fold1["pairing"]["test_rows_left_out"] == 2  # s1_c3's two audio segments
    assert fold1["pairing"]["clips_left_out"] == ["s1_c3"]
    assert fold1["n_test_rows"] == 46 and fold1["stacking"] == "paper"
    assert fold1["inputs"] == {"cnn": 22} and fold1["feature_dim"] == 22
    assert fold1["elm1_skipped"] is None and fold1["use_gender"] is True
    assert 0 <= fold1["elm1_gender_accuracy"] <= 1
    assert 0 <= fold1["elm1_validation_gender_accuracy"] <= 1
    elm = joblib.load("models/fusion/fold1/elm/paper.joblib")
    assert elm.elm1_.classes_.tolist() == ["female", "male"]
    assert not Path("models/fusion/fold1/elm/cnn_crossfit.joblib").exists()
    scores = np.load("data/fusion/fold1/elm_scores.npz")
    assert len(scores["paper__test__fit_crossfit"]) == fold1["n_train_rows"]
    np.testing.assert_allclose(scores["paper__test__fit_crossfit"].sum(axis=1), 1.0)
    assert "cnn_crossfit__test__fit_same" not in scores
    model = joblib.load("models/fusion/fold1/systems/elm_svm_crossfit.joblib")
    assert isinstance(model, ELMFusion) and model.stacking == "crossfit"
    assert sorted(p.name for p in Path("models/fusion/fold1/systems").iterdir()) == [
        "elm_svm.joblib",
        "elm_svm_crossfit.joblib",
    ]

    baseline = json.loads(Path("metrics/baseline/fold1.json").read_text())
    assert set(baseline["systems"]) == {"mfcc_svm", "egemaps_svm", "compare_svm"}
    for name, fitted in baseline["systems"].items():
        accuracy = fitted["validation_clip_accuracy_by_C"]
        assert set(accuracy) == {"0.1", "1.0", "10.0"}, name
        best = max(accuracy.values())
        assert fitted["C"] == next(float(c) for c, a in accuracy.items() if a == best), name
    assert baseline["systems"]["egemaps_svm"]["n_feature_columns"] == 7
    assert sorted(p.name for p in Path("models/baseline/fold1").iterdir()) == [
        "compare_svm.joblib",
        "egemaps_svm.joblib",
        "mfcc_svm.joblib",
    ]

    metrics = json.loads(Path("metrics/metrics.json").read_text())
    assert metrics["test"]["elm_svm"]["acc"] > 0.8  # separable synthetic classes
    assert metrics["val"]["elm_svm"]["acc"] > 0.8  # ... the validation speakers too
    # chance: balanced training classes, so class 0 (the first of the tie) in both folds:
    # 6 of fold 0's 24 test clips, 6 of fold 1's 23 (s1_c3 has no video)
    assert metrics["chance"]["acc"] == pytest.approx((6 / 24 + 6 / 23) / 2, abs=1e-4)
    assert json.loads(Path("metrics/summary.json").read_text())["n_folds"] == 2
    confusion = json.loads(Path("metrics/confusion.json").read_text())
    assert len(confusion) == 24 + 23 and set(confusion[0]) == {"actual", "predicted"}
    report = Path("metrics/report.md").read_text()
    assert "| `elm_svm` | clip |" in report and "mfcc_svm_video_late" in report
    assert "ELM-1 gender accuracy" in report


def test_audio_only_run_writes_empty_tables_for_video_systems(project, monkeypatch) -> None:
    params = yaml.safe_load(Path("params.yaml").read_text())
    params["base"]["modalities"] = ["audio"]
    Path("params.yaml").write_text(yaml.safe_dump(params))
    for stage in ("fit_elm", "fit_svm", "fit_baseline", "fuse_mfcc_video"):
        run_stage(stage, "0", monkeypatch=monkeypatch)
    for folder, n_rows in (("predictions", 48), ("validation", 16)):
        tables = Path(f"data/{folder}/fold0").glob("*.csv")
        sizes = {p.stem: len(read_predictions(p)) for p in tables}
        assert sizes == {
            "elm_svm": n_rows, "elm_svm_crossfit": n_rows, "audio_cnn": n_rows,
            "mfcc_svm": n_rows, "egemaps_svm": n_rows, "compare_svm": n_rows,
            "elm_svm_cnn_crossfit": 0, "video_cnn": 0, "late_fusion": 0,
            "mfcc_svm_video_late": 0,
        }, folder  # fmt: skip
    assert json.loads(Path("metrics/fusion/fold0.json").read_text())["feature_dim"] == 12


def test_unknown_gender_stops_fit_elm_with_one_clear_line(project, monkeypatch, capsys) -> None:
    index = synthetic_index()
    index.loc[index["speaker"] == "01", "gender"] = "unknown"
    write_fc(Path("data/features/fold0/fc_audio.h5"), "audio", index, 12, ["snr15"], 0)
    write_fc(Path("data/features/fold0/fc_video.h5"), "video", index, 10, ["rot4"], 0)
    with pytest.raises(SystemExit) as stopped:
        run_stage("fit_elm", "0", monkeypatch=monkeypatch)
    assert stopped.value.code == 1
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "dataset manifest have unknown gender" in error
    assert "fusion.use_gender: false" in error
    # with use_gender false the same tables run, and no gender accuracy is claimed
    params = yaml.safe_load(Path("params.yaml").read_text())
    params["fusion"]["use_gender"] = False
    Path("params.yaml").write_text(yaml.safe_dump(params))
    run_stage("fit_elm", "0", monkeypatch=monkeypatch)
    summary = json.loads(Path("metrics/fusion/fold0.json").read_text())
    assert summary["elm1_gender_accuracy"] is None and summary["use_gender"] is False
    assert summary["elm1_validation_gender_accuracy"] is None


# --------------------------------------------------------------------------- fit_elm itself


def elm_paths(folder: Path, features: Path, functionals: Path | None = None) -> ElmPaths:
    return ElmPaths(
        features=features,
        functionals=functionals or folder / "functionals",
        models=folder / "models",
        scores=folder / "elm_scores.npz",
        predictions=folder / "predictions",
        validation=folder / "validation",
        metrics=folder / "fold0.json",
    )


def small_params(rotation_deg: tuple[int, ...] = (4,), **fusion) -> Params:
    """Params of the fit_elm tests: ``fusion`` keys on top of small ELMs."""
    return validate_params(
        {
            "base": {"seed": SEED, "modalities": ["audio", "video"]},
            "data": {"classes": CLASSES},
            "augment": {"snr_db": [15], "rotation_deg": list(rotation_deg)},
            "fusion": {
                "elm1_hidden": 20,
                "elm2_hidden_per_class": 10,
                "cross_fit_folds": 2,
                # the paper's wiring unless a test says otherwise (the defaults add functionals)
                "inputs": ["cnn"],
                "gender_inputs": ["cnn"],
                "elm2_input": "hidden",
                "elm_C": 1.0,
                **fusion,
            },
        }
    )


def write_features(folder: Path, index: pd.DataFrame) -> Path:
    """fc_audio.h5 (12 columns, one noisy copy) and fc_video.h5 (10, one rotated copy)."""
    write_fc(folder / "fc_audio.h5", "audio", index, 12, ["snr15"], 0)
    write_fc(folder / "fc_video.h5", "video", index, 10, ["rot4"], 10)
    return folder


@pytest.mark.parametrize("one_gender", [True, False])
def test_fit_elm_skips_elm1_when_the_training_rows_have_one_gender(tmp_path, one_gender) -> None:
    index = synthetic_index()
    if one_gender:  # fold 0 trains on the odd speakers (fold 1): all men; its test: women
        index["gender"] = np.where(index["fold"] == 1, "male", "female")
    paths = elm_paths(tmp_path / "out", write_features(tmp_path / "features", index))
    summary = run_fit_elm(small_params(), 0, paths)
    elm = joblib.load(paths.models / "paper.joblib")
    assert summary == json.loads(paths.metrics.read_text())
    if one_gender:
        assert "one gender (male)" in summary["elm1_skipped"]
        assert summary["use_gender"] is False and summary["settings"]["use_gender"] is False
        assert elm.elm1_ is None and not elm.use_gender
        assert summary["elm1_gender_accuracy"] is None
        assert summary["elm1_validation_gender_accuracy"] is None
    else:
        assert summary["elm1_skipped"] is None and summary["use_gender"] is True
        assert elm.elm1_ is not None and elm.elm1_.classes_.tolist() == ["female", "male"]
        assert summary["elm1_gender_accuracy"] is not None
    assert summary["elm2_test_accuracy"] > 0.8  # ELM-2 still learns the emotions


def test_fit_elm_fits_fusion_elm_members_pairs(tmp_path) -> None:
    """``fusion.elm_members: 3`` reaches the stage: the saved ELM pair is a 3-member
    ensemble whose first member is the single pair ``elm_members: 1`` fits."""
    index = synthetic_index()
    features = write_features(tmp_path / "features", index)
    models = {}
    for members in (1, 3):
        paths = elm_paths(tmp_path / f"members{members}", features)
        summary = run_fit_elm(small_params(elm_members=members), 0, paths)
        assert summary["settings"]["n_members"] == members
        models[members] = joblib.load(paths.models / "paper.joblib")
    assert len(models[1].members_) == 1 and len(models[3].members_) == 3
    np.testing.assert_array_equal(models[3].elm2_.output_weights_, models[1].elm2_.output_weights_)


def extreme_row_runs(
    tmp_path: Path, pick
) -> tuple[dict, dict, dict[str, TwoStageELM], list[tuple[str, int]]]:
    """fit_elm of fold 0 twice: on clean tables, and with the audio features of the rows
    ``pick(meta)`` (a list of row numbers of fc_audio.h5) set to 1e6. Returns both runs'
    scores, the ELM pairs fitted for the test, and the (clip, segment) of the rows."""
    index = synthetic_index()
    runs: dict[str, tuple] = {}
    for name in ("clean", "extreme"):
        features = write_features(tmp_path / name / "features", index)
        meta = read_meta(features / "fc_audio.h5")
        rows = pick(meta)
        moved = [(meta["clip_id"][r], meta["segment"][r]) for r in rows]
        if name == "extreme":
            with h5py.File(features / "fc_audio.h5", "r+") as handle:
                for row in rows:
                    handle["x"][row] = 1e6
        paths = elm_paths(tmp_path / name, features)
        run_fit_elm(small_params(), 0, paths)
        runs[name] = (dict(np.load(paths.scores)), joblib.load(paths.models / "paper.joblib"))
    models = {name: run[1] for name, run in runs.items()}
    return runs["clean"][0], runs["extreme"][0], models, moved


def assert_same_fit(a: TwoStageELM, b: TwoStageELM) -> None:
    for attribute in ("mean_", "scale_"):
        np.testing.assert_array_equal(getattr(a.scaler_, attribute), getattr(b.scaler_, attribute))
    for elm in ("elm1_", "elm2_"):
        np.testing.assert_array_equal(
            getattr(a, elm).output_weights_, getattr(b, elm).output_weights_
        )


def at_rows(scores: dict, part: str, keys: list[tuple[str, int]]) -> np.ndarray:
    """Which of the part's scored rows are the (clip, segment) ``keys``."""
    scored = zip(scores[f"{part}__clip_id"], scores[f"{part}__segment"], strict=True)
    return np.array([key in keys for key in scored])


def test_scaler_and_both_elms_are_fitted_on_training_rows_only(tmp_path) -> None:
    """A test row's features set to 1e6 changes nothing that fit_elm fits: the scaler's
    mean and scale, ELM-1's and ELM-2's output weights, the training rows' scores."""

    def a_test_row(meta):  # one original row of fold 0
        return [np.flatnonzero((meta["fold"] == 0) & ~meta["augmented"])[3]]

    clean, extreme, models, moved = extreme_row_runs(tmp_path, a_test_row)
    assert_same_fit(models["clean"], models["extreme"])
    for part in PARTS:
        for key in ("fit_same", "fit_crossfit"):
            np.testing.assert_array_equal(
                clean[f"paper__{part}__{key}"], extreme[f"paper__{part}__{key}"]
            )
    # the extreme row is a test row that reaches the model: its scores, and only its, differ
    at = at_rows(extreme, "test", moved)
    assert at.sum() == 1
    assert not np.array_equal(clean["paper__test__scored"][at], extreme["paper__test__scored"][at])
    np.testing.assert_array_equal(
        clean["paper__test__scored"][~at], extreme["paper__test__scored"][~at]
    )
    np.testing.assert_array_equal(
        clean["paper__validation__scored"], extreme["paper__validation__scored"]
    )


def test_validation_part_is_fitted_without_the_validation_speakers(tmp_path) -> None:
    """A validation speaker's rows (an original and a noisy copy) set to 1e6 change nothing
    the validation part fits, only the scores of the original row; the test part, which
    trains on every training speaker, does learn from them."""
    held = set(validation_groups(np.array(["01", "03", "05"]), VALIDATION_FRACTION, SEED))

    def validation_rows_of(meta):  # segment 0 of one validation clip: original, copy
        mine = np.isin(meta["speaker"], list(held)) & (meta["segment"] == 0)
        clip = meta["clip_id"][np.flatnonzero(mine)[0]]
        return list(np.flatnonzero(mine & (meta["clip_id"] == clip)))

    clean, extreme, models, moved = extreme_row_runs(tmp_path, validation_rows_of)
    assert len(moved) == 2 and len(set(moved)) == 1  # the original and its copy
    for key in ("paper__validation__fit_same", "paper__validation__fit_crossfit"):
        np.testing.assert_array_equal(clean[key], extreme[key])
    at = at_rows(extreme, "validation", moved)
    assert at.sum() == 1  # the original row only: copies are never scored
    scored = "paper__validation__scored"
    assert not np.array_equal(clean[scored][at], extreme[scored][at])
    np.testing.assert_array_equal(clean[scored][~at], extreme[scored][~at])
    # the test part learns from the validation speakers: its fit moves
    assert not np.array_equal(clean["paper__test__fit_same"], extreme["paper__test__fit_same"])
    assert not np.array_equal(models["clean"].scaler_.mean_, models["extreme"].scaler_.mean_)


# --------------------------------------------------------------------------- fusion inputs


def test_fit_elm_reads_functionals_beside_the_cnn_features(tmp_path) -> None:
    """``fusion.inputs: [cnn, egemaps]``: each fused row gets the functionals of its own
    audio segment (the noisy copy's for a noisy row), and the ELM pair reads both."""
    index = synthetic_index()
    features = tmp_path / "features"
    write_fc(features / "fc_audio.h5", "audio", index, 12, ["snr15"], 0)
    write_fc(features / "fc_video.h5", "video", index, 10, ["rot4", "rot8"], 10)
    functionals = tmp_path / "functionals"
    write_functionals(functionals / "egemaps.h5", index, 7, ["snr15"])
    both = ["cnn", "egemaps"]
    params = small_params((4, 8), inputs=both, gender_inputs=both)
    inputs = read_inputs(params, features, functionals)
    meta = inputs.fused.meta
    position = {clip: i for i, clip in enumerate(index["clip_id"])}
    egemaps = inputs.blocks["egemaps"]
    assert egemaps.shape == (len(meta["clip_id"]), 7)
    np.testing.assert_array_equal(egemaps[:, 0], [position[c] for c in meta["clip_id"]])
    np.testing.assert_array_equal(egemaps[:, 1], meta["segment"])
    snr = [15.0 if "snr15" in str(a) else 0.0 for a in meta["augmentation"]]
    np.testing.assert_array_equal(egemaps[:, 2], snr)
    assert set(meta["augmentation"]) == {"", "snr15+rot4", "rot8"}  # rot8: audio's original

    paths = elm_paths(tmp_path / "out", features, functionals)
    summary = run_fit_elm(params, 0, paths)
    assert summary["inputs"] == {"cnn": 22, "egemaps": 7} and summary["feature_dim"] == 29
    elm = joblib.load(paths.models / "paper.joblib")
    assert elm.scaler_.n_features_in_ == 29
    assert elm.elm1_.n_features_in_ == 29  # ELM-1 reads gender_inputs: both blocks
    train = train_rows(meta["fold"], 0)
    np.testing.assert_allclose(
        elm.scaler_.mean_, inputs.matrix(["cnn", "egemaps"])[train].mean(axis=0), rtol=1e-5
    )

    # features_and_gender: ELM-1 reads egemaps (gender_inputs) only, ELM-2 the emotion
    # columns (inputs: cnn) and ELM-1's 2 gender probabilities
    params = small_params((4, 8), gender_inputs=["egemaps"], elm2_input="features_and_gender")
    summary = run_fit_elm(params, 0, paths)
    assert summary["inputs"] == {"cnn": 22, "egemaps": 7}
    elm = joblib.load(paths.models / "paper.joblib")
    x = inputs.matrix(["cnn", "egemaps"])
    assert elm.elm1_.n_features_in_ == 7 and elm.elm2_.n_features_in_ == 22 + 2
    second = elm.elm2_features(x)
    assert second.shape == (len(x), 24)
    np.testing.assert_allclose(second[:, :22], elm.scaler_.transform(x)[:, :22], rtol=1e-6)
    np.testing.assert_allclose(second[:, 22:].sum(axis=1), 1.0)


def test_functionals_missing_rows_stop_fit_elm_with_a_clear_error(tmp_path) -> None:
    index = synthetic_index()
    features = write_features(tmp_path / "features", index)
    functionals = tmp_path / "functionals"
    paths = elm_paths(tmp_path / "out", features, functionals)
    params = small_params(inputs=["cnn", "egemaps"], gender_inputs=["cnn", "egemaps"])
    with pytest.raises(BadInputError, match="run build_functionals") as error:
        run_fit_elm(params, 0, paths)
    assert error.value.path == str(functionals / "egemaps.h5")
    write_functionals(functionals / "egemaps.h5", index, 7, ["snr15"], {("s2_c1", 1, "snr15")})
    with pytest.raises(BadInputError, match="1 fusion rows have no functionals row") as error:
        run_fit_elm(params, 0, paths)
    assert error.value.path == str(functionals / "egemaps.h5")
    assert not paths.scores.exists()
