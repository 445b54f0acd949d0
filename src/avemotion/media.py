"""Opening media files with PyAV: what a file holds, with one-line errors for bad files.

PyAV bundles FFmpeg, so every container FFmpeg reads (``.mp4 .avi .flv .mkv .webm .mov
.wav .flac .mp3 .ogg``) works without a system FFmpeg.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import av

from avemotion.errors import BadInputError

#: File name endings the dataset adapters consider media.
VIDEO_EXTENSIONS = (".mp4", ".avi", ".flv", ".mkv", ".webm", ".mov", ".mpg", ".m4v")
AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg", ".m4a", ".opus")
MEDIA_EXTENSIONS = VIDEO_EXTENSIONS + AUDIO_EXTENSIONS


@dataclass(frozen=True)
class MediaInfo:
    """What a media file holds.

    ``duration_s`` is where the media data really ends (the latest packet end of any
    stream); ``audio_duration_s`` and ``video_duration_s`` are where each stream's own
    packets end, 0.0 for a stream the file lacks. Real recordings often stop one stream
    before the other, so a stream is judged against its own length, not the clip's.
    """

    path: str
    duration_s: float
    has_video: bool
    has_audio: bool
    audio_duration_s: float = 0.0
    video_duration_s: float = 0.0
    fps: float | None = None
    width: int | None = None
    height: int | None = None
    sample_rate: int | None = None
    channels: int | None = None


def open_container(path: str | Path) -> av.container.InputContainer:
    """Open a file for reading, raising :class:`BadInputError` with the reason when it cannot."""
    path = Path(path)
    if path.is_symlink() and not path.exists():
        raise BadInputError(f"broken symbolic link (to {os.readlink(path)})", path)
    if not path.is_file():
        raise BadInputError("file not found", path)
    if path.stat().st_size == 0:
        raise BadInputError("zero bytes", path)
    try:
        return av.open(str(path), mode="r")
    except (av.FFmpegError, UnicodeDecodeError, OSError) as error:
        raise BadInputError(f"unreadable container ({_short(error)})", path) from None


def probe(path: str | Path, truncation_tolerance: float = 0.1) -> MediaInfo:
    """Return what ``path`` holds, reading every packet once (cheap: nothing is decoded
    beyond each stream's first frame).

    A stream counts only if its first frame decodes. ``duration_s`` is where the media
    data really ends, which for a cut-off file is earlier than its header says: a file
    whose data ends more than ``truncation_tolerance`` (a fraction) before the declared
    duration is reported as truncated. That check is for the file as a whole: a stream
    that ends before the other (audio stopping 0.7 s before the picture) is no reason to
    reject the file, and its own end is reported as ``audio_duration_s`` or
    ``video_duration_s`` from the same pass over the packets.

    Raises :class:`BadInputError` for a missing, empty, unreadable or truncated file and
    for a file with no decodable audio or video stream.
    """
    with open_container(path) as container:
        video = container.streams.video[0] if container.streams.video else None
        audio = container.streams.audio[0] if container.streams.audio else None
        streams = [s for s in (video, audio) if s is not None]
        if not streams:
            raise BadInputError("no audio or video stream", path)
        decodes, ends_s = _scan_packets(container, streams)
        has_video = video is not None and video.index in decodes
        has_audio = audio is not None and audio.index in decodes
        if not (has_video or has_audio):
            raise BadInputError("no decodable audio or video stream", path)
        declared_s = float(container.duration) / av.time_base if container.duration else 0.0
        duration_s = max(ends_s.values(), default=0.0) or declared_s
        if duration_s <= 0:
            raise BadInputError("zero duration", path)
        if declared_s and duration_s < declared_s * (1 - truncation_tolerance):
            raise BadInputError(
                f"truncated: media data ends at {duration_s:.2f} s of the {declared_s:.2f} s "
                "its header declares",
                path,
            )
        return MediaInfo(
            path=str(path),
            duration_s=duration_s,
            has_video=has_video,
            has_audio=has_audio,
            audio_duration_s=_stream_end_s(audio, ends_s, duration_s) if has_audio else 0.0,
            video_duration_s=_stream_end_s(video, ends_s, duration_s) if has_video else 0.0,
            fps=float(video.average_rate) if has_video and video.average_rate else None,
            width=video.codec_context.width if has_video else None,
            height=video.codec_context.height if has_video else None,
            sample_rate=audio.codec_context.sample_rate if has_audio else None,
            channels=audio.codec_context.channels if has_audio else None,
        )


def _scan_packets(
    container: av.container.InputContainer, streams: list[av.stream.Stream]
) -> tuple[set[int], dict[int, float]]:
    """One forward pass over the packets (no seek: FLV containers refuse it).

    Returns the indices of the streams whose first frame decodes, and per stream index
    the time (s) at which its last timed packet ends (streams without a timed packet are
    absent). A corrupt packet is skipped; a demuxer error ends the scan where the
    readable data ends.
    """
    decoded: set[int] = set()
    ends_s: dict[int, float] = {}
    try:
        for packet in container.demux(streams):
            if packet.pts is not None and packet.time_base is not None:
                end_s = float((packet.pts + (packet.duration or 0)) * packet.time_base)
                index = packet.stream.index
                ends_s[index] = max(ends_s.get(index, end_s), end_s)
            if packet.stream.index in decoded or packet.size == 0:
                continue
            try:
                if packet.decode():
                    decoded.add(packet.stream.index)
            except (av.FFmpegError, ValueError):
                continue
    except av.FFmpegError:
        pass
    return decoded, ends_s


def _stream_end_s(stream: av.stream.Stream, ends_s: dict[int, float], duration_s: float) -> float:
    """Where ``stream``'s packets end; for a stream whose packets carry no time stamps,
    its header's duration (at most the file's), else the file's."""
    if stream.index in ends_s:
        return ends_s[stream.index]
    if stream.duration and stream.time_base:
        return min(float(stream.duration * stream.time_base), duration_s)
    return duration_s


def _short(error: Exception) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return text[:160]
