"""The generated demo dataset: real, repeatable files with a findable face and a gendered voice."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import yaml

from avemotion.demo import ClipSpec, clip_arrays, clip_specs, generate_demo, render_clip
from avemotion.errors import BadInputError
from avemotion.media import probe
from avemotion.params import validate_params
from avemotion.params.schema import DemoParams

NAME = re.compile(r"^(?P<speaker>spk\d+)_(?P<gender>[mf])_(?P<emotion>[a-z]+)_(?P<take>\d+)$")
EMOTIONS = ["neutral", "happy", "sad", "angry"]


def small_tree(**overrides) -> dict:
    """2 speakers (1 male, 1 female) x 4 emotions x 1 take of 1.0-1.2 s: 8 clips."""
    params = {
        "seed": 3,
        "out_dir": "unused",
        "n_speakers": 2,
        "takes_per_emotion": 1,
        "emotions": EMOTIONS,
        "min_duration_s": 1.0,
        "max_duration_s": 1.2,
        "fps": 25,
        "width": 320,
        "height": 240,
        "sample_rate": 16000,
    }
    return {**params, **overrides}


def small_params(**overrides) -> DemoParams:
    """:func:`small_tree` as the checked ``demo:`` section."""
    return validate_params({"demo": small_tree(**overrides)}).demo


def decode(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """BGR frames (n, h, w, 3) and mono samples (m,) of a clip, in one forward pass each."""
    with av.open(str(path)) as container:
        frames = np.stack([f.to_ndarray(format="bgr24") for f in container.decode(video=0)])
    with av.open(str(path)) as container:
        samples = [f.to_ndarray().reshape(-1) for f in container.decode(audio=0)]
    return frames, np.concatenate(samples) if samples else np.zeros(0, dtype=np.float32)


def face_found(frames: np.ndarray) -> np.ndarray:
    """Per frame: does OpenCV's frontal-face Haar cascade find a face (ordinary settings)?"""
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    return np.array(
        [
            len(cascade.detectMultiScale(cv2.cvtColor(f, cv2.COLOR_BGR2GRAY), 1.1, 5)) > 0
            for f in frames
        ]
    )


def median_pitch_hz(samples: np.ndarray, sample_rate: int) -> float:
    """Median f0 over voiced 40 ms frames, by normalised autocorrelation in 70-400 Hz."""
    n, hop = int(0.04 * sample_rate), int(0.01 * sample_rate)
    frames = np.lib.stride_tricks.sliding_window_view(samples, n)[::hop]
    frames = (frames - frames.mean(axis=1, keepdims=True)) * np.hanning(n)
    power = np.abs(np.fft.rfft(frames, 2 * n)) ** 2
    autocorr = np.fft.irfft(power)[:, :n]
    autocorr /= autocorr[:, :1] + 1e-12
    low, high = sample_rate // 400, sample_rate // 70
    lag = low + np.argmax(autocorr[:, low:high], axis=1)
    strength = autocorr[np.arange(len(lag)), lag]
    energy = frames.var(axis=1)
    voiced = (strength > 0.5) & (energy > 0.1 * energy.max())
    assert voiced.sum() >= 5, "too few voiced frames to estimate pitch"
    return float(np.median(sample_rate / lag[voiced]))


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> dict[str, Path]:
    out_dir = tmp_path_factory.mktemp("demo")
    (out_dir / "stale_f_old_01.mp4").write_bytes(b"left over from an older generation")
    paths = generate_demo(out_dir, small_params())
    return {path.stem: path for path in paths}


def test_names_follow_the_pattern_and_stale_files_go(demo):
    assert len(demo) == 8
    parsed = [NAME.match(stem) for stem in demo]
    assert all(parsed)
    assert {(m["speaker"], m["gender"]) for m in parsed} == {("spk01", "m"), ("spk02", "f")}
    assert sorted({m["emotion"] for m in parsed}) == sorted(EMOTIONS)
    folder = next(iter(demo.values())).parent
    assert sorted(p.stem for p in folder.iterdir()) == sorted(demo)  # stale clip removed


def test_files_hold_h264_and_aac_at_the_asked_rate_and_length(demo):
    specs = dict(clip_specs(small_params()))
    for stem, path in demo.items():
        with av.open(str(path)) as container:
            assert container.streams.video[0].codec_context.name == "h264"
            assert container.streams.audio[0].codec_context.name == "aac"
        info = probe(path)
        n_frames = round(specs[stem].duration_s * 25)
        assert info.fps == 25 and (info.width, info.height) == (320, 240)
        assert info.sample_rate == 16000 and info.channels == 1
        assert info.duration_s == pytest.approx(n_frames / 25, abs=0.1)
        frames, samples = decode(path)
        assert len(frames) == n_frames
        assert len(samples) == pytest.approx(n_frames / 25 * 16000, abs=2048)
        assert 1.0 <= n_frames / 25 <= 1.2


def test_same_seed_repeats_exactly_and_another_seed_does_not(demo, tmp_path):
    again = generate_demo(tmp_path / "again", small_params(emotions=["neutral", "angry"]))
    other = generate_demo(tmp_path / "other", small_params(seed=4, emotions=["neutral"]))
    for path in again:
        frames, samples = decode(path)
        first_frames, first_samples = decode(demo[path.stem])
        np.testing.assert_array_equal(frames, first_frames)
        np.testing.assert_array_equal(samples, first_samples)
        assert path.read_bytes() == demo[path.stem].read_bytes()
    for path in other:
        frames, samples = decode(path)
        first_frames, first_samples = decode(demo[path.stem])
        assert (
            frames.shape != first_frames.shape
            or np.abs(frames.astype(int) - first_frames).mean() > 5
        )
        assert samples.shape != first_samples.shape or not np.allclose(samples, first_samples)


def test_haar_cascade_finds_the_face_in_nearly_every_frame(demo):
    rates = {stem: face_found(decode(path)[0][::3]).mean() for stem, path in demo.items()}
    assert np.mean(list(rates.values())) >= 0.9, rates
    assert min(rates.values()) >= 0.8, rates


def test_female_voices_are_higher_than_male_voices(demo):
    pitch = {stem: median_pitch_hz(decode(path)[1], 16000) for stem, path in demo.items()}
    male = [hz for stem, hz in pitch.items() if "_m_" in stem]
    female = [hz for stem, hz in pitch.items() if "_f_" in stem]
    assert 80 < np.median(male) < 180, pitch
    assert 160 < np.median(female) < 330, pitch
    assert np.median(female) > 1.4 * np.median(male), pitch
    assert max(male) < min(female) * 1.1, pitch


def test_mouth_opens_with_the_voice():
    _, spec = clip_specs(
        small_params(emotions=["neutral"], min_duration_s=2.0, max_duration_s=2.0)
    )[0]
    frames, samples = clip_arrays(spec)
    assert frames.shape == (50, 240, 320, 3) and samples.shape == (32000,)
    loudness = np.sqrt((samples.reshape(len(frames), -1) ** 2).mean(axis=1))
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    gray = cv2.cvtColor(frames[0], cv2.COLOR_BGR2GRAY)
    x, y, w, h = cascade.detectMultiScale(gray, 1.1, 5)[0]
    mouth = frames[:, y + int(0.7 * h) : y + int(0.92 * h), x + int(0.3 * w) : x + int(0.7 * w)]
    darkness = -mouth.mean(axis=(1, 2, 3))
    assert np.corrcoef(darkness, loudness)[0, 1] > 0.5


def test_bad_clips_for_the_video_tests(tmp_path):
    _, spec = clip_specs(small_params())[0]
    no_face = render_clip(tmp_path / "no_face.mp4", replace(spec, draw_face=False, duration_s=1.2))
    frames, samples = decode(no_face)
    assert len(frames) == 30 and not face_found(frames).any()
    assert probe(no_face).has_audio and np.abs(samples).max() > 0.01
    silent = render_clip(tmp_path / "silent.mp4", replace(spec, with_audio=False, duration_s=0.6))
    info = probe(silent)
    assert info.has_video and not info.has_audio
    assert info.duration_s == pytest.approx(0.6, abs=0.05)
    assert isinstance(spec, ClipSpec)


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ({"emotions": ["neutral", "bored"]}, "demo.emotions"),
        ({"width": 321}, "demo.width"),
        ({"n_speakers": 1}, "demo.n_speakers"),
        ({"min_duration_s": 3.0, "max_duration_s": 2.0}, "demo.min_duration_s"),
        ({"sample_rate": 12345}, "demo.sample_rate"),
    ],
)
def test_bad_params_name_the_key(override, key):
    with pytest.raises(BadInputError) as error:
        clip_specs(small_params(**override))  # the schema refuses all but the emotion
    message = str(error.value)
    assert "\n" not in message
    section, name = key.split(".")
    assert f"`{key}`" in message or (f"`{section}`" in message and name in message), message


STAGE = Path(__file__).resolve().parents[1] / "stages" / "make_demo.py"


def test_stage_writes_the_clips_and_refuses_bad_params(tmp_path):
    params = {
        "base": {"n_jobs": 1},
        "demo": small_tree(
            out_dir="clips", min_duration_s=0.6, max_duration_s=0.6, emotions=["sad"]
        ),
    }
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    shutil.copy(STAGE.parents[1] / "dvc.yaml", tmp_path / "dvc.yaml")  # the stage's params keys
    done = subprocess.run(
        [sys.executable, str(STAGE)], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (tmp_path / "clips").iterdir()) == [
        "spk01_m_sad_01.mp4",
        "spk02_f_sad_01.mp4",
    ]
    assert "2 clips" in done.stdout and "1 male, 1 female" in done.stdout

    params["demo"]["emotions"] = ["sad", "bored"]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    failed = subprocess.run(
        [sys.executable, str(STAGE)], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert failed.returncode == 1
    last_line = failed.stderr.strip().splitlines()[-1]
    assert last_line.startswith("error: params.yaml: `demo.emotions`: cannot draw ['bored']")
