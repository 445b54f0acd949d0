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
from avemotion.evaluation import read_predictions
from avemotion.fusion.estimators import ELMFusion, TwoStageELM, cross_fit_probs
from avemotion.fusion.pairing import fuse_tables, pair_rows
from avemotion.fusion.stages import ElmPaths, run_fit_elm
from avemotion.h5store import META_COLUMNS, SegmentWriter, read_meta
from avemotion.index import INDEX_COLUMNS
from avemotion.params import Params, validate_params
from avemotion.params.schema import AugmentParams
from avemotion.scores import BranchTable

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


def test_unknown_gender_is_refused() -> None:
    X, y, gender, _ = gendered_blobs()
    gender = gender.astype(object)
    gender[:3] = "unknown"
    with pytest.raises(ValueError, match="unknown gender"):
        TwoStageELM().fit(X, y, gender)
    with pytest.raises(ValueError, match="needs the gender"):
        TwoStageELM().fit(X, y)


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


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    """A project folder with params.yaml, the index, fc tables for 2 folds and mfcc.h5."""
    params = {
        "base": {"seed": 3, "modalities": ["audio", "video"], "n_jobs": 1},
        "data": {"dataset": "manifest", "classes": CLASSES},
        "split": {"protocol": "speaker"},
        "augment": {"snr_db": [15, 20], "rotation_deg": [4]},
        "fusion": {"elm1_hidden": 20, "elm2_hidden_per_class": 10, "cross_fit_folds": 2},
        "baseline": {"svm_C": 1.0},
    }
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    index = synthetic_index()
    (tmp_path / "data").mkdir()
    index.to_csv(tmp_path / "data" / "index.csv", index=False)
    for fold in (0, 1):
        folder = tmp_path / "data" / "features" / f"fold{fold}"
        write_fc(folder / "fc_audio.h5", "audio", index, 12, ["snr15", "snr20"], fold)
        write_fc(folder / "fc_video.h5", "video", index, 10, ["rot4"], 10 + fold)
    write_mfcc(tmp_path / "data" / "features" / "mfcc.h5", index)
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


def test_stages_end_to_end_on_synthetic_tables(project: Path, monkeypatch, capsys) -> None:
    for fold in ("0", "1"):
        for stage in ("fit_elm", "fit_svm", "fit_baseline"):
            run_stage(stage, fold, monkeypatch=monkeypatch)
    run_stage("evaluate", monkeypatch=monkeypatch)
    out = capsys.readouterr().out
    assert "pairing:" in out and "elm_svm: clip accuracy" in out

    # fold 0 tests speakers 0, 2, 4: 24 clips x 2 segments; s1_c3 (no video) is in fold 1
    tables = {p.stem: read_predictions(p, 4) for p in Path("data/predictions/fold1").glob("*.csv")}
    assert set(tables) == {
        "elm_svm", "elm_svm_crossfit", "audio_cnn", "video_cnn", "late_fusion",
        "mfcc_svm", "mfcc_svm_video_late",
    }  # fmt: skip
    for name, table in tables.items():
        assert len(table) == 23 * 2, name  # every system on the same 46 fused test segments
        np.testing.assert_allclose(table.filter(regex=r"^p\d+$").sum(axis=1), 1.0, atol=1e-5)
    late = tables["late_fusion"].filter(regex=r"^p\d+$").to_numpy()
    halves = [
        tables[name].filter(regex=r"^p\d+$").to_numpy() for name in ("audio_cnn", "video_cnn")
    ]
    np.testing.assert_allclose(late, (halves[0] + halves[1]) / 2, atol=1e-5)

    fold1 = json.loads(Path("metrics/fusion/fold1.json").read_text())
    assert fold1["pairing"]["test_rows_left_out"] == 2  # s1_c3's two audio segments
    assert fold1["pairing"]["clips_left_out"] == ["s1_c3"]
    assert fold1["n_test_rows"] == 46 and fold1["cross_fit"]["groups"] == "speaker"
    assert fold1["elm1_skipped"] is None and fold1["elm1_gender_classes"] == ["female", "male"]
    assert 0 <= fold1["elm1_gender_accuracy"] <= 1
    scores = np.load("data/fusion/fold1/elm_scores.npz")
    np.testing.assert_allclose(scores["train_crossfit"].sum(axis=1), 1.0)
    model = joblib.load("models/fusion/fold1/elm_svm_crossfit.joblib")
    assert isinstance(model, ELMFusion) and model.stacking == "crossfit"

    metrics = json.loads(Path("metrics/metrics.json").read_text())
    assert metrics["n_folds"] == 2
    assert metrics["clip"]["elm_svm"]["accuracy_mean"] > 0.8  # separable synthetic classes
    # chance: balanced training classes, so class 0 (the first of the tie) in both folds:
    # 6 of fold 0's 24 test clips, 6 of fold 1's 23 (s1_c3 has no video)
    assert metrics["chance"]["clip_accuracy_mean"] == pytest.approx((6 / 24 + 6 / 23) / 2, abs=1e-4)
    confusion = json.loads(Path("metrics/confusion.json").read_text())
    assert len(confusion) == 24 + 23 and set(confusion[0]) == {"actual", "predicted"}
    report = Path("metrics/report.md").read_text()
    assert "| `elm_svm` | clip |" in report and "mfcc_svm_video_late" in report
    assert "ELM-1 gender accuracy" in report


def test_audio_only_run_writes_empty_tables_for_video_systems(project, monkeypatch) -> None:
    params = yaml.safe_load(Path("params.yaml").read_text())
    params["base"]["modalities"] = ["audio"]
    Path("params.yaml").write_text(yaml.safe_dump(params))
    for stage in ("fit_elm", "fit_svm", "fit_baseline"):
        run_stage(stage, "0", monkeypatch=monkeypatch)
    folder = Path("data/predictions/fold0")
    sizes = {p.stem: len(read_predictions(p)) for p in folder.glob("*.csv")}
    assert sizes == {
        "elm_svm": 48, "elm_svm_crossfit": 48, "audio_cnn": 48, "mfcc_svm": 48,
        "video_cnn": 0, "late_fusion": 0, "mfcc_svm_video_late": 0,
    }  # fmt: skip
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


# --------------------------------------------------------------------------- fit_elm itself


def elm_paths(folder: Path, features: Path) -> ElmPaths:
    return ElmPaths(
        features=features,
        model=folder / "elm.joblib",
        scores=folder / "elm_scores.npz",
        predictions=folder / "predictions",
        metrics=folder / "fold0.json",
    )


def small_params() -> Params:
    return validate_params(
        {
            "base": {"seed": 3, "modalities": ["audio", "video"]},
            "data": {"classes": CLASSES},
            "augment": {"snr_db": [15], "rotation_deg": [4]},
            "fusion": {"elm1_hidden": 20, "elm2_hidden_per_class": 10, "cross_fit_folds": 2},
        }
    )


@pytest.mark.parametrize("one_gender", [True, False])
def test_fit_elm_skips_elm1_when_the_training_rows_have_one_gender(tmp_path, one_gender) -> None:
    index = synthetic_index()
    if one_gender:  # fold 0 trains on the odd speakers (fold 1): all men; its test: women
        index["gender"] = np.where(index["fold"] == 1, "male", "female")
    features = tmp_path / "features"
    write_fc(features / "fc_audio.h5", "audio", index, 12, ["snr15"], 0)
    write_fc(features / "fc_video.h5", "video", index, 10, ["rot4"], 10)
    paths = elm_paths(tmp_path / "out", features)
    summary = run_fit_elm(small_params(), 0, paths)
    elm = joblib.load(paths.model)
    assert summary == json.loads(paths.metrics.read_text())
    if one_gender:
        assert "one gender (male)" in summary["elm1_skipped"]
        assert summary["use_gender"] is False and summary["settings"]["use_gender"] is False
        assert elm.elm1_ is None and not elm.use_gender
        assert summary["elm1_gender_accuracy"] is None and summary["elm1_gender_classes"] == []
    else:
        assert summary["elm1_skipped"] is None and summary["use_gender"] is True
        assert elm.elm1_ is not None and elm.elm1_.classes_.tolist() == ["female", "male"]
        assert summary["elm1_gender_accuracy"] is not None
    assert summary["elm2_test_accuracy"] > 0.8  # ELM-2 still learns the emotions


def test_scaler_and_both_elms_are_fitted_on_training_rows_only(tmp_path) -> None:
    """A test row's features set to 1e6 changes nothing that fit_elm fits: the scaler's
    mean and scale, ELM-1's and ELM-2's output weights, the training rows' scores."""
    index = synthetic_index()
    runs = {}
    for name in ("clean", "extreme"):
        features = tmp_path / name / "features"
        write_fc(features / "fc_audio.h5", "audio", index, 12, ["snr15"], 0)
        write_fc(features / "fc_video.h5", "video", index, 10, ["rot4"], 10)
        if name == "extreme":  # one original row of fold 0, a test row
            meta = read_meta(features / "fc_audio.h5")
            row = np.flatnonzero((meta["fold"] == 0) & ~meta["augmented"])[3]
            extreme = (meta["clip_id"][row], meta["segment"][row])
            with h5py.File(features / "fc_audio.h5", "r+") as handle:
                handle["x"][row] = 1e6
        paths = elm_paths(tmp_path / name, features)
        run_fit_elm(small_params(), 0, paths)
        runs[name] = (joblib.load(paths.model), dict(np.load(paths.scores)))
    (clean, clean_scores), (moved, extreme_scores) = runs["clean"], runs["extreme"]
    for attribute in ("mean_", "scale_"):
        np.testing.assert_array_equal(
            getattr(clean.scaler_, attribute), getattr(moved.scaler_, attribute)
        )
    for elm in ("elm1_", "elm2_"):
        np.testing.assert_array_equal(
            getattr(clean, elm).output_weights_, getattr(moved, elm).output_weights_
        )
    for key in ("train_same", "train_crossfit"):
        np.testing.assert_array_equal(clean_scores[key], extreme_scores[key])
    # the extreme row is a test row that reaches the model: its scores, and only its, differ
    at = (extreme_scores["test_clip_id"] == extreme[0]) & (
        extreme_scores["test_segment"] == extreme[1]
    )
    assert at.sum() == 1
    assert not np.array_equal(clean_scores["test"][at], extreme_scores["test"][at])
    np.testing.assert_array_equal(clean_scores["test"][~at], extreme_scores["test"][~at])
