"""The audio front-end (paper section 2.2): decoding, segments, spectrogram, noise, the stage."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import av
import h5py
import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import REPO, shared
from python_speech_features import delta as psf_delta
from python_speech_features import fbank

import avemotion.audio.frontend as frontend_module
from avemotion.audio.clips import cut_segments, decode_audio, frame_samples, to_mono
from avemotion.audio.frontend import (
    FrontEndSettings,
    build_audio_features,
    extract_clips,
    noisy_copies,
    snr_name,
)
from avemotion.audio.spectrogram import (
    SpectrogramConfig,
    delta,
    log_mel,
    mel_filterbank,
    spectrogram,
)
from avemotion.augment import clip_rng
from avemotion.clip_stage import clip_jobs
from avemotion.errors import BadInputError
from avemotion.h5store import read_attrs, read_meta
from avemotion.index import INDEX_COLUMNS
from avemotion.media import probe
from avemotion.params import validate_params
from avemotion.rejects import read_rejects
from avemotion.segments import segment_starts

CONFIG = SpectrogramConfig()
LAYOUT_CHANNELS = {"mono": 1, "stereo": 2, "5.1": 6}
ENCODERS = {".wav": "pcm_s16le", ".flac": "flac", ".mp3": "libmp3lame", ".ogg": "vorbis"}
STAGE_SCRIPT = str(REPO / "stages" / "build_spectrograms.py")


# --------------------------------------------------------------------------- helpers


def tone(freq_hz: float, rate: int, duration_s: float, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(round(duration_s * rate)) / rate
    return amplitude * np.sin(2 * np.pi * freq_hz * t)


def write_audio(
    path: Path, signal: np.ndarray, rate: int, layout: str = "mono", codec: str | None = None
) -> Path:
    """Encode ``signal`` (n,) or (channels, n) in [-1, 1] with PyAV; codec from the suffix."""
    codec = codec or ENCODERS[path.suffix]
    signal = np.atleast_2d(signal)
    if signal.shape[0] == 1:
        signal = np.repeat(signal, LAYOUT_CHANNELS[layout], axis=0)
    integer = codec in ("pcm_s16le", "flac")
    fmt = "s16" if integer else "fltp"
    data = (np.clip(signal, -1, 1) * 32767).astype(np.int16) if integer else signal
    data = data.astype(np.float32) if not integer else data
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=rate, layout=layout)
        if codec == "vorbis":
            stream.codec_context.options = {"strict": "experimental"}
        for start in range(0, data.shape[1], 1024):
            chunk = data[:, start : start + 1024]
            array = chunk.T.reshape(1, -1) if not fmt.endswith("p") else chunk
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(array), format=fmt, layout=layout
            )
            frame.sample_rate = rate
            frame.pts = start
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


def write_video_only(path: Path, n_frames: int = 50, fps: int = 25) -> Path:
    """An mp4 with one MPEG-4 video stream and no audio."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(n_frames):
            image = np.full((48, 64, 3), (i * 5) % 255, dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


def index_row(path: Path, duration_s: float | None = None, fold: int = -1, **extra) -> dict:
    """One ``data/index.csv`` row; durations and has_audio from :func:`probe` unless given
    (a given duration is the audio stream's too)."""
    info = probe(path) if duration_s is None else None
    row = {
        "clip_id": path.stem,
        "path": str(path),
        "dataset": "test",
        "speaker": "s1",
        "gender": "female",
        "emotion": "neutral",
        "label": 0,
        "sentence": "",
        "duration_s": info.duration_s if info else duration_s,
        "audio_duration_s": info.audio_duration_s if info else duration_s,
        "video_duration_s": info.video_duration_s if info else 0.0,
        "has_audio": info.has_audio if info else True,
        "has_video": info.has_video if info else False,
        "fold": fold,
    }
    row.update(extra)
    return row


def make_index(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=list(INDEX_COLUMNS))


def params_tree(snr_db=(), last_segment="pad", modalities=("audio", "video"), n_jobs=1) -> dict:
    """The params the stage reads, as nested dicts (what ``params.yaml`` holds)."""
    return {
        "base": {
            "seed": 42,
            "modalities": list(modalities),
            "segment_s": 2.0,
            "hop_s": 2.0,
            "last_segment": last_segment,
            "min_segment_s": 1.0,
            "n_jobs": n_jobs,
        },
        "audio": {},  # every key at its default
        "augment": {"snr_db": list(snr_db)},
    }


def make_params(*args, **kwargs):
    """:func:`params_tree`, validated as the stages read it."""
    return validate_params(params_tree(*args, **kwargs))


def features_of(path: Path, duration_s: float, settings: FrontEndSettings) -> np.ndarray:
    """The original rows of a clip, recomputed step by step."""
    audio = decode_audio(path, settings.spectrogram.sample_rate)
    starts = settings.segments.starts(duration_s)
    segments, _ = cut_segments(audio.samples, audio.sample_rate, starts, 2.0)
    return spectrogram(segments, settings.spectrogram)


def snr_db_of(clean: np.ndarray, noisy: np.ndarray) -> float:
    clean = clean.astype(np.float64)
    noise = noisy.astype(np.float64) - clean
    return 10 * np.log10(np.mean(clean**2) / np.mean(noise**2))


# --------------------------------------------------------------------------- decoding


@pytest.mark.parametrize(
    "sample_format", ["u8", "s16", "s32", "flt", "dbl", "s16p", "fltp", "dblp"]
)
@pytest.mark.parametrize("layout", ["mono", "stereo", "5.1"])
def test_frame_samples_reads_every_sample_format_as_to_ndarray(sample_format, layout):
    """The zero-copy read of a frame's planes equals PyAV's to_ndarray, and to_mono scales
    every format to the same [-1, 1] channel mean."""
    channels = LAYOUT_CHANNELS[layout]
    rng = np.random.default_rng(3)
    signal = rng.uniform(-0.9, 0.9, (channels, 1000))
    dtype = {"u8": np.uint8, "s16": np.int16, "s32": np.int32}.get(sample_format.rstrip("p"))
    if dtype is None:
        data = signal.astype(np.float32 if sample_format.startswith("flt") else np.float64)
    else:
        half_range = 2.0 ** (8 * np.dtype(dtype).itemsize - 1)  # u8 is offset binary
        data = np.round(signal * half_range + (128 if dtype is np.uint8 else 0)).astype(dtype)
    planar = sample_format.endswith("p")
    array = data if planar else data.T.reshape(1, -1)  # packed formats interleave
    frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(array), sample_format, layout)
    samples = frame_samples(frame, sample_format, channels)
    np.testing.assert_array_equal(samples, frame.to_ndarray())
    mono = to_mono(samples, sample_format, channels)
    assert mono.dtype == np.float32 and mono.shape == (1000,)
    np.testing.assert_allclose(mono, signal.mean(axis=0), atol=2 / 256)


@pytest.mark.parametrize(
    ("rate", "layout", "suffix"),
    [
        (8000, "mono", ".wav"),
        (16000, "stereo", ".flac"),
        (22050, "stereo", ".mp3"),
        (44100, "stereo", ".ogg"),
        (48000, "5.1", ".flac"),
        (96000, "5.1", ".wav"),
    ],
)
def test_every_rate_and_layout_gives_one_30x100x3_image(tmp_path, rate, layout, suffix):
    path = write_audio(tmp_path / f"tone{suffix}", tone(440, rate, 2.0), rate, layout)
    audio = decode_audio(path, 16000)
    assert audio.source_rate == rate and audio.source_channels == LAYOUT_CHANNELS[layout]
    assert abs(audio.duration_s - 2.0) < 0.06
    # the channel mean keeps the tone's level (0.5 / sqrt 2) whatever the layout
    rms = np.sqrt(np.mean(audio.samples[2000:-2000] ** 2))
    assert rms == pytest.approx(0.5 / np.sqrt(2), rel=0.1)  # mp3 loses ~5%
    starts = segment_starts(probe(path).duration_s)
    segments, _ = cut_segments(audio.samples, 16000, starts, 2.0)
    image = spectrogram(segments, CONFIG)
    assert image.shape == (1, 30, 100, 3) and image.dtype == np.float32
    assert np.isfinite(image).all()


def test_resampling_filters_out_what_would_alias(tmp_path):
    # 12 kHz at 48 kHz would fold to 4 kHz at 16 kHz without an anti-aliasing filter
    path = write_audio(tmp_path / "high.wav", tone(12000, 48000, 1.0), 48000)
    samples = decode_audio(path, 16000).samples[1000:-1000]
    assert np.sqrt(np.mean(samples**2)) < 1e-3 * 0.5 / np.sqrt(2)


def test_file_without_audio_stream_is_a_bad_input(tmp_path):
    path = write_video_only(tmp_path / "silent_film.mp4")
    with pytest.raises(BadInputError, match="no audio stream"):
        decode_audio(path)


def test_audio_that_starts_late_is_placed_on_the_clip_timeline(tmp_path):
    """Sample k is at k / 16000 s of the clip (the container's start), as the video counts."""
    path, rate = tmp_path / "late.mkv", 16000
    with av.open(str(path), "w") as container:
        video = container.add_stream("mpeg4", rate=25)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        audio = container.add_stream("aac", rate=rate, layout="mono")
        for i in range(75):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 99, np.uint8), format="rgb24")
            frame.pts = i
            for packet in video.encode(frame):
                container.mux(packet)
        signal = tone(440, rate, 2.0).astype(np.float32)
        for start in range(0, len(signal), 1024):
            chunk = np.ascontiguousarray(signal[None, start : start + 1024])
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="mono")
            frame.sample_rate, frame.pts = rate, rate // 2 + start  # audio begins at 0.5 s
            for packet in audio.encode(frame):
                container.mux(packet)
        for stream in (video, audio):
            for packet in stream.encode(None):
                container.mux(packet)
    samples = decode_audio(path).samples
    assert not samples[: int(0.45 * rate)].any()
    assert np.abs(samples[int(0.6 * rate) : int(0.7 * rate)]).max() > 0.4


def test_corrupt_packets_are_counted_and_skipped(tmp_path):
    path = write_audio(tmp_path / "clip.mp3", tone(300, 16000, 4.0, 0.3), 16000)
    data = bytearray(path.read_bytes())
    noise = np.random.default_rng(0).integers(0, 256, 64, dtype=np.uint8).tobytes()
    for k in range(2, 7):  # five scrambled spots; each breaks one MP3 frame
        spot = len(data) * k // 8
        data[spot : spot + 64] = noise
    path.write_bytes(bytes(data))
    audio = decode_audio(path)
    assert audio.corrupt_packets == 5
    assert 3.0 < audio.duration_s < 4.0
    assert np.isfinite(audio.samples).all()


# --------------------------------------------------------------------------- spectrogram


def test_a_1khz_tone_peaks_in_the_mel_band_that_holds_1khz(tmp_path):
    path = write_audio(tmp_path / "a.wav", tone(1000, 44100, 2.0), 44100, "stereo")
    segments, _ = cut_segments(decode_audio(path).samples, 16000, np.array([0.0]), 2.0)
    band = spectrogram(segments, CONFIG)[0, :, :, 0].mean(axis=1).argmax()
    bank = mel_filterbank(30, 1024, 16000, 0.0, 8000.0)
    bin_1khz = round(1000 * 1024 / 16000)
    assert band == bank[:, bin_1khz].argmax()
    edges_hz = np.flatnonzero(bank[band]) * 16000 / 1024
    assert edges_hz.min() < 1000 < edges_hz.max()


@pytest.mark.parametrize("preemph", [0.0, 0.97])
def test_log_mel_channel_equals_python_speech_features(preemph):
    rng = np.random.default_rng(3)
    t = np.arange(32000) / 16000
    signal = 0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t))
    signal = (signal + 0.01 * rng.standard_normal(32000)).astype(np.float32)
    config = SpectrogramConfig(preemph=preemph)
    image = spectrogram(signal[None], config)[0]  # (30, 100, 3)

    def reference(x):
        energies, _ = fbank(
            x.astype(np.float64), 16000, winlen=0.04, winstep=0.02, nfilt=30, nfft=1024,
            preemph=preemph, winfunc=np.hamming,
        )  # fmt: skip
        return np.log(energies)

    # plain framing of the 2 s gives 99 frames: they are our first 99
    plain = reference(signal)
    assert plain.shape == (99, 30)
    np.testing.assert_allclose(image[:, :99, 0].T, plain, atol=1e-4)
    # the 100th comes from the segment mirrored by one 20 ms step
    padded = reference(np.pad(signal, (0, 320), mode="reflect"))
    np.testing.assert_allclose(image[:, :, 0].T, padded, atol=1e-4)
    # window of 3 = python_speech_features delta(feat, N=1), then again for delta-delta
    np.testing.assert_allclose(image[:, :, 1].T, psf_delta(padded, 1), atol=1e-4)
    np.testing.assert_allclose(image[:, :, 2].T, psf_delta(psf_delta(padded, 1), 1), atol=1e-4)


@pytest.mark.parametrize("n", [1, 2, 3])
def test_delta_is_python_speech_features_delta(n):
    features = np.random.default_rng(n).standard_normal((100, 30))
    np.testing.assert_allclose(delta(features, n, axis=0), psf_delta(features, n), atol=1e-12)


def test_silence_gives_the_log_floor_not_minus_infinity():
    image = spectrogram(np.zeros((2, 32000), np.float32), CONFIG)
    assert np.isfinite(image).all()
    np.testing.assert_allclose(image[..., 0], np.log(np.float32(1e-10)))
    assert not image[..., 1:].any()


def test_partial_segment_is_zero_padded_from_the_index_duration():
    samples = np.ones(int(3.5 * 16000), np.float32)
    starts = segment_starts(3.5, 2.0, 2.0, "pad", 1.0)
    segments, n_valid = cut_segments(samples, 16000, starts, 2.0)
    assert segments.shape == (2, 32000)
    assert n_valid.tolist() == [32000, 24000]
    assert segments[1, :24000].all() and not segments[1, 24000:].any()
    assert log_mel(segments, CONFIG).shape == (2, 100, 30)


# --------------------------------------------------------------------------- augmentation


def test_noisy_copies_hit_their_snr_within_a_tenth_of_a_db():
    rng = np.random.default_rng(0)
    speechlike = (tone(180, 16000, 2.0, 0.2) * (1 + tone(4, 16000, 2.0, 1.0))).astype(np.float32)
    segments = np.stack([speechlike, np.zeros(32000, np.float32), speechlike])
    n_valid = np.array([32000, 32000, 20000])
    segments[2, 20000:] = 0
    for snr in (15, 20, 25, 30):
        noisy, augmented = noisy_copies(segments, n_valid, snr, rng)
        assert augmented.tolist() == [True, False, True]  # silence has no SNR to set
        assert snr_db_of(segments[0], noisy[0]) == pytest.approx(snr, abs=0.1)
        assert snr_db_of(segments[2, :20000], noisy[2, :20000]) == pytest.approx(snr, abs=0.1)
        assert not noisy[2, 20000:].any()  # padding stays padding
        assert np.array_equal(noisy[1], segments[1])


# --------------------------------------------------------------------------- the stage


@pytest.fixture(scope="module")
def real_clips() -> pd.DataFrame:
    """Every clip of ravdess-speech/Actor_01, crema-d-mini and ravdess-av-actor01."""
    paths = sorted(shared("ravdess-speech/Actor_01").glob("*.flac"))
    paths += sorted(shared("crema-d-mini").iterdir())
    paths += sorted(shared("ravdess-av-actor01").glob("*.mp4"))
    assert len(paths) == 60 + 12 + 11
    return make_index([index_row(p) for p in paths])


@pytest.mark.parametrize("last_segment", ["pad", "drop"])
def test_every_real_clip_gives_its_segments(tmp_path, real_clips, last_segment):
    index = real_clips
    if last_segment == "drop":  # the rule that matters for CREMA-D's 1.9 s clips
        index = index[index.path.str.contains("crema-d")].reset_index(drop=True)
    out, rejects_csv = tmp_path / "audio.h5", tmp_path / "rejects.csv"
    summary = build_audio_features(index, make_params(last_segment=last_segment), out, rejects_csv)

    expected = {
        row.clip_id: len(segment_starts(row.audio_duration_s, 2.0, 2.0, last_segment, 1.0))
        for row in index.itertuples()
    }
    meta = read_meta(out)
    written = pd.Series(meta["clip_id"]).value_counts().to_dict()
    assert written == {clip: n for clip, n in expected.items() if n}
    rejects = read_rejects(rejects_csv)
    assert {r.clip_id for r in rejects} == {clip for clip, n in expected.items() if n == 0}
    assert all("no analysis segment" in r.reason for r in rejects)
    assert summary["corrupt_packets"] == 0
    if last_segment == "pad":
        # RAVDESS 3.2-5.0 s: 2 segments (one 5.0 s clip: 3), CREMA-D 1.9-2.8 s: 1
        assert sum(expected.values()) == 59 * 2 + 3 + 12 * 1 + 11 * 2
        assert not rejects
    else:  # CREMA-D clips under 2 s have no full segment to keep
        short = set(index.clip_id[index.audio_duration_s < 2.0])
        assert "1001_DFA_HAP_XX" in short and {r.clip_id for r in rejects} == short
    with h5py.File(out) as handle:
        x = handle["x"][:]
        assert x.shape == (len(meta["clip_id"]), 30, 100, 3) and np.isfinite(x).all()
        assert handle.attrs["last_segment"] == last_segment
        silent = np.isin(meta["clip_id"], [c for c in expected if c.startswith("02-")])
        # the 02- files carry an all-zero track: every value at the log floor
        np.testing.assert_allclose(x[silent][..., 0], np.log(np.float32(1e-10)))
        assert (x[~silent][..., 0].max(axis=(1, 2)) > -10).all()


def test_stage_outcome_for_each_bad_input(tmp_path):
    """Zero bytes, truncated, no audio, too short, silence, 96 kHz 5.1: one row or one reject
    each, and the stage finishes for the rest. Also: rows align with x, test folds get no
    augmented rows."""
    clips = tmp_path / "clips"
    clips.mkdir()
    (clips / "empty.wav").write_bytes(b"")
    full = write_audio(clips / "cut.flac", tone(300, 16000, 3.0, 0.3), 16000)
    full.write_bytes(full.read_bytes()[: full.stat().st_size // 3])
    rows = [
        index_row(clips / "empty.wav", duration_s=2.5),
        index_row(full, duration_s=3.0),  # indexed before it was cut
        index_row(write_video_only(clips / "film.mp4")),
        index_row(write_audio(clips / "short.wav", tone(500, 16000, 0.3), 16000)),
        index_row(write_audio(clips / "hush.wav", np.zeros(40000), 16000)),
        index_row(write_audio(clips / "surround.wav", tone(2000, 96000, 2.6), 96000, "5.1")),
        index_row(write_audio(clips / "voice.flac", tone(800, 16000, 4.2), 16000), fold=0),
    ]
    index_csv = tmp_path / "index.csv"
    make_index(rows).to_csv(index_csv, index=False)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params_tree((15, 30), n_jobs=2)))
    shutil.copy(REPO / "dvc.yaml", tmp_path)  # the stage reads the params it declares there
    out, rejects_csv = tmp_path / "features" / "audio.h5", tmp_path / "features" / "rejects.csv"
    run = subprocess.run(
        [sys.executable, STAGE_SCRIPT, index_csv, out, rejects_csv],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr

    reasons = {r.clip_id: r.reason for r in read_rejects(rejects_csv)}
    assert set(reasons) == {"empty", "cut", "film", "short"}
    assert reasons["empty"] == "zero bytes"
    assert reasons["cut"].startswith("truncated or corrupt")
    assert reasons["film"].startswith("no audio stream")
    assert reasons["short"].startswith("no analysis segment: 0.30 s")

    meta, attrs = read_meta(out), read_attrs(out)
    table = pd.DataFrame({k: meta[k] for k in ("clip_id", "segment", "augmentation")})
    counts = table.groupby(["clip_id", "augmentation"]).size().to_dict()
    assert counts == {
        ("hush", ""): 1,  # silence: finite features, no noisy copy
        ("surround", ""): 1,
        ("surround", "snr15"): 1,
        ("surround", "snr30"): 1,
        ("voice", ""): 2,  # fold 0 is a test fold here: never augmented
    }
    assert attrs["summary_noisy_copies_left_out"] == 2
    assert attrs["params"]["augment"]["snr_db"] == [15.0, 30.0]
    assert attrs["last_segment"] == "pad" and "reflect" in attrs["choices"]["frame_padding"]
    assert not meta["augmented"][meta["fold"] == 0].any()

    # rows are aligned: each x row is its clip's segment (or noisy copy) recomputed
    settings = FrontEndSettings.from_params(make_params((15, 30)))
    with h5py.File(out) as handle:
        x = handle["x"][:]
    for row in (r for r in rows if r["clip_id"] in {"hush", "surround", "voice"}):
        path, clip = Path(row["path"]), row["clip_id"]
        original = features_of(path, row["audio_duration_s"], settings)
        mine = (meta["clip_id"] == clip) & ~meta["augmented"]
        np.testing.assert_allclose(x[mine][np.argsort(meta["segment"][mine])], original, atol=1e-5)
    audio = decode_audio(clips / "surround.wav")
    segments, n_valid = cut_segments(audio.samples, 16000, np.array([0.0]), 2.0)
    for snr in (15, 30):
        noisy, _ = noisy_copies(segments, n_valid, snr, clip_rng(42, "surround", snr_name(snr)))
        row = np.flatnonzero(
            (meta["clip_id"] == "surround") & (meta["augmentation"] == f"snr{snr}")
        )
        np.testing.assert_allclose(x[row], spectrogram(noisy, settings.spectrogram), atol=1e-5)
    assert np.isfinite(x).all()


@pytest.mark.parametrize("batch_rows", [1, 3, 32])
def test_clips_together_give_the_rows_of_clips_one_at_a_time(tmp_path, monkeypatch, batch_rows):
    """extract_clips computes the spectrograms of several clips' rows in one call; a
    rejected clip in the middle of a batch and flushes at any row count change nothing."""
    paths = [
        write_audio(tmp_path / "a.wav", tone(300, 16000, 4.5), 16000),
        tmp_path / "missing.wav",
        write_audio(tmp_path / "b.flac", tone(900, 22050, 2.4), 22050, "stereo"),
        write_audio(tmp_path / "c.wav", tone(2000, 16000, 3.1), 16000),
    ]
    rows = [index_row(p, duration_s=d) for p, d in zip(paths, (4.5, 2.0, 2.4, 3.1), strict=True)]
    settings = FrontEndSettings.from_params(make_params((20,)))
    jobs = clip_jobs(make_index(rows), "audio", augment=True)
    monkeypatch.setattr(frontend_module, "BATCH_ROWS", batch_rows)
    together = extract_clips(jobs, settings)
    alone = [extract_clips([job], settings)[0] for job in jobs]
    assert [r.clip_id for r in together] == [job.clip_id for job in jobs]
    assert together[1].reject == "file not found" and together[1].x is None
    for mine, reference in zip(together, alone, strict=True):
        assert mine.rows == reference.rows and mine.reject == reference.reject
        if reference.x is not None:
            assert len(mine.x) == len(mine.rows["clip_id"]) > 0
            np.testing.assert_allclose(mine.x, reference.x, atol=1e-5)
    # 4.5 s: 2 segments (0.5 s left < min_segment_s); 2.4 s: 1; 3.1 s: 2; each + 1 copy
    assert [len(r.x) for r in together if r.x is not None] == [2 * 2, 1 * 2, 2 * 2]


def test_workers_compute_the_parents_spectrograms_after_it_used_torch_threads():
    """The spectrogram runs on torch: a parent that used torch's thread pool and then forks
    must not hang its workers, and they must give the parent's numbers."""
    script = """
import numpy as np, torch
from avemotion.audio.spectrogram import SpectrogramConfig, spectrogram
from avemotion.parallel import map_clips
torch.set_num_threads(2)
signals = np.random.default_rng(0).standard_normal((12, 32000)).astype(np.float32)
here = spectrogram(signals, SpectrogramConfig())
def rows(i):
    return spectrogram(signals[i : i + 3], SpectrogramConfig())
there = np.concatenate(list(map_clips(rows, range(0, 12, 3), n_jobs=2)))
print(np.abs(here - there).max() < 1e-5)
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True"]


def test_video_only_run_writes_an_empty_table(tmp_path):
    path = write_audio(tmp_path / "a.wav", tone(300, 16000, 2.0), 16000)
    out, rejects_csv = tmp_path / "audio.h5", tmp_path / "rejects.csv"
    summary = build_audio_features(
        make_index([index_row(path)]), make_params(modalities=["video"]), out, rejects_csv
    )
    assert summary["rows"] == 0 and "base.modalities" in summary["skipped"]
    with h5py.File(out) as handle:
        assert handle["x"].shape == (0, 30, 100, 3)
        assert "no audio" in handle.attrs["skipped"]
    assert read_rejects(rejects_csv) == []


@pytest.mark.parametrize(
    ("audio", "message"),
    [
        ({"nfft": 512}, "audio.nfft=512 is below the frame length 640"),
        ({"n_frames": 90}, "audio.n_frames=90"),
        ({"high_hz": 9000}, "Nyquist"),
    ],
)
def test_bad_audio_params_say_which_key(audio, message):
    """``audio:`` values that cannot work together stop the stage with the key's name,
    before any decoding."""
    tree = params_tree()
    tree["audio"] = audio
    with pytest.raises(BadInputError, match=message) as refused:
        FrontEndSettings.from_params(validate_params(tree))
    assert "\n" not in str(refused.value)


@pytest.mark.parametrize(
    ("audio", "message"),
    [
        ({"n_mel": 30}, "unknown key `audio.n_mel`; did you mean `audio.n_mels`?"),
        ({"n_mels": "thirty"}, "`audio.n_mels` = 'thirty': should be a valid integer"),
    ],
)
def test_unknown_or_mistyped_audio_keys_are_refused_by_the_schema(audio, message):
    """A misspelt ``audio:`` key or a value of the wrong type: one line naming the key."""
    tree = params_tree()
    tree["audio"] = audio
    with pytest.raises(BadInputError, match=re.escape(message)) as refused:
        validate_params(tree)
    assert "\n" not in str(refused.value)


def test_null_params_resolve_to_the_paper_values():
    tree = params_tree()
    tree["audio"] = {"nfft": None, "n_frames": None, "high_hz": None, "sample_rate": 16000.0}
    config = FrontEndSettings.from_params(validate_params(tree)).spectrogram
    assert (config.fft_len, config.n_frames, config.top_hz) == (1024, 100, 8000.0)
    assert config.item_shape == (30, 100, 3) and isinstance(config.sample_rate, int)
