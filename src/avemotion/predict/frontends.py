"""One file through the pipeline's front-ends, as the training stages saw their clips.

:func:`extract_clip` runs in a worker process (``--n-jobs``) and calls the very
functions the stages call: :func:`avemotion.media.probe` for the streams' lengths,
:func:`avemotion.audio.clips.clip_segments` and :func:`avemotion.audio.spectrogram.spectrogram`
for the audio rows, :func:`avemotion.audio.functionals.functionals` for openSMILE's,
and :func:`avemotion.video.frontend.clip_keyframes` for the keyframes. What a stream
cannot give (no stream, silence, no face, too short) becomes that stream's reason, and
the clip goes on with the other one; nothing here raises for a bad file.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import av
import numpy as np

from avemotion.audio.clips import clip_segments
from avemotion.audio.frontend import FrontEndSettings
from avemotion.audio.functionals import FEATURE_SETS, functionals
from avemotion.audio.spectrogram import spectrogram
from avemotion.clip_stage import ClipJob
from avemotion.errors import BadInputError
from avemotion.media import probe
from avemotion.params.schema import VideoParams
from avemotion.segments import SegmentParams
from avemotion.video.frontend import clip_keyframes


@dataclass(frozen=True)
class FrontEnds:
    """What the workers need: the streams to read, the segments, both front-ends' settings
    and the functionals sets the fusion reads (empty when it reads none)."""

    modalities: tuple[str, ...]
    segments: SegmentParams
    audio: FrontEndSettings
    video: VideoParams
    functional_sets: tuple[str, ...]


@dataclass
class StreamRows:
    """One stream's rows of a clip: ``x`` (audio: (n, n_mels, n_frames, 3) float32
    spectrograms; video: (n, N, K, K) uint8 keyframes), the segment numbers and start
    times; ``functionals[set]`` (n, dim) float32 for audio when the fusion reads them."""

    x: np.ndarray
    segments: np.ndarray
    starts_s: np.ndarray
    functionals: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class ClipFeatures:
    """A file after the front-ends: ``streams[modality]`` for each usable stream,
    ``reasons[modality]`` why a wanted stream is not usable, ``error`` when the file
    itself cannot be read, and where the functionals failed, why."""

    file: str
    duration_s: float | None = None
    streams: dict[str, StreamRows] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)
    functionals_error: str | None = None
    error: str | None = None


def extract_clip(file: str, frontends: FrontEnds) -> ClipFeatures:
    """Run ``file`` through the front-ends (see the module docstring); never raises for
    a bad file: the reason is in the result."""
    result = ClipFeatures(file)
    try:
        info = probe(file)
    except BadInputError as error:
        result.error = error.reason
        return result
    except Exception as error:  # a file PyAV chokes on in a way we did not foresee
        result.error = f"unreadable ({type(error).__name__}: {str(error)[:160]})"
        return result
    result.duration_s = info.duration_s
    for modality in frontends.modalities:
        has = info.has_audio if modality == "audio" else info.has_video
        if not has:
            result.reasons[modality] = f"no {modality} stream"
            continue
        length = info.audio_duration_s if modality == "audio" else info.video_duration_s
        try:
            if modality == "audio":
                result.streams["audio"] = _audio_rows(file, length or info.duration_s, frontends)
            else:
                result.streams["video"] = _video_rows(file, length or info.duration_s, frontends)
        except BadInputError as error:
            result.reasons[modality] = error.reason
        except (av.FFmpegError, ValueError, OSError) as error:
            result.reasons[modality] = f"{modality} decoding failed ({str(error).strip()[:160]})"
    audio = result.streams.get("audio")
    if audio is not None:
        result.functionals_error = functionals_problem(audio)
    return result


def _job(file: str, duration_s: float) -> ClipJob:
    """The :class:`ClipJob` the shared clip functions take, for an unlabelled file."""
    return ClipJob(file, file, duration_s, True, False, "", "", "", -1, -1)


def _audio_rows(file: str, duration_s: float, frontends: FrontEnds) -> StreamRows:
    settings = frontends.audio
    clip = clip_segments(
        _job(file, duration_s),
        frontends.segments,
        settings.spectrogram.sample_rate,
        settings.max_missing_s,
    )
    if not np.any(clip.segments):
        raise BadInputError("the audio track is silent (all samples zero)", file)
    rows = StreamRows(
        spectrogram(clip.segments, settings.spectrogram),
        np.arange(len(clip.segments)),
        clip.starts_s,
    )
    for name in frontends.functional_sets:
        rows.functionals[name] = np.stack(
            [
                functionals(signal[:n], settings.spectrogram.sample_rate, name)
                for signal, n in zip(clip.segments, clip.n_valid, strict=True)
            ]
        )
    return rows


def functionals_problem(rows: StreamRows) -> str | None:
    """Why the fusion cannot read this clip's functionals (openSMILE gives NaN for a
    segment with too little real audio), or None."""
    for name, values in rows.functionals.items():
        bad = ~np.isfinite(values).all(axis=1)
        if bad.any():
            return (
                f"openSMILE {FEATURE_SETS[name]} functionals are not finite for segment "
                f"{int(np.flatnonzero(bad)[0])} (too little real audio)"
            )
    return None


def _video_rows(file: str, duration_s: float, frontends: FrontEnds) -> StreamRows:
    clip = clip_keyframes(file, duration_s, frontends.video, frontends.segments)
    return StreamRows(clip.keyframes, clip.segments.astype(np.int64), clip.starts_s)
