"""media.probe: what a file holds, each stream's own length, and clear reasons for bad files."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
from conftest import shared

from avemotion.errors import BadInputError
from avemotion.media import probe

FPS = 25
SAMPLE_RATE = 16000
AAC_FRAME_S = 1024 / SAMPLE_RATE


def write_av_mp4(path: Path, video_s: float = 3.0, audio_s: float = 2.3) -> Path:
    """H.264 64x64 gray frames at 25 fps for ``video_s`` and an AAC 440 Hz 16 kHz mono
    sine for ``audio_s``: a recording whose audio stops before its picture. The header
    goes first (faststart), so that a file cut short still opens."""
    options = {"movflags": "faststart"}
    with av.open(str(path), mode="w", format="mp4", options=options) as container:
        video = container.add_stream("libx264", rate=FPS)
        video.width, video.height, video.pix_fmt = 64, 64, "yuv420p"
        sound = container.add_stream("aac", rate=SAMPLE_RATE, layout="mono")
        gray = np.full((64, 64, 3), 128, dtype=np.uint8)
        for index in range(round(video_s * FPS)):
            picture = av.VideoFrame.from_ndarray(gray, format="rgb24")
            picture.pts = index
            container.mux(video.encode(picture))
        container.mux(video.encode())
        t = np.arange(round(audio_s * SAMPLE_RATE)) / SAMPLE_RATE
        tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
        for start in range(0, len(tone), 1024):
            block = av.AudioFrame.from_ndarray(
                tone[None, start : start + 1024], format="flt", layout="mono"
            )
            block.sample_rate = SAMPLE_RATE
            block.pts = start
            container.mux(sound.encode(block))
        container.mux(sound.encode())
    return path


def test_audio_ending_before_the_video_is_kept_with_each_streams_length(tmp_path):
    info = probe(write_av_mp4(tmp_path / "short_audio.mp4"))  # not rejected as truncated
    assert info.has_audio and info.has_video
    assert info.video_duration_s == pytest.approx(3.0, abs=1 / FPS)
    assert info.audio_duration_s == pytest.approx(2.3, abs=AAC_FRAME_S)
    assert info.duration_s == pytest.approx(3.0, abs=1 / FPS)
    assert info.duration_s == max(info.audio_duration_s, info.video_duration_s)


def test_video_ending_before_the_audio(tmp_path):
    info = probe(write_av_mp4(tmp_path / "short_video.mp4", video_s=1.2, audio_s=2.0))
    assert info.video_duration_s == pytest.approx(1.2, abs=1 / FPS)
    assert info.audio_duration_s == pytest.approx(2.0, abs=AAC_FRAME_S)
    assert info.duration_s == pytest.approx(2.0, abs=AAC_FRAME_S)


def test_truncated_file_is_still_rejected(tmp_path):
    whole = write_av_mp4(tmp_path / "whole.mp4").read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(BadInputError, match=r"truncated: media data ends at"):
        probe(cut)


@pytest.mark.parametrize("name", ["01-01-01-01-01-01-01.mp4", "02-01-04-01-02-01-01.mp4"])
def test_real_audio_visual_clip_has_both_stream_lengths(name):
    info = probe(shared(f"ravdess-av-actor01/{name}"))
    assert 3.0 < info.duration_s < 3.6
    for length in (info.audio_duration_s, info.video_duration_s):
        assert 0 < length <= info.duration_s
        assert length == pytest.approx(info.duration_s, abs=0.2)


def test_real_flv_and_audio_only_files():
    flv = probe(shared("crema-d-mini/1001_DFA_ANG_XX.flv"))
    assert flv.video_duration_s == pytest.approx(flv.duration_s, abs=0.2)
    assert flv.audio_duration_s == pytest.approx(flv.duration_s, abs=0.2)
    mp3 = probe(shared("crema-d-mini/1002_DFA_SAD_XX.mp3"))
    assert not mp3.has_video and mp3.video_duration_s == 0.0
    assert mp3.audio_duration_s == mp3.duration_s > 1.5


def test_broken_link_names_its_target(tmp_path):
    link = tmp_path / "clip.mp4"
    link.symlink_to(tmp_path / "gone.mp4")
    with pytest.raises(BadInputError, match=r"clip.mp4: broken symbolic link \(to .*gone.mp4\)"):
        probe(link)
