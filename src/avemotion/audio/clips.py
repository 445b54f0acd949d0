"""A clip's audio as the analysis segments both audio systems read.

The spectrogram front-end (:mod:`avemotion.audio.frontend`) and the MFCC features
(:mod:`avemotion.audio.mfcc`) read their clips through :func:`clip_segments`:

1. :func:`decode_audio`: the first audio stream of any container PyAV reads, in one
   forward pass (FLV refuses ``seek``), downmixed to mono as the plain mean of its
   channels and resampled to the target rate by scipy's polyphase anti-aliasing filter.
   Corrupt packets are counted and skipped.
2. :func:`cut_segments`: the 2 s spans of :class:`avemotion.segments.SegmentParams`
   (the same spans as the video branch), zero-padded where a partial last segment or a
   short clip runs out of audio.

The choices these make are listed in :mod:`avemotion.audio.frontend`'s docstring. This module
needs no torch, so the baseline stages start without importing it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import scipy.signal

from avemotion.clip_stage import ClipJob
from avemotion.errors import BadInputError
from avemotion.media import open_container
from avemotion.segments import SegmentParams


def samples_in(seconds: float, sample_rate: int) -> int:
    """A duration in samples, rounded half up (python_speech_features' frame rounding)."""
    return int(np.floor(seconds * sample_rate + 0.5))


def next_power_of_two(n: int) -> int:
    """The smallest power of two >= ``n`` (the usual FFT size for an ``n``-sample frame)."""
    return 1 << int(np.ceil(np.log2(n)))


# --------------------------------------------------------------------------- decoding


@dataclass(frozen=True)
class DecodedAudio:
    """A clip's audio as mono float32 at ``sample_rate``, time 0 at the container's start."""

    samples: np.ndarray
    sample_rate: int
    source_rate: int
    source_channels: int
    corrupt_packets: int

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.sample_rate


def decode_audio(path: str | Path, sample_rate: int = 16000) -> DecodedAudio:
    """Decode the first audio stream of ``path`` to mono float32 at ``sample_rate``.

    One forward pass over the packets (no seek, so FLV works). Each decoded frame is
    turned into mono float32 in numpy (the mean of its channels); the whole signal is
    then resampled in one call by :func:`resample`, an anti-aliasing polyphase filter,
    unless it is already at ``sample_rate``. A packet that fails to decode (or a frame
    whose sample rate differs from the stream's first) is counted and skipped; a demuxer
    error ends the stream where the readable data ends. A stream that starts after the
    container does is preceded by zeros (one that starts before it is trimmed), so that
    sample ``k`` is at time ``k / sample_rate`` of the clip, as the video branch counts.

    Raises :class:`BadInputError` when the file cannot be opened, has no audio stream,
    or yields no samples.
    """
    corrupt = 0
    runs: list[tuple[tuple[str, int], list[np.ndarray]]] = []  # frames of one format in a row
    first_time: float | None = None
    source_rate = 0
    with open_container(path) as container:
        if not container.streams.audio:
            raise BadInputError("no audio stream", path)
        stream = container.streams.audio[0]
        source_channels = int(stream.codec_context.channels or 0)
        container_start = (
            container.start_time / av.time_base if container.start_time is not None else 0.0
        )
        try:
            for packet in container.demux(stream):
                try:
                    frames = packet.decode()
                except (av.FFmpegError, ValueError):
                    corrupt += 1
                    continue
                for frame in frames:
                    if not source_rate:
                        source_rate = frame.sample_rate
                        first_time = None if frame.time is None else float(frame.time)
                    if frame.sample_rate != source_rate:
                        corrupt += 1
                        continue
                    kind = (frame.format.name, frame.layout.nb_channels)
                    if not runs or runs[-1][0] != kind:
                        runs.append((kind, []))
                    runs[-1][1].append(frame_samples(frame, *kind))
        except av.FFmpegError:
            corrupt += 1
    if not runs:
        raise BadInputError(f"audio stream decodes to no samples ({corrupt} corrupt packets)", path)
    mono = [to_mono(np.concatenate(arrays, axis=1), *kind) for kind, arrays in runs]
    samples = resample(np.concatenate(mono), source_rate, sample_rate)
    lead_s = 0.0 if first_time is None else first_time - container_start
    offset = round(lead_s * sample_rate)
    if offset > 0:
        samples = np.concatenate([np.zeros(offset, np.float32), samples])
    elif offset < 0:
        samples = samples[-offset:]
    return DecodedAudio(samples, sample_rate, source_rate, source_channels, corrupt)


#: numpy dtype of each PyAV sample format (planar ones end in "p"), its full scale and
#: zero (u8 is offset binary); float formats are already in [-1, 1].
_SAMPLE_FORMATS = {
    "u8": (np.uint8, 128.0, 128.0),
    "s16": (np.int16, 32768.0, 0.0),
    "s32": (np.int32, 2.0**31, 0.0),
    "s64": (np.int64, 2.0**63, 0.0),
    "flt": (np.float32, 1.0, 0.0),
    "dbl": (np.float64, 1.0, 0.0),
}


def frame_samples(frame: av.AudioFrame, sample_format: str, n_channels: int) -> np.ndarray:
    """A decoded frame's samples as :func:`to_mono` takes them, without PyAV's copy.

    ``(1, n * channels)`` interleaved for a packed format, ``(channels, n)`` for a planar
    one: the layout of ``frame.to_ndarray()``, read from the frame's planes with
    ``numpy.frombuffer`` (a mono frame is not copied at all; the array keeps the frame
    alive).
    """
    dtype = _SAMPLE_FORMATS[sample_format.rstrip("p")][0]
    if not sample_format.endswith("p"):
        return np.frombuffer(frame.planes[0], dtype, frame.samples * n_channels)[None]
    planes = [np.frombuffer(plane, dtype, frame.samples) for plane in frame.planes]
    return planes[0][None] if len(planes) == 1 else np.stack(planes)


def to_mono(array: np.ndarray, sample_format: str, n_channels: int) -> np.ndarray:
    """Decoded samples as mono float32 in [-1, 1]: the mean of the channels.

    ``array`` is laid out as PyAV's ``AudioFrame.to_ndarray`` gives ``sample_format``
    (frames of one format may be concatenated along axis 1): ``(1, n * channels)``
    interleaved for a packed format, ``(channels, n)`` for a planar one (name ending in
    ``p``). Handles unsigned 8-bit, signed 16/32/64-bit integers, float and double.
    Averaging keeps a voice recorded on several channels at its level and never clips.
    """
    n_channels = max(1, n_channels)
    if not sample_format.endswith("p"):
        array = array.reshape(-1, n_channels).T
    _, scale, zero = _SAMPLE_FORMATS[sample_format.rstrip("p")]
    if zero:
        array = np.subtract(array, np.float32(zero), dtype=np.float32)
    if n_channels > 1:
        array = array.mean(axis=0, dtype=np.float32)
    else:
        array = array[0]
    # one pass: scales are powers of two, so multiplying by 1 / scale is exact
    return np.multiply(array, np.float32(1 / scale), dtype=np.float32)


def resample(samples: np.ndarray, source_rate: int, target_rate: int) -> np.ndarray:
    """Resample a mono signal with :func:`scipy.signal.resample_poly` (float32 in and out).

    The polyphase filter is a Kaiser-windowed sinc (scipy's default, beta 5) cut off at
    the lower Nyquist frequency: a tone above the target's Nyquist comes out about 68 dB
    down, and the passband loses 0.3 dB at 7 kHz for 16 kHz output. Any pair of integer
    rates works; the ratio is reduced by the greatest common divisor.
    """
    if source_rate == target_rate:
        return np.ascontiguousarray(samples, dtype=np.float32)
    divisor = math.gcd(int(source_rate), int(target_rate))
    up, down = int(target_rate) // divisor, int(source_rate) // divisor
    return scipy.signal.resample_poly(samples, up, down).astype(np.float32, copy=False)


# --------------------------------------------------------------------------- segments


def cut_segments(
    samples: np.ndarray, sample_rate: int, starts_s: np.ndarray, segment_s: float
) -> tuple[np.ndarray, np.ndarray]:
    """Cut ``(n_segments, segment_len)`` spans from a mono signal, zero-padded past its end.

    Returns the segments (float32) and, per segment, how many of its samples are real
    audio (the rest are padding zeros), shape ``(n_segments,)``.
    """
    segment_len = round(segment_s * sample_rate)
    starts = np.round(np.asarray(starts_s, dtype=np.float64) * sample_rate).astype(np.int64)
    segments = np.empty((len(starts), segment_len), np.float32)
    n_valid = np.clip(len(samples) - starts, 0, segment_len)
    for row, (start, valid) in enumerate(zip(starts, n_valid, strict=True)):  # a few segments
        segments[row, :valid] = samples[start : start + valid]
        segments[row, valid:] = 0
    return segments, n_valid


# --------------------------------------------------------------------------- one clip


@dataclass(frozen=True)
class ClipSegments:
    """One clip's decoded audio cut into the shared segments.

    ``segments`` is (n_segments, segment_len) with zero padding, ``n_valid`` the real
    samples in each, ``starts_s`` the start times (s)."""

    segments: np.ndarray
    n_valid: np.ndarray
    starts_s: np.ndarray
    corrupt_packets: int


def clip_segments(
    job: ClipJob, segments: SegmentParams, sample_rate: int, max_missing_s: float
) -> ClipSegments:
    """Decode ``job``'s audio at ``sample_rate`` and cut it into the shared segments.

    The spectrogram and the MFCC baseline read their clips through this one function.
    ``job.duration_s`` is the audio stream's own length in the index: a clip whose audio
    ends before its video keeps the segments its audio covers. Audio that decodes to
    more than ``max_missing_s`` less than that length is a truncated or corrupt file.
    Raises :class:`BadInputError` with the reason a clip cannot give a segment.
    """
    if not job.has_stream:
        raise BadInputError("no audio stream (the index records has_audio false)", job.path)
    starts = segments.starts(job.duration_s)
    if starts.size == 0:
        raise BadInputError(segments.no_segment_reason(job.duration_s), job.path)
    audio = decode_audio(job.path, sample_rate)
    if job.duration_s - audio.duration_s > max_missing_s:
        raise BadInputError(
            f"truncated or corrupt: {audio.duration_s:.2f} s of audio decode of the "
            f"{job.duration_s:.2f} s the index records for the audio stream "
            f"({audio.corrupt_packets} corrupt "
            f"packets; audio.max_missing_s={max_missing_s:g})",
            job.path,
        )
    signals, n_valid = cut_segments(audio.samples, audio.sample_rate, starts, segments.segment_s)
    return ClipSegments(signals, n_valid, starts, audio.corrupt_packets)
