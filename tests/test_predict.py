"""`avemotion predict` and its bundle: safe loading, every kind of bad input, the outputs.

The bundle here holds untrained (seeded) tiny networks and a fusion fitted on random
rows: what is tested is the plumbing, not the labels. That the predictions equal the
pipeline's own evaluation is shown on a trained run in ``test_pipeline.py``.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import joblib
import matplotlib.image
import numpy as np
import pytest
import scipy.io.wavfile
import torch

from avemotion.errors import BadInputError
from avemotion.fusion.estimators import ELMFusion
from avemotion.models import branch_spec, build_audio_cnn, build_video_cnn
from avemotion.params.schema import Params
from avemotion.predict.bundle import MANIFEST, ModelFiles, export_bundle, load_bundle
from avemotion.predict.engine import Predictor

CLASSES = ["happy", "sad"]
TINY_PARAMS = {
    "models": {
        "cpu": {
            "audio": {"channels": [4, 4, 8, 8], "fc": [16, 16]},
            "video": {"channels": [4, 4, 8, 8, 8, 8, 8, 8], "fc": [16, 16], "input_size": 32},
        }
    },
    "video": {"input_size": 32},
    "data": {"classes": CLASSES},
    "functionals": {"sets": ["egemaps"]},
    "fusion": {"inputs": ["cnn", "egemaps"], "gender_inputs": ["egemaps"]},
}
EGEMAPS_DIM = 88


def _demo_clip(path: Path, seed: int, **options) -> Path:
    from avemotion.demo import ClipSpec, render_clip, speaker_traits

    spec = ClipSpec(speaker_traits("s1", "f", 3), "happy", options.pop("duration_s", 2.6), seed)
    return render_clip(path, dataclasses.replace(spec, **options))


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory) -> Path:
    """A bundle of tiny seeded networks and a fusion fitted on random rows."""
    root = tmp_path_factory.mktemp("bundle")
    params = Params.model_validate(TINY_PARAMS)
    torch.manual_seed(0)
    audio = build_audio_cnn(2, branch_spec(params, "audio"), standardise=True)
    video = build_video_cnn(2, branch_spec(params, "video"), input_size=32, standardise=True)
    for name, network in (("audio", audio), ("video", video)):
        (root / name).mkdir()
        torch.save(network.state_dict(), root / name / "best.pt")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((60, 16 + 16 + EGEMAPS_DIM)).astype(np.float32)
    fusion = ELMFusion(
        elm1_hidden=10,
        elm2_hidden_per_class=10,
        random_state=0,
        elm2_input="features_and_gender",
        emotion_columns=np.arange(x.shape[1]),
        gender_columns=np.arange(32, x.shape[1]),
    ).fit(x, rng.integers(0, 2, 60), rng.choice(["female", "male"], 60))
    (root / "systems").mkdir()
    joblib.dump(fusion, root / "systems" / "elm_svm.joblib")
    files = ModelFiles(
        {"audio": root / "audio/best.pt", "video": root / "video/best.pt"}, root / "systems"
    )
    out = root / "bundle"
    export_bundle(params, CLASSES, files, out)
    return out


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    """Good clips and one of each bad kind, in one folder."""
    folder = tmp_path_factory.mktemp("clips") / "to predict"
    folder.mkdir()
    made = {
        "good": _demo_clip(folder / "ünï códe clip.mp4", 1),
        "long": _demo_clip(folder / "nested" / "long.mp4", 2, duration_s=5.0),
        "no_face": _demo_clip(folder / "no_face.mp4", 3, draw_face=False),
        "video_only": _demo_clip(folder / "silent_film.mp4", 4, with_audio=False),
        "short": _demo_clip(folder / "short.mp4", 5, duration_s=0.5),
    }
    rate = 16000
    t = np.arange(int(2.5 * rate)) / rate
    voice = (0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(np.float32)
    made["audio_only"] = folder / "voice.wav"
    scipy.io.wavfile.write(made["audio_only"], rate, voice)
    made["zero_bytes"] = folder / "empty.mp4"
    made["zero_bytes"].write_bytes(b"")
    made["corrupt"] = folder / "noise.avi"
    made["corrupt"].write_bytes(np.random.default_rng(0).bytes(20000))
    whole = made["good"].read_bytes()
    made["truncated"] = folder / "cut.mp4"
    made["truncated"].write_bytes(whole[: len(whole) // 3])
    made["directory"] = folder / "folder.mp4"
    made["directory"].mkdir()
    made["not_media"] = folder.parent / "notes.txt"
    made["not_media"].write_text("not a clip\n")
    return made


BAD = ("short", "zero_bytes", "corrupt", "truncated", "directory", "not_media", "missing")


def run_predict(*args: str, console: bool = False) -> subprocess.CompletedProcess:
    """`avemotion predict ...` in a fresh process (the console script or `-m`)."""
    if console:
        command = [str(Path(sys.executable).parent / "avemotion"), "predict", *args]
    else:
        command = [sys.executable, "-m", "avemotion", "predict", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def predicted(bundle_dir, clips, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("out")
    folder = clips["good"].parent
    done = run_predict(
        str(folder),
        str(clips["not_media"]),
        str(folder / "missing.mp4"),
        "--model",
        str(bundle_dir),
        "--format",
        "json",
        "--output",
        str(out / "predictions.json"),
        "--plot",
        str(out / "plots"),
        console=True,
    )
    return {"done": done, "json": json.loads((out / "predictions.json").read_text()), "out": out}


def _by_name(predicted: dict) -> dict[str, dict]:
    return {Path(c["file"]).name: c for c in predicted["json"]["clips"]}


def test_a_mixed_folder_predicts_every_good_clip_and_names_every_bad_one(predicted, clips):
    done, by_name = predicted["done"], _by_name(predicted)
    assert done.returncode == 1  # some inputs could not be predicted
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == len(BAD), done.stderr
    names = {"missing": "missing.mp4"} | {k: clips[k].name for k in BAD if k != "missing"}
    for kind in BAD:
        assert sum(names[kind] in line for line in errors) == 1, (kind, errors)
        assert by_name[names[kind]]["status"] == "error" and by_name[names[kind]]["error"]
    assert "zero bytes" in by_name["empty.mp4"]["error"]
    assert "directory" in by_name["folder.mp4"]["error"]
    assert "file not found" in by_name["missing.mp4"]["error"]
    for kind in ("good", "long", "no_face", "video_only", "audio_only"):
        clip = by_name[clips[kind].name]
        assert clip["status"] == "ok", clip
        assert set(clip["probabilities"]) == set(CLASSES)
        assert sum(clip["probabilities"].values()) == pytest.approx(1.0)
        assert clip["label"] == max(clip["probabilities"], key=clip["probabilities"].get)
    assert len(by_name["long.mp4"]["segments"]) == 3  # 5 s: two whole 2 s segments + 1 s
    assert len(predicted["json"]["clips"]) == 5 + len(BAD)


def test_a_missing_stream_or_face_is_predicted_from_the_other_and_says_so(predicted, clips):
    by_name, stderr = _by_name(predicted), predicted["done"].stderr
    assert by_name[clips["good"].name]["modalities"] == ["audio", "video"]
    assert by_name[clips["audio_only"].name]["modalities"] == ["audio"]
    assert by_name[clips["no_face"].name]["modalities"] == ["audio"]
    assert by_name[clips["video_only"].name]["modalities"] == ["video"]
    for kind in ("audio_only", "no_face", "video_only"):
        clip = by_name[clips[kind].name]
        assert clip["warnings"] and "alone" in clip["warnings"][0]
        assert f"warning: {clips[kind]}" in stderr


def test_segments_hold_probabilities_and_spans(predicted, clips):
    clip = _by_name(predicted)[clips["long"].name]
    starts = [s["start"] for s in clip["segments"]]
    assert starts == [0.0, 2.0, 4.0]
    assert clip["segments"][-1]["end"] == pytest.approx(5.0, abs=0.05)
    means = np.mean([[s["probabilities"][c] for c in CLASSES] for s in clip["segments"]], axis=0)
    np.testing.assert_allclose(means, [clip["probabilities"][c] for c in CLASSES], atol=1e-12)


def test_a_timeline_png_per_predicted_clip(predicted):
    pictures = sorted((predicted["out"] / "plots").glob("*.png"))
    assert len(pictures) == 5
    assert matplotlib.image.imread(pictures[0]).shape[:2] == (500, 1200)


def test_csv_has_a_row_per_segment_and_per_clip(bundle_dir, clips, tmp_path):
    out = tmp_path / "predictions.csv"
    files = [str(clips["good"]), str(clips["long"]), str(clips["zero_bytes"])]
    done = run_predict(*files, "--model", str(bundle_dir), "--format", "csv", "-o", str(out))
    assert done.returncode == 1
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert [r["level"] for r in rows].count("clip") == 3
    assert [r["level"] for r in rows].count("segment") == 1 + 3  # 2.6 s: the 0.6 s tail is dropped
    ok = [r for r in rows if r["status"] == "ok"]
    for row in ok:
        assert sum(float(row[f"p_{c}"]) for c in CLASSES) == pytest.approx(1.0)


def test_every_good_input_exits_zero_with_a_table(bundle_dir, clips):
    done = run_predict(str(clips["good"]), "--model", str(bundle_dir))
    assert done.returncode == 0, done.stderr
    assert (
        clips["good"].name[-20:] in done.stdout and "1 clip: 1 predicted, 0 failed" in done.stdout
    )


def test_the_bundle_predicts_the_same_in_a_fresh_process(bundle_dir, clips):
    here = next(Predictor(load_bundle(bundle_dir)).predict([str(clips["long"])]))
    done = run_predict(str(clips["long"]), "--model", str(bundle_dir), "--format", "json")
    there = json.loads(done.stdout)["clips"][0]
    np.testing.assert_allclose(
        [there["probabilities"][c] for c in CLASSES], here.probabilities, atol=1e-9
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("weights", "video.pt does not match its checksum"),
        ("version", "bundle written by avemotion 0.0.1"),
        ("missing", "bundle file fusion.skops is missing"),
    ],
)
def test_a_changed_bundle_is_refused_in_one_line(bundle_dir, clips, tmp_path, change, message):
    import shutil

    copy = tmp_path / "bundle"
    shutil.copytree(bundle_dir, copy)
    if change == "weights":
        data = bytearray((copy / "video.pt").read_bytes())
        data[-100] ^= 1
        (copy / "video.pt").write_bytes(bytes(data))
    elif change == "version":
        manifest = json.loads((copy / MANIFEST).read_text())
        manifest["avemotion_version"] = "0.0.1"
        (copy / MANIFEST).write_text(json.dumps(manifest))
    else:
        (copy / "fusion.skops").unlink()
    with pytest.raises(BadInputError, match=message):
        load_bundle(copy)
    done = run_predict(str(clips["good"]), "--model", str(copy))
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and message in done.stderr


def test_a_bundle_loads_no_untrusted_type(bundle_dir, tmp_path):
    """skops refuses a type outside the trusted list instead of building it."""
    import shutil

    import skops.io

    from avemotion.predict import bundle as bundle_module

    copy = tmp_path / "bundle"
    shutil.copytree(bundle_dir, copy)
    untrusted = bundle_module.TRUSTED_TYPES[:-1]
    with pytest.raises(skops.io.exceptions.UntrustedTypesFoundException):
        skops.io.load(copy / "fusion.skops", trusted=untrusted)


def test_an_export_writes_the_same_bytes_every_time(bundle_dir, tmp_path):
    """Exporting one fitted fusion twice gives one file, and it still predicts the same.

    skops alone names arrays after memory addresses and stamps the time, so
    ``models/bundle`` would change on every ``dvc repro`` and never match ``dvc.lock``.
    """
    import skops.io

    from avemotion.predict.bundle import TRUSTED_TYPES, reproducible_skops

    source = bundle_dir.parent / "systems" / "elm_svm.joblib"
    first, second = joblib.load(source), joblib.load(source)  # distinct objects, distinct ids
    assert reproducible_skops(first) == reproducible_skops(second)
    (tmp_path / "fusion.skops").write_bytes(reproducible_skops(first))
    loaded = skops.io.load(tmp_path / "fusion.skops", trusted=TRUSTED_TYPES)
    rows = np.random.default_rng(1).standard_normal((7, 16 + 16 + EGEMAPS_DIM)).astype(np.float32)
    np.testing.assert_array_equal(loaded.predict_proba(rows), first.predict_proba(rows))


class RecordingFusion:
    """A fitted fusion that keeps the rows it is asked to score."""

    def __init__(self, fusion: ELMFusion) -> None:
        self.fusion, self.rows = fusion, []
        self.classes_ = fusion.classes_

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        self.rows.append(x)
        return self.fusion.predict_proba(x)


@pytest.mark.parametrize("speaker_norm", [False, True])
def test_a_speaker_normalised_bundle_standardises_a_calls_fusion_rows_together(
    bundle_dir, clips, tmp_path, speaker_norm
) -> None:
    """With ``base.speaker_norm`` the bundle says so, and the fusion scores the call's
    rows z-scored over the call (its clips taken as one speaker's), with a warning that
    a few segments make thin statistics; without it, the rows as they are."""
    root = bundle_dir.parent
    files = ModelFiles(
        {"audio": root / "audio/best.pt", "video": root / "video/best.pt"}, root / "systems"
    )
    params = Params.model_validate({**TINY_PARAMS, "base": {"speaker_norm": speaker_norm}})
    export_bundle(params, CLASSES, files, tmp_path / "bundle")
    manifest = json.loads((tmp_path / "bundle" / MANIFEST).read_text())
    assert manifest["settings"]["base"]["speaker_norm"] is speaker_norm
    bundle = load_bundle(tmp_path / "bundle")
    assert bundle.speaker_norm is speaker_norm
    recorder = RecordingFusion(bundle.fusion)
    predictor = Predictor(dataclasses.replace(bundle, fusion=recorder))
    predictions = list(predictor.predict([str(clips["good"]), str(clips["long"])]))
    assert [p.status for p in predictions] == ["ok", "ok"]
    x = np.concatenate(recorder.rows)
    assert len(recorder.rows) == 2 and len(x) >= 3
    thin = [w for p in predictions for w in p.warnings if w.startswith("speaker normalisation")]
    if speaker_norm:
        np.testing.assert_allclose(x.mean(axis=0), 0.0, atol=1e-4)
        spread = x.std(axis=0)
        assert np.all((np.abs(spread - 1) < 1e-3) | (spread < 1e-6))
        assert len(thin) == 2 and f"over {len(x)} segments" in thin[0]
    else:
        assert np.abs(x.mean(axis=0)).max() > 1.0
        assert not thin
