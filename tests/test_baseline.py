"""The benchmark baseline: MFCC statistics per shared segment on real clips, and its SVM."""

from __future__ import annotations

import h5py
import numpy as np
import pandas as pd
import pytest
from conftest import shared

from avemotion.audio.clips import decode_audio
from avemotion.audio.mfcc import MfccSettings, build_mfcc_features, mfcc_statistics
from avemotion.baseline import BaselinePaths, make_baseline_svm, run_fit_baseline
from avemotion.errors import BadInputError
from avemotion.evaluation import read_predictions
from avemotion.h5store import SegmentWriter, read_attrs, read_meta
from avemotion.index import INDEX_COLUMNS
from avemotion.media import probe
from avemotion.params import validate_params
from avemotion.rejects import read_rejects
from avemotion.segments import segment_starts

TREE = {"base": {"modalities": ["audio", "video"], "n_jobs": 1}, "audio": {"sample_rate": 16000}}
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
        video=folder / "fc_video.h5",
        model=folder / "model.joblib",
        predictions=folder / "predictions",
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
        {"base": {"modalities": ["video"]}, "data": {"classes": ["neutral", "happy"]}}
    )
    build_mfcc_features(index_of([tmp_path / "a.wav"]), params, paths.mfcc, tmp_path / "r.csv")
    summary = run_fit_baseline(params, 0, paths)
    assert "skipped" in summary and not paths.model.exists()
    for system in ("mfcc_svm", "mfcc_svm_video_late"):
        table = read_predictions(paths.predictions / f"{system}.csv", 2)
        assert table.empty


def test_settings_are_checked() -> None:
    """The params schema refuses bad ``baseline:`` keys, in one line that names them."""
    with pytest.raises(BadInputError, match="`baseline`.*n_mfcc=40 must be <= n_filters=26"):
        validate_params({**TREE, "baseline": {"n_mfcc": 40}})
    with pytest.raises(BadInputError, match="unknown key `baseline.numcep`") as refused:
        validate_params({**TREE, "baseline": {"numcep": 13}})
    assert "\n" not in str(refused.value)


def test_baseline_svm_fits_and_pairs_with_video(tmp_path) -> None:
    rng = np.random.default_rng(0)
    clips = [(f"c{i}", i % 2, i % 3) for i in range(18)]  # clip, label, fold
    rows = {
        "clip_id": [c for c, _, _ in clips], "segment": [0] * 18, "start_s": [0.0] * 18,
        "speaker": [f"s{f}" for _, _, f in clips], "gender": ["male"] * 18,
        "emotion": ["x"] * 18, "label": [y for _, y, _ in clips],
        "fold": [f for _, _, f in clips], "augmented": [False] * 18, "augmentation": [""] * 18,
    }  # fmt: skip
    x = np.eye(2, 6)[rows["label"]] * 3 + rng.normal(size=(18, 6))
    with SegmentWriter(tmp_path / "mfcc.h5", (6,)) as writer:
        writer.append(x, rows)
    keep = [i for i in range(18) if rows["clip_id"][i] != "c0"]  # no face found in c0
    video_rows = {k: [v[i] for i in keep] for k, v in rows.items()}
    probs = np.eye(2)[video_rows["label"]] * 0.6 + 0.2
    with SegmentWriter(tmp_path / "fc_video.h5", (3,), extra_shapes={"probs": (2,)}) as writer:
        writer.append(np.zeros((len(keep), 3)), video_rows, extras={"probs": probs})
    paths = paths_in(tmp_path)
    params = validate_params(
        {"base": {"seed": 1, "modalities": ["audio", "video"]}, "data": {"classes": ["a", "b"]}}
    )
    summary = run_fit_baseline(params, 0, paths)
    assert summary["n_train_rows"] == 12 and summary["test_rows_without_video"] == 1
    svm = read_predictions(paths.predictions / "mfcc_svm.csv", 2)
    late = read_predictions(paths.predictions / "mfcc_svm_video_late.csv", 2)
    assert svm["clip_id"].tolist() == late["clip_id"].tolist() == ["c3", "c6", "c9", "c12", "c15"]
    video = dict(zip(video_rows["clip_id"], probs[:, 1], strict=True))
    expected = (svm["p1"] + svm["clip_id"].map(video)) / 2
    np.testing.assert_allclose(late["p1"], expected, atol=1e-5)
    np.testing.assert_allclose(svm[["p0", "p1"]].sum(axis=1), 1.0, atol=1e-5)
    assert paths.model.exists() and paths.metrics.exists()


def test_calibration_folds_shrink_to_the_rarest_class() -> None:
    settings = validate_params({"base": {}, "baseline": {}}).baseline
    x = np.random.default_rng(0).normal(size=(8, 4))
    labels = np.array([0, 0, 0, 1, 1, 1, 2, 2])  # 2 of class 2: 2-fold calibration
    model = make_baseline_svm(settings, 0, labels).fit(x, labels)
    np.testing.assert_allclose(model.predict_proba(x).sum(axis=1), 1.0)
    with pytest.raises(BadInputError, match="at least 2 training segments of every class"):
        make_baseline_svm(settings, 0, np.array([0, 0, 1]))
