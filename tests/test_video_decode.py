"""Decoding: real frame times, display rotation, FLV in one pass, files without video."""

from __future__ import annotations

import fractions
from pathlib import Path

import av
import numpy as np
import pytest

from avemotion.errors import BadInputError
from avemotion.video.decode import DecodeStats, gray_frames

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
FLV = SHARED / "crema-d-mini" / "1001_DFA_ANG_XX.flv"


def _write(path: Path, images, rotation=None, pts_ms=None) -> Path:
    """A small H.264 file; with ``pts_ms`` the frames get those (variable) timestamps."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height = images[0].shape[1], images[0].shape[0]
        stream.pix_fmt = "yuv420p"
        stream.options = {"preset": "ultrafast"}
        if pts_ms is not None:
            stream.codec_context.time_base = stream.time_base = fractions.Fraction(1, 1000)
        if rotation is not None:
            stream.set_display_rotation(rotation)
        for i, image in enumerate(images):
            frame = av.VideoFrame.from_ndarray(image, format="gray")
            if pts_ms is not None:
                frame.pts, frame.time_base = pts_ms[i], fractions.Fraction(1, 1000)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def _centroid(image: np.ndarray) -> np.ndarray:
    rows, cols = np.nonzero(image > 128)
    return np.array([rows.mean(), cols.mean()])


def test_variable_frame_rate_times_come_from_the_timestamps(tmp_path):
    pts = [0, 40, 80, 200, 240, 500, 533]
    path = _write(tmp_path / "vfr.mkv", [np.zeros((48, 64), np.uint8)] * len(pts), pts_ms=pts)
    stats = DecodeStats()
    times = [frame.time_s for frame in gray_frames(path, stats)]
    assert times == pytest.approx([p / 1000 for p in pts], abs=1e-6)
    assert stats.n_frames == len(pts) and stats.n_corrupt_packets == 0


@pytest.mark.parametrize("rotation", [90, -90, 180])
def test_display_rotation_is_applied(tmp_path, rotation):
    image = np.zeros((48, 64), np.uint8)
    image[4:16, 4:20] = 255  # a block near the top-left corner
    path = _write(tmp_path / "rotated.mp4", [image] * 3, rotation=rotation)
    frame = next(gray_frames(path))
    expected = np.rot90(image, rotation // 90)  # counter-clockwise, like frame.rotation
    assert frame.image.shape == expected.shape
    assert np.allclose(_centroid(frame.image), _centroid(expected), atol=1.0)


def test_an_audio_only_file_has_no_video_stream(tmp_path):
    path = tmp_path / "voice.wav"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("pcm_s16le", rate=16000)
        frame = av.AudioFrame.from_ndarray(
            np.zeros((1, 1600), np.int16), format="s16", layout="mono"
        )
        frame.sample_rate = 16000
        for packet in [*stream.encode(frame), *stream.encode()]:
            out.mux(packet)
    with pytest.raises(BadInputError, match="no video stream"):
        next(gray_frames(path))


def test_a_truncated_file_yields_its_frames_and_counts_the_broken_packet(tmp_path):
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (240, 320), dtype=np.uint8) for _ in range(75)]
    whole = tmp_path / "whole.mp4"
    with av.open(str(whole), "w", options={"movflags": "faststart"}) as out:  # index first
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        for image in images:
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="gray")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    cut = tmp_path / "cut.mp4"
    data = whole.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    stats = DecodeStats()
    frames = list(gray_frames(cut, stats))
    assert 10 < len(frames) < 75 and stats.n_frames == len(frames)
    assert stats.n_corrupt_packets >= 1 or stats.stopped_early is not None
    assert stats.last_time_s < 2.5


@pytest.mark.skipif(not FLV.is_file(), reason="shared CREMA-D clips not present")
def test_flv_decodes_forward_with_real_times():
    frames = list(gray_frames(FLV))
    times = np.array([f.time_s for f in frames])
    assert len(frames) > 50
    assert frames[0].image.shape == (360, 480) and frames[0].image.dtype == np.uint8
    assert np.all(np.diff(times) > 0)
    assert 0 <= times[0] < 0.05  # the FLV's first frame is stamped 27 ms after the start
