"""The benchmark baseline: MFCC statistics per shared segment on real clips, and its SVM."""

from __future__ import annotations

import h5py
import joblib
import numpy as np
import pandas as pd
import pytest
from conftest import shared

from avemotion.audio.clips import decode_audio
from avemotion.audio.mfcc import MfccSettings, build_mfcc_features, mfcc_statistics
from avemotion.baseline import (
    FEATURE_SYSTEMS,
    LATE_SYSTEM,
    BaselinePaths,
    make_baseline_svm,
    run_fit_baseline,
    run_mfcc_video_late,
)
from avemotion.errors import BadInputError
from avemotion.evaluation import read_predictions, write_predictions
from avemotion.h5store import SegmentWriter, read_attrs, read_meta
from avemotion.index import INDEX_COLUMNS
from avemotion.media import probe
from avemotion.params import Params, validate_params
from avemotion.rejects import read_rejects
from avemotion.segments import segment_starts
from avemotion.splits import validation_groups

#: The fusion's paper wiring (CNN features only), so that these params need no functionals.
PAPER_FUSION = {"inputs": ["cnn"], "gender_inputs": ["cnn"], "elm2_input": "hidden"}
TREE = {
    "base": {"modalities": ["audio", "video"], "n_jobs": 1},
    "audio": {"sample_rate": 16000},
    "fusion": PAPER_FUSION,
}
PARAMS = validate_params(TREE)


def index_of(paths: list, **overrides) -> pd.DataFrame:
    rows = []
    for path in paths:
        info = probe(path) if path.exists() else None
        rows.append(
            {
                "clip_id": path.stem, "path": str(path), "dataset": "test", "speaker": "01",
                "gender": "female", "emotion": "neutral", "label": 0, "sentence": "",
                "duration_s": info.duration_s if info else 3.0,
                "audio_duration_s": info.audio_duration_s if info else 3.0,
                "video_duration_s": 0.0, "has_audio": True, "has_video": False, "fold": 0,
                **overrides.get(path.stem, {}),
            }
        )  # fmt: skip
    return pd.DataFrame(rows, columns=list(INDEX_COLUMNS))


def paths_in(folder) -> BaselinePaths:
    """The fit_baseline files of one fold, all under ``folder``."""
    return BaselinePaths(
        mfcc=folder / "mfcc.h5",
        functionals=folder / "functionals",
        video=folder / "video.h5",
        models=folder / "models",
        predictions=folder / "predictions",
        validation=folder / "validation",
        metrics=folder / "baseline.json",
    )


def test_mfcc_rows_on_real_clips(tmp_path) -> None:
    ravdess = sorted(shared("ravdess-speech/Actor_01").glob("*.flac"))[:2]
    crema = shared("crema-d-mini/1002_DFA_ANG_XX.mp3")  # 2.6 s: one segment, the rest dropped
    missing = tmp_path / "gone.wav"
    index = index_of([*ravdess, crema, missing])
    out, rejects = tmp_path / "mfcc.h5", tmp_path / "rejects.csv"
    summary = build_mfcc_features(index, PARAMS, out, rejects)
    assert summary["clips_written"] == 3 and summary["rejected"] == 1
    assert [r.clip_id for r in read_rejects(rejects)] == ["gone"]

    meta = read_meta(out)
    expected = [
        (row.clip_id, len(segment_starts(row.audio_duration_s))) for row in index[:3].itertuples()
    ]
    counts = pd.Series(meta["clip_id"]).value_counts(sort=False).to_dict()
    assert counts == dict(expected) and expected[2][1] == 1
    with h5py.File(out) as handle:
        x = handle["x"][:]
    assert x.shape == (len(meta["clip_id"]), 52) and np.all(np.isfinite(x))
    assert np.all(x[:, 13:26] >= 0) and np.all(x[:, 39:52] >= 0)  # the std blocks
    assert not meta["augmented"].any() and set(meta["augmentation"]) == {""}
    assert read_attrs(out)["feature_names"][:2] == ["mfcc_mean_0", "mfcc_mean_1"]

    # a segment's statistics use its own real samples only (no padding zeros)
    settings = MfccSettings.from_params(PARAMS)
    samples = decode_audio(ravdess[0], 16000).samples
    last = segment_starts(index.loc[0, "audio_duration_s"])[-1]
    rows = np.flatnonzero(meta["clip_id"] == ravdess[0].stem)
    tail = samples[round(last * 16000) :]
    assert len(tail) < 2 * 16000  # a partial last segment
    np.testing.assert_allclose(x[rows[-1]], mfcc_statistics(tail, settings), rtol=1e-5)


def test_mfcc_statistics_of_a_steady_tone() -> None:
    settings = MfccSettings()
    t = np.arange(32000) / 16000
    features = mfcc_statistics(0.3 * np.sin(2 * np.pi * 440 * t), settings)
    assert features.shape == (52,) and features.dtype == np.float32
    assert np.all(np.abs(features[26:39]) < 0.1)  # a steady tone: deltas average ~0
    assert np.max(np.abs(features[1:13])) > 1.0  # ... while its cepstrum is not flat


def test_video_only_run_writes_header_only_baseline_tables(tmp_path) -> None:
    paths = paths_in(tmp_path)
    params = validate_params(
        {
            "base": {"modalities": ["video"]},
            "data": {"classes": ["neutral", "happy"]},
            "fusion": PAPER_FUSION,
        }
    )
    build_mfcc_features(index_of([tmp_path / "a.wav"]), params, paths.mfcc, tmp_path / "r.csv")
    write_video(paths.video, segment_rows(CLIPS))
    paths.models.mkdir()
    (paths.models / "mfcc_svm.joblib").write_text("left from an audio run")
    summary = run_fit_baseline(params, 0, paths)
    assert summary["systems"] == {} and list(paths.models.iterdir()) == []
    written = run_mfcc_video_late(params, *late_paths(paths, paths.video))
    assert written == {"test": 0, "validation": 0}
    for folder in (paths.predictions, paths.validation):
        for system in (*FEATURE_SYSTEMS.values(), LATE_SYSTEM):
            assert read_predictions(folder / f"{system}.csv", 2).empty
    assert summary["written"] == {
        part: dict.fromkeys(FEATURE_SYSTEMS.values(), 0) for part in ("test", "validation")
    }


def test_audio_only_late_tables_take_the_class_count_of_the_mfcc_svm(tmp_path) -> None:
    """With data.classes null only the MFCC-SVM's tables know the run's classes (8 on
    RAVDESS): the header-only late-fusion tables of an audio-only run must have as many
    columns, or evaluate refuses them."""
    paths = paths_in(tmp_path)
    params = validate_params({"base": {"modalities": ["audio"]}, "data": {"classes": None}})
    for folder in (paths.predictions, paths.validation):
        folder.mkdir(parents=True, exist_ok=True)
        write_predictions(folder / "mfcc_svm.csv", ["c0"], [0], [5], np.full((1, 8), 0.125))
    written = run_mfcc_video_late(params, *late_paths(paths, paths.video))
    assert written == {"test": 0, "validation": 0}
    for folder in (paths.predictions, paths.validation):
        assert read_predictions(folder / f"{LATE_SYSTEM}.csv", 8).empty


def late_paths(paths: BaselinePaths, video) -> tuple[dict, object, dict]:
    """The fuse_mfcc_video stage's arguments for the fold of ``paths``."""
    parts = {"test": paths.predictions, "validation": paths.validation}
    return (
        {part: folder / "mfcc_svm.csv" for part, folder in parts.items()},
        video,
        {part: folder / f"{LATE_SYSTEM}.csv" for part, folder in parts.items()},
    )


def test_settings_are_checked() -> None:
    """The params schema refuses bad ``baseline:`` keys, in one line that names them."""
    with pytest.raises(BadInputError, match="`baseline`.*n_mfcc=40 must be <= n_filters=26"):
        validate_params({**TREE, "baseline": {"n_mfcc": 40}})
    with pytest.raises(BadInputError, match="unknown key `baseline.numcep`") as refused:
        validate_params({**TREE, "baseline": {"numcep": 13}})
    assert "\n" not in str(refused.value)


CLIPS = [(f"c{i}", i // 4, i % 2) for i in range(24)]  # clip, speaker (4 clips each), label


def segment_rows(clips, augmentation: str = "") -> dict[str, list]:
    """Meta columns of one segment per clip; speaker s is in fold s % 2."""
    return {
        "clip_id": [c for c, _, _ in clips], "segment": [0] * len(clips),
        "start_s": [0.0] * len(clips), "speaker": [f"s{s}" for _, s, _ in clips],
        "gender": ["male"] * len(clips), "emotion": ["x"] * len(clips),
        "label": [y for _, _, y in clips], "fold": [s % 2 for _, s, _ in clips],
        "augmented": [augmentation != ""] * len(clips),
        "augmentation": [augmentation] * len(clips),
    }  # fmt: skip


def write_video(path, rows: dict[str, list]) -> np.ndarray:
    """A video FC table of these rows whose softmax leans to each row's class; returns it."""
    probs = np.eye(2)[rows["label"]] * 0.6 + 0.2
    with SegmentWriter(path, (3,), extra_shapes={"probs": (2,)}) as writer:
        writer.append(np.zeros((len(probs), 3)), rows, extras={"probs": probs})
    return probs


def baseline_params(**tree) -> Params:
    return validate_params(
        {
            "base": {"seed": 1, "modalities": ["audio", "video"]},
            "data": {"classes": ["a", "b"]},
            "baseline": {"svm_C_grid": [0.01, 1.0, 100.0]},
            "functionals": {"sets": []},
            "fusion": PAPER_FUSION,
            **tree,
        }
    )


def test_baseline_svm_fits_and_pairs_with_video(tmp_path) -> None:
    """Fold 0 tests speakers 0, 2, 4 and trains on 1, 3, 5, one of which is held out to
    choose C: its clips are the validation table's, scored by an SVM fitted without them;
    the test fold is scored by an SVM refitted on all three training speakers."""
    rng = np.random.default_rng(0)
    rows = segment_rows(CLIPS)
    x = (np.eye(2, 6)[rows["label"]] * 1.5 + rng.normal(size=(24, 6))).astype(np.float32)
    with SegmentWriter(tmp_path / "mfcc.h5", (6,)) as writer:
        writer.append(x, rows)
    keep = [i for i in range(24) if rows["clip_id"][i] != "c0"]  # no face found in c0
    video_rows = {k: [v[i] for i in keep] for k, v in rows.items()}
    paths = paths_in(tmp_path)
    probs = write_video(paths.video, video_rows)
    params = baseline_params()
    summary = run_fit_baseline(params, 0, paths)
    fitted = summary["systems"]["mfcc_svm"]
    assert fitted["test_rows_without_video"] == 1 and fitted["validation_rows_without_video"] == 0
    assert set(summary["systems"]) == {"mfcc_svm"}
    # the late fusion: stage fuse_mfcc_video, on the video CNN's table
    late_written = run_mfcc_video_late(params, *late_paths(paths, paths.video))

    svm = read_predictions(paths.predictions / "mfcc_svm.csv", 2)
    late = read_predictions(paths.predictions / "mfcc_svm_video_late.csv", 2)
    test_clips = [c for c, s, _ in CLIPS if s % 2 == 0 and c != "c0"]
    assert svm["clip_id"].tolist() == late["clip_id"].tolist() == test_clips
    assert late_written["test"] == len(late) == 11
    video = dict(zip(video_rows["clip_id"], probs[:, 1], strict=True))
    expected = (svm["p1"] + svm["clip_id"].map(video)) / 2
    np.testing.assert_allclose(late["p1"], expected, atol=1e-5)
    np.testing.assert_allclose(svm[["p0", "p1"]].sum(axis=1), 1.0, atol=1e-5)

    speaker = np.array(rows["speaker"])
    held = validation_groups(np.array(["s1", "s3", "s5"]), 0.2, 1)
    assert len(held) == 1
    validation = read_predictions(paths.validation / "mfcc_svm.csv", 2)
    late_validation = read_predictions(paths.validation / "mfcc_svm_video_late.csv", 2)
    held_clips = [c for c, s, _ in CLIPS if f"s{s}" in held]
    assert validation["clip_id"].tolist() == late_validation["clip_id"].tolist() == held_clips

    # C: the best validation clip accuracy (the first such C of the grid on a tie)
    accuracy = fitted["validation_clip_accuracy_by_C"]
    assert list(accuracy) == ["0.01", "1.0", "100.0"]
    assert fitted["C"] == float(max(accuracy, key=lambda c: accuracy[c]))
    # the validation scores are those of the chosen C fitted on the 2 other speakers only
    fit = np.flatnonzero((np.array(rows["fold"]) == 1) & ~np.isin(speaker, held))
    y = np.array(rows["label"])
    alone = make_baseline_svm(params.baseline, fitted["C"], 1, y[fit]).fit(x[fit], y[fit])
    scored = np.flatnonzero(np.isin(speaker, held))
    np.testing.assert_allclose(
        validation[["p0", "p1"]].to_numpy(), alone.predict_proba(x[scored]), atol=1e-5
    )
    # ... and the test model is refitted on all 12 training rows, the held speaker's too
    model = joblib.load(paths.models / "mfcc_svm.joblib")
    train = np.flatnonzero(np.array(rows["fold"]) == 1)
    assert model[0].n_samples_seen_ == 12
    np.testing.assert_allclose(model[0].mean_, x[train].mean(axis=0), rtol=1e-5)
    assert model[-1].estimator.C == fitted["C"]
    assert sorted(p.name for p in paths.models.iterdir()) == ["mfcc_svm.joblib"]
    assert paths.metrics.exists()


def test_functionals_svm_learns_from_original_training_rows_only(tmp_path) -> None:
    """An openSMILE table has the noisy copies of audio.h5 too; the SVM baselines, like
    the benchmark, fit and score original segments only."""
    rng = np.random.default_rng(1)
    originals = segment_rows(CLIPS)
    x = (np.eye(2, 5)[originals["label"]] * 1.5 + rng.normal(size=(24, 5))).astype(np.float32)
    noisy = 1e3 + rng.normal(size=(24, 5))  # copies far from every original
    paths = paths_in(tmp_path)
    with SegmentWriter(paths.functionals / "egemaps.h5", (5,)) as writer:
        writer.append(x, originals)
        writer.append(noisy, segment_rows(CLIPS, "snr15"))
    params = baseline_params(
        base={"seed": 1, "modalities": ["audio"]}, functionals={"sets": ["egemaps"]}
    )
    with SegmentWriter(paths.mfcc, (5,)) as writer:
        writer.append(x, originals)
    summary = run_fit_baseline(params, 0, paths)
    assert set(summary["systems"]) == {"mfcc_svm", "egemaps_svm"}
    assert summary["systems"]["egemaps_svm"]["n_feature_columns"] == 5
    model = joblib.load(paths.models / "egemaps_svm.joblib")
    train = np.flatnonzero(np.array(originals["fold"]) == 1)
    assert model[0].n_samples_seen_ == len(train) == 12
    np.testing.assert_allclose(model[0].mean_, x[train].mean(axis=0), rtol=1e-5)
    for folder, n_rows in ((paths.predictions, 12), (paths.validation, 4)):
        table = read_predictions(folder / "egemaps_svm.csv", 2)
        assert len(table) == table["clip_id"].nunique() == n_rows
        # the same rows and, the features being the MFCC table's, the same scores
        mfcc = read_predictions(folder / "mfcc_svm.csv", 2)
        pd.testing.assert_frame_equal(table, mfcc)
        assert read_predictions(folder / "compare_svm.csv", 2).empty  # not in functionals.sets
    assert sorted(p.name for p in paths.models.iterdir()) == [
        "egemaps_svm.joblib",
        "mfcc_svm.joblib",
    ]


def test_a_missing_functionals_table_is_named(tmp_path) -> None:
    paths = paths_in(tmp_path)
    with SegmentWriter(paths.mfcc, (5,)) as writer:
        writer.append(np.zeros((24, 5)), segment_rows(CLIPS))
    params = baseline_params(base={"modalities": ["audio"]}, functionals={"sets": ["compare"]})
    with pytest.raises(BadInputError, match="compare table not found") as error:
        run_fit_baseline(params, 0, paths)
    assert error.value.path == str(paths.functionals / "compare.h5")


def test_calibration_folds_shrink_to_the_rarest_class() -> None:
    settings = validate_params({"base": {}, "baseline": {}, "fusion": PAPER_FUSION}).baseline
    x = np.random.default_rng(0).normal(size=(8, 4))
    labels = np.array([0, 0, 0, 1, 1, 1, 2, 2])  # 2 of class 2: 2-fold calibration
    model = make_baseline_svm(settings, 10.0, 0, labels).fit(x, labels)
    assert model[-1].cv == 2 and model[-1].estimator.C == 10.0
    np.testing.assert_allclose(model.predict_proba(x).sum(axis=1), 1.0)
    assert make_baseline_svm(settings, 1.0, 0, np.repeat([0, 1], 9))[-1].cv == 5
    with pytest.raises(BadInputError, match="at least 2 training segments of every class"):
        make_baseline_svm(settings, 1.0, 0, np.array([0, 0, 1]))
