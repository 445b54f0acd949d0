"""Decoding a clip's video into gray frames with their real times, in one forward pass.

PyAV bundles FFmpeg, so any container FFmpeg reads works (.mp4 .avi .flv .mkv .webm .mov).
Frames are yielded one at a time (a generator): a clip is never held whole in memory.
The decoder runs forward only, because FLV and some other containers refuse ``seek``.

Times come from each frame's presentation timestamp (``frame.time``), relative to the
container's start, so variable-frame-rate clips keep their real timing and the video
branch measures time on the same clock as the audio branch. A frame whose timestamp is
missing gets the previous frame's time plus one nominal frame period. The display matrix
(``frame.rotation``, counter-clockwise degrees, e.g. phone videos shot upright) is applied,
so faces are upright before detection.

A packet that fails to decode is counted and skipped; a demuxer error ends the clip early
(its message is kept), which is how a truncated file shows up.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from avemotion.errors import BadInputError
from avemotion.media import open_container

#: Planar YUV formats whose first plane (luma) is the gray image: no conversion needed.
_LUMA_FORMATS = frozenset(
    {
        "gray",
        "yuv420p",
        "yuvj420p",
        "yuv422p",
        "yuvj422p",
        "yuv444p",
        "yuvj444p",
        "yuv410p",
        "yuv411p",
        "yuvj411p",
        "yuv440p",
        "yuvj440p",
        "nv12",
        "nv21",
        "yuva420p",
    }
)


@dataclass(frozen=True)
class GrayFrame:
    """One decoded frame: ``time_s`` since the container start, ``image`` (H, W) uint8."""

    time_s: float
    image: np.ndarray


@dataclass
class DecodeStats:
    """What decoding a clip met; filled in while :func:`gray_frames` runs."""

    n_frames: int = 0
    n_corrupt_packets: int = 0
    stopped_early: str | None = None
    frame_period_s: float = 1 / 25
    last_time_s: float | None = None


def gray_frames(path: str | Path, stats: DecodeStats | None = None) -> Iterator[GrayFrame]:
    """Yield the first video stream's frames of ``path`` as gray images, in display order.

    Raises :class:`BadInputError` when the file cannot be opened or has no video stream
    (e.g. an audio-only file). ``stats``, when given, is updated as frames come out.
    """
    stats = DecodeStats() if stats is None else stats
    container = open_container(path)
    with container:
        if not container.streams.video:
            raise BadInputError("no video stream (an audio-only file?)", path)
        stream = container.streams.video[0]
        if stream.average_rate:
            stats.frame_period_s = float(1 / stream.average_rate)
        start_s = (
            float(container.start_time) / av.time_base if container.start_time is not None else None
        )
        previous: float | None = None
        packets = container.demux(stream)
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                break
            except (av.FFmpegError, OSError) as error:
                stats.stopped_early = _short(error)
                break
            try:
                frames = packet.decode()
            except (av.FFmpegError, ValueError):
                stats.n_corrupt_packets += 1
                continue
            for frame in frames:
                if frame.time is not None:
                    if start_s is None:
                        start_s = float(frame.time)
                    time_s = float(frame.time) - start_s
                else:
                    time_s = 0.0 if previous is None else previous + stats.frame_period_s
                previous = time_s
                stats.n_frames += 1
                stats.last_time_s = time_s
                yield GrayFrame(time_s, _upright_gray(frame))


def _upright_gray(frame: av.VideoFrame) -> np.ndarray:
    """The frame's luma as (H, W) uint8, rotated by its display matrix."""
    if frame.format.name in _LUMA_FORMATS:
        plane = frame.planes[0]
        image = np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)
        image = image[: frame.height, : frame.width]
    else:
        image = frame.to_ndarray(format="gray")
    quarter_turns = round((frame.rotation or 0) / 90) % 4
    if quarter_turns:
        image = np.rot90(image, quarter_turns)  # counter-clockwise, as frame.rotation
    return np.ascontiguousarray(image)


def _short(error: Exception) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return text[:160]
