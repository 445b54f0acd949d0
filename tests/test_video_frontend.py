"""The video front-end on real clips and on bad ones, through the stage functions."""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
from pathlib import Path

import av
import cv2
import h5py
import numpy as np
import pandas as pd
import pytest
import yaml

from avemotion.h5store import read_attrs, read_meta
from avemotion.index import INDEX_COLUMNS
from avemotion.media import probe
from avemotion.parallel import map_clips
from avemotion.params import Params, validate_params
from avemotion.params.schema import VideoParams
from avemotion.segments import segment_starts
from avemotion.video import build_visual_tensors, clip_keyframes, extract_keyframes, frontend
from avemotion.video.decode import gray_frames

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
RAVDESS = sorted((SHARED / "ravdess-av-actor01").glob("*.mp4"))
CREMA_FLV = sorted((SHARED / "crema-d-mini").glob("*.flv"))
CREMA_MP3 = sorted((SHARED / "crema-d-mini").glob("*.mp3"))
needs_shared = pytest.mark.skipif(
    len(RAVDESS) != 11 or len(CREMA_FLV) != 6, reason="shared RAVDESS/CREMA-D clips not present"
)


def params_tree(n_jobs: int = 2, rotation_deg=(), **video) -> dict:
    return {
        "base": {
            "seed": 42, "segment_s": 2.0, "hop_s": 2.0, "last_segment": "pad",
            "min_segment_s": 1.0, "n_jobs": n_jobs,
        },
        "video": dict(video),
        "augment": {"rotation_deg": list(rotation_deg), "snr_db": []},
    }  # fmt: skip


def make_params(n_jobs: int = 2, rotation_deg=(), **video) -> Params:
    return validate_params(params_tree(n_jobs, rotation_deg, **video))


def make_index(entries: list[tuple[str, Path, float, bool]], folds=None) -> pd.DataFrame:
    """Index rows by hand: (clip_id, path, duration_s, has_video)."""
    rows = []
    for i, (clip_id, path, duration_s, has_video) in enumerate(entries):
        rows.append(
            {
                "clip_id": clip_id,
                "path": str(path),
                "dataset": "test",
                "speaker": f"s{i % 3}",
                "gender": "female" if i % 2 else "male",
                "emotion": "happy",
                "label": 1,
                "sentence": "",
                "duration_s": duration_s,
                "audio_duration_s": duration_s,
                "video_duration_s": duration_s,
                "has_audio": True,
                "has_video": has_video,
                "fold": -1 if folds is None else folds[i],
            }
        )
    return pd.DataFrame(rows, columns=list(INDEX_COLUMNS))


def write_video(path: Path, images: list[np.ndarray], fps: int = 25, **container_options) -> Path:
    with av.open(str(path), "w", options=container_options) as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height = images[0].shape[1], images[0].shape[0]
        stream.pix_fmt = "yuv420p"
        stream.options = {"preset": "ultrafast"}
        for image in images:
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="gray")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def face_frames(n: int) -> list[np.ndarray]:
    """The first ``n`` frames of a RAVDESS clip at 640x360."""
    frames = []
    for frame in gray_frames(RAVDESS[0]):
        frames.append(cv2.resize(frame.image, (640, 360), interpolation=cv2.INTER_AREA))
        if len(frames) == n:
            break
    return frames


# ------------------------------------------------------------------ real clips


def _real_clip(path: Path):
    return path, probe(path).duration_s, clip_keyframes(path, probe(path).duration_s)


@needs_shared
def test_every_real_clip_shows_a_face_and_every_full_segment_has_16_keyframes():
    results = list(map_clips(_real_clip, RAVDESS + CREMA_FLV, n_jobs=2))
    for path, duration_s, result in results:
        assert result.n_face_frames / result.n_frames >= 0.95, path.name
        starts = segment_starts(duration_s, 2.0, 2.0, "pad", 1.0)
        # every segment is kept: the full ones and a padded last one (some CREMA-D clips
        # are shorter than 2 s and have only that)
        assert result.segments.tolist() == list(range(len(starts))), path.name
        assert result.keyframes.shape[1:] == (16, 112, 112), path.name
        assert result.keyframes.dtype == np.uint8
        assert result.n_corrupt_packets == 0


@needs_shared
def test_detecting_every_third_frame_and_tracking_in_between_still_follows_the_face():
    video = VideoParams(detect_every=3)
    path = CREMA_FLV[0]
    result = clip_keyframes(path, probe(path).duration_s, video)
    assert result.n_face_frames / result.n_frames >= 0.95
    assert result.keyframes.shape == (1, 16, 112, 112)


# ------------------------------------------------------------------ bad input, whole stage


@pytest.fixture(scope="module")
def bad_clips(tmp_path_factory) -> dict[str, tuple[Path, float, bool]]:
    """clip_id -> (path, duration_s for the index, has_video)."""
    folder = tmp_path_factory.mktemp("clips")
    rng = np.random.default_rng(3)
    faces = face_frames(75)
    clips = {}
    short = write_video(folder / "short.mp4", faces[:15])
    clips["short"] = (short, probe(short).duration_s, True)
    padded = write_video(folder / "padded.mp4", faces[:38])
    clips["padded"] = (padded, probe(padded).duration_s, True)
    noise = [rng.integers(0, 256, (240, 320), dtype=np.uint8) for _ in range(50)]
    clips["noface"] = (write_video(folder / "noise.mp4", noise), 2.0, True)
    # 2 s with a face, then 2 s of noise: the second segment has no face frame
    noise_640 = [rng.integers(0, 256, (360, 640), dtype=np.uint8) for _ in range(50)]
    half = write_video(folder / "halfface.mp4", faces[:50] + noise_640)
    clips["halfface"] = (half, probe(half).duration_s, True)
    wav = folder / "voice.wav"
    with av.open(str(wav), "w") as out:
        stream = out.add_stream("pcm_s16le", rate=16000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 48000), np.int16), "s16", "mono")
        frame.sample_rate = 16000
        for packet in [*stream.encode(frame), *stream.encode()]:
            out.mux(packet)
    clips["audioonly"] = (wav, 3.0, True)
    for name, options in [("truncated", {"movflags": "faststart"}), ("unreadable", {})]:
        whole = write_video(folder / f"{name}_whole.mp4", faces, **options)
        data = whole.read_bytes()
        cut = folder / f"{name}.mp4"
        cut.write_bytes(data[: len(data) // 2])
        clips[name] = (cut, 3.0, True)
    if CREMA_MP3:
        clips["mp3"] = (CREMA_MP3[0], probe(CREMA_MP3[0]).duration_s, False)
    return clips


@needs_shared
def test_bad_clips_are_rejected_with_their_reason_and_the_stage_finishes(bad_clips, tmp_path):
    good = [("ravdess", RAVDESS[0], probe(RAVDESS[0]).duration_s, True)]
    entries = good + [(name, *spec) for name, spec in bad_clips.items()]
    out = tmp_path / "keyframes.h5"
    rejects_path = tmp_path / "keyframes_rejects.csv"
    summary = extract_keyframes(make_index(entries), make_params(), out, rejects_path)

    with rejects_path.open(newline="") as handle:
        reasons = {row["clip_id"]: row["reason"] for row in csv.DictReader(handle)}
    assert "analysis segment" in reasons["short"]
    assert "face found in 0 of 50 frames" in reasons["noface"]
    assert "no video stream" in reasons["audioonly"]
    assert "truncated" in reasons["truncated"]
    assert "unreadable container" in reasons["unreadable"]
    if "mp3" in bad_clips:
        assert "has_video is false" in reasons["mp3"]
    assert set(reasons) == set(bad_clips) - {"padded", "halfface"}
    assert summary["rejected"] == len(reasons)
    assert summary["segments_without_face"] == 1
    assert summary["clips"] == len(entries) and summary["clips_written"] == 3
    assert summary["rows"] == 4 and summary["augmented_rows"] == 0

    meta = read_meta(out)
    # the real clip keeps its two full segments, the 1.5 s clip one padded segment, and
    # the half-face clip the segment with the face
    assert meta["clip_id"].tolist() == ["ravdess", "ravdess", "padded", "halfface"]
    assert meta["segment"].tolist() == [0, 1, 0, 0]
    assert meta["start_s"].tolist() == [0.0, 2.0, 0.0, 0.0]
    assert not meta["augmented"].any() and set(meta["augmentation"]) == {""}
    with h5py.File(out, "r") as handle:
        assert handle["x"].shape == (4, 16, 112, 112) and handle["x"].dtype == np.uint8
        assert handle["x"].chunks == (1, 16, 112, 112)
    assert read_attrs(out)["params"]["video"]["n_keyframes"] == 16

    tensors = tmp_path / "video.h5"
    summary = build_visual_tensors(out, make_params(rotation_deg=[8]), tensors)
    meta = read_meta(tensors)
    assert summary == {"segments": 4, "augmented": 4}  # fold -1 everywhere: all train
    assert meta["augmentation"].tolist() == ["", "", "rot8", "rot8", "", "rot8", "", "rot8"]
    with h5py.File(tensors, "r") as handle:
        x = handle["x"]
        assert x.shape == (8, 16, 64, 64, 3) and x.dtype == np.float32
        first = x[0]
    assert np.abs(first[..., 0].mean()) < 1e-3  # mean-normalised gray
    assert 0 <= first[..., 1:].min() and first[..., 1:].max() <= 1


def test_an_interrupted_stage_leaves_no_output(bad_clips, tmp_path, monkeypatch):
    calls = []

    def interrupted(*args, **kwargs):
        calls.append(args)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    real = frontend.clip_keyframes
    monkeypatch.setattr(frontend, "clip_keyframes", interrupted)
    out = tmp_path / "keyframes.h5"
    rejects_path = tmp_path / "rejects.csv"
    stale = "path,clip_id,stage,reason\nstale,stale,old,from a previous run\n"
    rejects_path.write_text(stale)
    entries = [(name, *bad_clips[name]) for name in ("padded", "short", "noface")]
    with pytest.raises(KeyboardInterrupt):
        extract_keyframes(make_index(entries), make_params(n_jobs=1), out, rejects_path)
    assert len(calls) == 2
    # neither a table nor a report (not the previous run's: it would describe another
    # table), and no partial file
    assert list(tmp_path.iterdir()) == []


@needs_shared
def test_the_stage_scripts_run_end_to_end(tmp_path):
    clip = CREMA_FLV[0]
    make_index([("crema", clip, probe(clip).duration_s, True)]).to_csv(
        tmp_path / "index.csv", index=False
    )
    params = params_tree(n_jobs=1, rotation_deg=[4], input_size=32)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    shutil.copy(ROOT / "dvc.yaml", tmp_path / "dvc.yaml")  # the stages read their params' keys
    scripts = ROOT / "stages"
    kf, rejects, tensors = "keyframes.h5", "rejects.csv", "video.h5"
    for args in (
        [scripts / "extract_keyframes.py", "index.csv", kf, rejects],
        [scripts / "build_visual_tensors.py", kf, tensors],
    ):
        done = subprocess.run(
            [sys.executable, *map(str, args)], cwd=tmp_path, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
    with h5py.File(tmp_path / tensors, "r") as handle:
        assert handle["x"].shape == (2, 16, 32, 32, 3)
    bad = subprocess.run(
        [sys.executable, str(scripts / "build_visual_tensors.py"), "missing.h5", "out.h5"],
        cwd=tmp_path, capture_output=True, text=True,
    )  # fmt: skip
    assert bad.returncode == 1
    assert (
        bad.stderr.strip() == "error: missing.h5: not found; run the extract_keyframes stage first"
    )


def test_audio_only_run_writes_empty_video_tables(tmp_path):
    """With base.modalities [audio] the video stages leave empty, well-formed tables."""
    index = pd.DataFrame(
        {
            "clip_id": ["a"],
            "path": [str(tmp_path / "missing.mp4")],
            "dataset": ["x"],
            "speaker": ["1"],
            "gender": ["male"],
            "emotion": ["sad"],
            "label": [0],
            "sentence": [""],
            "duration_s": [3.0],
            "audio_duration_s": [3.0],
            "video_duration_s": [0.0],
            "has_audio": [True],
            "has_video": [False],
            "fold": [0],
        }
    )
    tree = params_tree(n_jobs=1, rotation_deg=[4])
    params = validate_params({**tree, "base": {**tree["base"], "modalities": ["audio"]}})
    keyframes, video = tmp_path / "keyframes.h5", tmp_path / "video.h5"
    rejects = tmp_path / "rejects.csv"
    summary = extract_keyframes(index, params, keyframes, rejects)
    assert "no video features" in summary["skipped"]
    assert (summary["clips"], summary["rows"], summary["rejected"]) == (1, 0, 0)
    assert len(read_meta(keyframes)["clip_id"]) == 0
    attrs = read_attrs(keyframes)
    assert attrs["skipped"] == attrs["summary_skipped"] == summary["skipped"]
    with rejects.open(newline="") as handle:
        assert list(csv.DictReader(handle)) == []  # an empty report, header only
    with h5py.File(keyframes, "r") as handle:  # the layout of a real table (16 keyframes)
        assert handle["x"].shape == (0, 16, 112, 112) and handle["x"].dtype == np.uint8
    assert build_visual_tensors(keyframes, params, video) == {"segments": 0, "augmented": 0}
    assert len(read_meta(video)["clip_id"]) == 0
    with h5py.File(video, "r") as handle:
        assert handle["x"].shape == (0, 16, 64, 64, 3)
