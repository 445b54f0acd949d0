"""The audio front-end (paper section 2.2): every clip's voice as 2 s log-mel spectrogram images.

A clip goes through five steps, each a function here:

1. :func:`avemotion.audio_clips.decode_audio`: the first audio stream of any container
   PyAV reads, in one forward pass (FLV refuses ``seek``), downmixed to mono as the
   plain mean of its channels (a 5.1 file keeps the level of the same voice in mono and
   never clips) and resampled to ``audio.sample_rate`` by scipy's polyphase
   anti-aliasing filter. Corrupt packets are counted and skipped.
2. :func:`avemotion.audio_clips.cut_segments`: the 2 s spans of
   :class:`avemotion.segments.SegmentParams` (the same spans as the video branch),
   zero-padded where a partial last segment or a short clip runs out of audio.
3. :func:`noisy_copies` (training-side clips only): white Gaussian noise at each
   ``augment.snr_db``, scaled to each segment's own power.
4. :func:`spectrogram`: 40 ms Hamming frames every 20 ms, power spectrum, 30 mel
   filters, log, then delta and delta-delta: one ``(30, 100, 3)`` image per segment.
5. :func:`build_audio_features`: all clips in parallel into ``audio.h5``, the clips that
   give nothing into the rejects report with the reason. Workers take a few clips at a
   time (:func:`extract_clips`) and compute the spectrograms of their rows together.

Choices the paper leaves open (also recorded in the HDF5 attrs):

- **100 frames from 2 s.** 40 ms frames every 20 ms fit 99 times in 2 s. Each segment is
  extended by one step (20 ms) by mirroring its own last samples, which adds the 100th
  frame while keeping frames 0-98 exactly those of the plain framing. Mirroring keeps
  the last frame at the segment's level; zeros would halve its energy and the delta
  channels would turn that dip into a spurious edge. A segment uses only its own
  samples, so segment ``i`` does not depend on its neighbours.
- **Window of 3 for the deltas.** python_speech_features' ``delta(feat, N=1)``: frames
  ``t-1, t, t+1``, i.e. ``(c[t+1] - c[t-1]) / 2`` with the edge frames repeated;
  delta-delta is the same applied to the delta.
- **Log of silence.** Mel energies are floored at ``audio.log_floor`` (1e-10, below the
  quantisation noise of 16-bit audio in a 40 ms frame) before the log, so digital
  silence gives ``log(1e-10) = -23.03`` and deltas of 0, never ``-inf``.
- **Pre-emphasis.** The paper lists none, so ``audio.preemph`` defaults to 0 (off);
  0.97 gives python_speech_features' default.
- **Noise on silence.** A segment whose samples are all zero has no power to set an SNR
  against; it gets no augmented copy (a copy would be the original again under a false
  ``snrNN`` label). The count is in the summary and the HDF5 attrs.
- **Noise on padding.** Noise is added to the segment's real samples only; the zeros
  that pad a partial segment stay zeros, as in the original row, and the SNR is measured
  over the real samples.
- **Downmix and resampling.** Mono is the mean of all channels (LFE included): simple,
  level-keeping and the same for every layout. Resampling is scipy's ``resample_poly``
  (Kaiser-windowed sinc, alias rejection about 68 dB) on the whole clip in one call;
  PyAV's ``AudioResampler`` filters as well but costs more per frame than decoding.
- **Audio shorter than the clip.** Segments come from the index's ``duration_s``, as in
  the video branch. Audio that ends early is zero-padded when it is at most
  ``audio.max_missing_s`` (0.5 s) short; more is a truncated or corrupt file, rejected.
- **Precision.** The spectrogram is computed in float32 (the stored dtype) on torch's
  CPU kernels (MKL's FFT); on RAVDESS speech its log-mel values are within 2e-5 of a
  float64 python_speech_features computation.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd
import torch
from python_speech_features.base import get_filterbanks

from avemotion.audio_clips import (
    ClipJob,
    clip_jobs,
    clip_segments,
    next_power_of_two,
    samples_in,
)
from avemotion.augment import add_white_noise, clip_rng
from avemotion.errors import BadInputError
from avemotion.h5store import META_COLUMNS, SegmentWriter, clip_rows
from avemotion.parallel import map_clip_batches
from avemotion.params import resolve_n_jobs, section
from avemotion.rejects import Reject, write_rejects
from avemotion.segments import SegmentParams

#: The three image channels of a spectrogram row, in order (last axis of ``/x``).
CHANNELS: tuple[str, ...] = ("logmel", "delta", "delta2")
STAGE = "audio"

FRAME_PADDING = (
    "each segment is extended at its end by mirroring its own last samples (np.pad "
    "mode='reflect') up to frame + (n_frames - 1) * step samples: with 2 s, 40 ms and "
    "20 ms that is one 20 ms step, which turns the 99 frames of plain framing into 100 "
    "and leaves frames 0-98 unchanged"
)
NOISE_RULE = (
    "white Gaussian noise scaled to each segment's own power over its real (unpadded) "
    "samples; an all-zero segment gets no augmented copy"
)


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class SpectrogramConfig:
    """The ``audio:`` params that shape a spectrogram (defaults are the paper's)."""

    sample_rate: int = 16000
    frame_s: float = 0.04
    step_s: float = 0.02
    n_mels: int = 30
    n_frames: int = 100
    nfft: int | None = 1024
    low_hz: float = 0.0
    high_hz: float | None = None
    preemph: float = 0.0
    delta_n: int = 1
    log_floor: float = 1e-10

    @property
    def frame_len(self) -> int:
        """Frame length in samples (rounded half up, as python_speech_features does)."""
        return samples_in(self.frame_s, self.sample_rate)

    @property
    def step_len(self) -> int:
        """Frame step in samples."""
        return samples_in(self.step_s, self.sample_rate)

    @property
    def fft_len(self) -> int:
        """``nfft``, or the next power of two >= the frame length when it is null."""
        if self.nfft is not None:
            return int(self.nfft)
        return next_power_of_two(self.frame_len)

    @property
    def top_hz(self) -> float:
        """Upper edge of the mel filterbank: ``high_hz`` or Nyquist."""
        return float(self.high_hz) if self.high_hz is not None else self.sample_rate / 2

    @property
    def span_len(self) -> int:
        """Samples that ``n_frames`` frames cover: frame + (n_frames - 1) * step."""
        return self.frame_len + (self.n_frames - 1) * self.step_len

    @property
    def item_shape(self) -> tuple[int, int, int]:
        """Shape of one row of ``/x``: (mel bands, frames, channels)."""
        return (self.n_mels, self.n_frames, len(CHANNELS))


@dataclass(frozen=True)
class FrontEndSettings:
    """Everything one clip's worker needs, read once from ``params.yaml``."""

    spectrogram: SpectrogramConfig
    segments: SegmentParams = field(default_factory=SegmentParams)
    snr_db: tuple[float, ...] = ()
    seed: int = 42
    max_missing_s: float = 0.5

    @property
    def segment_len(self) -> int:
        """Samples in one analysis segment at the target rate."""
        return round(self.segments.segment_s * self.spectrogram.sample_rate)

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> FrontEndSettings:
        """Read ``audio:``, the segment keys of ``base:`` and ``augment.snr_db``; check them.

        Every ``audio:`` key is optional (the defaults are the paper's values).
        ``n_frames: null`` means ``round(base.segment_s / step_s)``.
        """
        audio = _typed_audio_params(section(dict(params), "audio"))
        base = section(dict(params), "base")
        augment = dict(params.get("augment") or {})
        max_missing_s = audio.pop("max_missing_s", 0.5)
        segments = SegmentParams.from_params(params)
        if audio.get("n_frames", 100) is None:
            step_s = audio.get("step_s", SpectrogramConfig.step_s)
            audio["n_frames"] = round(segments.segment_s / step_s)
        try:
            snr_db = tuple(float(s) for s in (augment.get("snr_db") or []))
        except (TypeError, ValueError):
            snr = augment.get("snr_db")
            raise BadInputError(f"params augment.snr_db={snr!r} must be numbers") from None
        settings = cls(
            spectrogram=SpectrogramConfig(**audio),
            segments=segments,
            snr_db=snr_db,
            seed=int(base.get("seed", 42)),
            max_missing_s=max_missing_s,
        )
        settings.check()
        return settings

    def check(self) -> None:
        """Raise :class:`BadInputError` naming the param that cannot work."""
        c = self.spectrogram
        problems = []
        if c.sample_rate < 1000:
            problems.append(f"audio.sample_rate={c.sample_rate} must be at least 1000 Hz")
        if not 0 < c.step_s <= c.frame_s:
            problems.append(f"audio.step_s={c.step_s} must be in (0, frame_s={c.frame_s}]")
        if c.n_mels < 1 or c.n_frames < 1 or c.delta_n < 1:
            problems.append("audio.n_mels, audio.n_frames and audio.delta_n must be >= 1")
        if c.fft_len < c.frame_len:
            problems.append(f"audio.nfft={c.nfft} is below the frame length {c.frame_len} samples")
        if not 0 <= c.low_hz < c.top_hz <= c.sample_rate / 2:
            problems.append(
                f"need 0 <= audio.low_hz < audio.high_hz <= Nyquist ({c.sample_rate / 2:g} Hz)"
            )
        if not c.log_floor > 0:
            problems.append(f"audio.log_floor={c.log_floor} must be positive")
        if self.segment_len > c.span_len:
            problems.append(
                f"audio.n_frames={c.n_frames} frames cover {c.span_len / c.sample_rate:.3f} s, "
                f"less than base.segment_s={self.segments.segment_s}; raise n_frames"
            )
        elif c.span_len >= 2 * self.segment_len:
            problems.append(
                f"audio.n_frames={c.n_frames} frames span more than twice base.segment_s"
            )
        if not self.max_missing_s >= 0:
            problems.append(f"audio.max_missing_s={self.max_missing_s} must be >= 0")
        if any(not np.isfinite(s) for s in self.snr_db):
            problems.append(f"augment.snr_db={list(self.snr_db)} must be finite numbers")
        if problems:
            raise BadInputError("; ".join(problems))

    def attrs(self) -> dict[str, Any]:
        """What the HDF5 file records about how it was made."""
        c = self.spectrogram
        return {
            "stage": STAGE,
            "params": {
                "audio": {**asdict(c), "max_missing_s": self.max_missing_s},
                "base": {**asdict(self.segments), "seed": self.seed},
                "augment": {"snr_db": list(self.snr_db)},
            },
            "resolved": {
                "frame_len": c.frame_len,
                "step_len": c.step_len,
                "nfft": c.fft_len,
                "high_hz": c.top_hz,
                "segment_len": self.segment_len,
            },
            "channels": list(CHANNELS),
            "last_segment": self.segments.last_segment,
            "log_floor": c.log_floor,
            # free text goes in one mapping: stored as YAML, so colons and commas survive
            "choices": {
                "layout": "x[row, mel band, frame, channel], channels " + ", ".join(CHANNELS),
                "segment_padding": self.segments.padding_rule(),
                "frame_padding": FRAME_PADDING,
                "downmix": "mean of all channels, then scipy.signal.resample_poly to sample_rate",
                "noise": NOISE_RULE,
            },
        }


_INT_KEYS = {"sample_rate", "n_mels", "n_frames", "delta_n", "nfft"}
_NULLABLE_KEYS = {"nfft", "high_hz", "n_frames"}


def _typed_audio_params(audio: Mapping[str, Any]) -> dict[str, Any]:
    """The ``audio:`` section with YAML's values as the ints and floats the code expects."""
    known = set(SpectrogramConfig.__dataclass_fields__) | {"max_missing_s"}
    unknown = sorted(set(audio) - known)
    if unknown:
        raise BadInputError(f"params audio: unknown keys {unknown}; known: {sorted(known)}")
    typed: dict[str, Any] = {}
    for key, value in audio.items():
        if value is None and key in _NULLABLE_KEYS:
            typed[key] = None
            continue
        try:
            typed[key] = int(value) if key in _INT_KEYS else float(value)
        except (TypeError, ValueError):
            raise BadInputError(f"params audio.{key}={value!r} is not a number") from None
    return typed


# --------------------------------------------------------------------------- spectrogram

#: Segments framed and transformed together: bounds the frame buffer at 4 x 100 x 1024
#: float32 (1.6 MB) however long a clip is, so that it and the spectra stay in cache.
CHUNK_SEGMENTS = 4


@functools.lru_cache(maxsize=16)
def mel_filterbank(
    n_mels: int, nfft: int, sample_rate: int, low_hz: float, high_hz: float
) -> np.ndarray:
    """Triangular mel filters, shape ``(n_mels, nfft // 2 + 1)`` (python_speech_features')."""
    bank = get_filterbanks(n_mels, nfft, sample_rate, low_hz, high_hz)
    bank.setflags(write=False)
    return bank


class _Plan:
    """A config's spectrogram constants and frame buffer, made once per thread.

    The buffer is zeroed once: only a frame's first ``frame_len`` samples are ever
    written, so its zero padding up to ``nfft`` is not rewritten for every clip.
    """

    def __init__(self, config: SpectrogramConfig):
        self.frame_len, self.step_len = config.frame_len, config.step_len
        self.n_frames, self.span_len = config.n_frames, config.span_len
        bank = mel_filterbank(
            config.n_mels, config.fft_len, config.sample_rate, float(config.low_hz), config.top_hz
        )
        weights = np.ascontiguousarray((bank / config.fft_len).T, dtype=np.float32)
        self.mel = torch.from_numpy(weights)  # (nfft // 2 + 1, n_mels), holds the 1 / nfft
        self.window = torch.from_numpy(np.hamming(config.frame_len).astype(np.float32))
        self.frames = torch.zeros(CHUNK_SEGMENTS, config.n_frames, config.fft_len)


_plans = threading.local()


def _plan(config: SpectrogramConfig) -> _Plan:
    """This thread's :class:`_Plan` for ``config`` (a few configs kept at most)."""
    plans = _plans.__dict__.setdefault("by_config", {})
    plan = plans.get(config)
    if plan is None:
        if len(plans) >= 4:
            plans.clear()
        plan = plans[config] = _Plan(config)
    return plan


#: ``(n_segments, n)`` signals, or a list of such blocks to be stacked (one copy fewer).
Signals = np.ndarray | Sequence[np.ndarray]


def extend_segments(segments: Signals, config: SpectrogramConfig) -> np.ndarray:
    """``(n_segments, n)`` signals mirrored at their end to ``config.span_len`` samples.

    This gives a 2 s segment its 100th frame (module docstring, "100 frames from 2 s");
    pre-emphasis follows when ``config.preemph`` is set. ``segments`` may be a list of
    blocks of rows, stacked here. Returns float32 ``(n_segments, span_len)``.
    """
    blocks = [
        np.atleast_2d(np.asarray(block, dtype=np.float32))
        for block in ([segments] if isinstance(segments, np.ndarray) else segments)
    ]
    n_segments, n_samples = sum(len(block) for block in blocks), blocks[0].shape[1]
    extra = _plan(config).span_len - n_samples
    if extra < 0:
        raise ValueError(
            f"{config.n_frames} frames cover {config.span_len} samples, fewer than the "
            f"{n_samples} given"
        )
    if extra < n_samples:  # mirror without the edge sample, as np.pad(mode="reflect")
        span = np.empty((n_segments, n_samples + extra), np.float32)
        np.concatenate(blocks, out=span[:, :n_samples])
        span[:, n_samples:] = span[:, n_samples - 2 : n_samples - 2 - extra : -1]
    else:
        span = np.pad(np.concatenate(blocks), ((0, 0), (0, extra)), mode="reflect")
    if config.preemph:
        span[:, 1:] -= np.float32(config.preemph) * span[:, :-1]
    return span


def log_mel(segments: Signals, config: SpectrogramConfig) -> np.ndarray:
    """Log mel energies ``(n_segments, n_frames, n_mels)`` of ``(n_segments, n)`` signals.

    Hamming frames of :func:`extend_segments`, power spectrum ``|FFT(nfft)|^2 / nfft``,
    the triangular mel filters, then ``log(max(energy, log_floor))``: the numbers of
    python_speech_features' ``fbank(..., winfunc=numpy.hamming)`` followed by
    ``numpy.log``, in float32 (within 2e-5 of float64 on real speech).

    The arithmetic runs on torch's CPU kernels (vectorised windowing, MKL's FFT: about
    twice numpy's and scipy's speed here), :data:`CHUNK_SEGMENTS` segments at a time
    through one reused frame buffer.
    """
    plan = _plan(config)
    span = torch.from_numpy(extend_segments(segments, config))
    frames_of = span.unfold(1, plan.frame_len, plan.step_len)[:, : plan.n_frames]
    energies = torch.empty(len(span), plan.n_frames, config.n_mels)
    for start in range(0, len(span), CHUNK_SEGMENTS):
        chunk = frames_of[start : start + CHUNK_SEGMENTS]
        frames = plan.frames[: len(chunk)]
        torch.mul(chunk, plan.window, out=frames[..., : plan.frame_len])
        parts = torch.view_as_real(torch.fft.rfft(frames)).square_()  # (..., bins, [re, im])
        power = parts[..., 0] + parts[..., 1]
        torch.matmul(power, plan.mel, out=energies[start : start + len(chunk)])
    return energies.clamp_min_(config.log_floor).log_().numpy()


def delta(features: np.ndarray, n: int = 1, axis: int = -1) -> np.ndarray:
    """Regression deltas along ``axis`` over ``2n + 1`` frames, edge frames repeated.

    ``d[t] = sum_k k * (c[t+k] - c[t-k]) / (2 * sum_k k^2)`` for k = 1..n: exactly
    python_speech_features' ``delta(feat, n)``, vectorised over frames (the loop runs
    over the n offsets only). Keeps a float32 input in float32.
    """
    features = np.asarray(features)
    if not np.issubdtype(features.dtype, np.floating):
        features = features.astype(np.float64)
    axis = axis % features.ndim
    length = features.shape[axis]

    def along(start: int, stop: int | None) -> tuple[slice, ...]:
        return (slice(None),) * axis + (slice(start, stop),)

    first = np.repeat(features[along(0, 1)], n, axis=axis)
    last = np.repeat(features[along(length - 1, None)], n, axis=axis)
    padded = np.concatenate([first, features, last], axis=axis)
    out = np.zeros_like(features)
    for k in range(1, n + 1):
        out += k * (padded[along(n + k, n + k + length)] - padded[along(n - k, n - k + length)])
    out /= 2 * sum(k * k for k in range(1, n + 1))
    return out


def spectrogram(segments: Signals, config: SpectrogramConfig) -> np.ndarray:
    """The CNN's input images: ``(n_segments, n_mels, n_frames, 3)`` float32.

    Channels are log-mel, its delta and its delta-delta (:data:`CHANNELS`), each
    computed from the segment's own samples only.
    """
    logmel = log_mel(segments, config)  # (n, frames, mels): deltas run along rows
    first = delta(logmel, config.delta_n, axis=1)
    images = np.empty((len(logmel), *config.item_shape), np.float32)
    for channel, values in enumerate((logmel, first, delta(first, config.delta_n, axis=1))):
        images[..., channel] = np.swapaxes(values, 1, 2)
    return images


# --------------------------------------------------------------------------- augmentation


def snr_name(snr_db: float) -> str:
    """The ``augmentation`` value of a noisy copy: ``snr15``, ``snr2.5``."""
    return f"snr{snr_db:g}"


def noisy_copies(
    segments: np.ndarray, n_valid: np.ndarray, snr_db: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Each segment with white Gaussian noise at ``snr_db`` over its real samples.

    Returns the noisy segments (same shape, float32) and a boolean mask of the segments
    that could be augmented: an all-zero segment has no power to set an SNR against and
    is left out (its row in the result is a copy of the input). The loop runs over the
    few segments of a clip; each segment's noise is drawn in one call.
    """
    noisy = np.array(segments, dtype=np.float32, copy=True)
    augmented = np.zeros(len(noisy), dtype=bool)
    for i, valid in enumerate(np.asarray(n_valid)):
        real = noisy[i, :valid]
        if valid == 0 or not np.any(real):
            continue
        noisy[i, :valid] = add_white_noise(real, snr_db, rng)
        augmented[i] = True
    return noisy, augmented


# --------------------------------------------------------------------------- one clip


@dataclass
class ClipFeatures:
    """A worker's answer: the rows to append, or the reason the clip gives none."""

    clip_id: str
    path: str
    x: np.ndarray | None = None
    rows: dict[str, list[Any]] = field(default_factory=dict)
    reject: str | None = None
    corrupt_packets: int = 0
    silent_segments: int = 0
    noisy_copies_left_out: int = 0


#: Clips a worker takes at a time (see :func:`avemotion.parallel.map_clip_batches`).
CLIPS_PER_TASK = 8
#: Signal rows a worker holds before it computes their spectrograms together: a few
#: clips' worth (a clip gives 2-3 rows, five times that with augmentation), and a bound on
#: memory (128 KB per row) however long the clips are.
BATCH_ROWS = 32


def extract_clips(jobs: Sequence[ClipJob], settings: FrontEndSettings) -> list[ClipFeatures]:
    """Decode, segment, augment and turn clips into spectrogram rows, one result per job.

    Each clip is decoded and cut in turn; the spectrograms of the rows of consecutive
    clips are then computed in one call once :data:`BATCH_ROWS` are waiting (and at the
    end). A clip's rows come original segments first, then one block per
    ``augment.snr_db`` value. A clip that gives no row comes back with ``reject`` set to
    the reason.
    """
    results: list[ClipFeatures] = []
    waiting: list[tuple[ClipFeatures, list[np.ndarray]]] = []
    n_waiting = 0
    for job in jobs:
        result, blocks = _clip_signals(job, settings)
        results.append(result)
        if blocks is not None:
            waiting.append((result, blocks))
            n_waiting += sum(len(block) for block in blocks)
        if n_waiting >= BATCH_ROWS:
            _add_spectrograms(waiting, settings.spectrogram)
            waiting, n_waiting = [], 0
    _add_spectrograms(waiting, settings.spectrogram)
    return results


def _clip_signals(
    job: ClipJob, settings: FrontEndSettings
) -> tuple[ClipFeatures, list[np.ndarray] | None]:
    """One clip's result with its meta rows and counts, and its rows' signals in blocks
    (None for a rejected clip)."""
    result = ClipFeatures(job.clip_id, job.path)
    try:
        clip = clip_segments(
            job, settings.segments, settings.spectrogram.sample_rate, settings.max_missing_s
        )
    except BadInputError as error:
        result.reject = error.reason
        return result, None
    result.corrupt_packets = clip.corrupt_packets
    segments, n_valid, starts = clip.segments, clip.n_valid, clip.starts_s
    result.silent_segments = int(np.count_nonzero(~np.any(segments, axis=1)))
    blocks, kept, names = [segments], [np.ones(len(segments), dtype=bool)], [""]
    if job.augment:
        for snr in settings.snr_db:
            rng = clip_rng(settings.seed, job.clip_id, snr_name(snr))
            noisy, augmented = noisy_copies(segments, n_valid, snr, rng)
            blocks.append(noisy[augmented])
            kept.append(augmented)
            names.append(snr_name(snr))
            result.noisy_copies_left_out += int((~augmented).sum())
    result.rows = _rows(job, starts, kept, names)
    return result, blocks


def _add_spectrograms(
    waiting: list[tuple[ClipFeatures, list[np.ndarray]]], config: SpectrogramConfig
) -> None:
    """Set each waiting result's ``x`` from one :func:`spectrogram` call over all rows."""
    if not waiting:
        return
    images = spectrogram([block for _, blocks in waiting for block in blocks], config)
    start = 0
    for result, blocks in waiting:
        stop = start + sum(len(block) for block in blocks)
        result.x = images[start:stop]
        start = stop


def _rows(
    job: ClipJob, starts: np.ndarray, kept: list[np.ndarray], names: list[str]
) -> dict[str, list[Any]]:
    """Meta columns of a clip's rows (:func:`extract_clips`), in the same order as ``x``."""
    segment = np.concatenate([np.flatnonzero(mask) for mask in kept])
    augmentation = [name for name, mask in zip(names, kept, strict=True) for _ in range(mask.sum())]
    return clip_rows(job, segment, starts[segment], augmentation)


# --------------------------------------------------------------------------- the stage


def build_audio_features(
    index: pd.DataFrame,
    params: Mapping[str, Any],
    out_path: str | Path,
    rejects_path: str | Path,
    n_jobs: int | None = None,
) -> dict[str, Any]:
    """The audio stage: spectrogram rows for every clip of ``index`` into ``out_path``.

    Clips are processed on ``n_jobs`` processes (default ``base.n_jobs``) and written in
    index order as they finish, a few hundred rows per append. Every clip that gives no
    row is in ``rejects_path`` with the reason. When ``base.modalities`` has no
    ``audio``, an empty table with the same layout is written (attr ``skipped`` says
    why). Returns a summary of counts, also stored as the file's ``summary_*`` attrs.
    """
    settings = FrontEndSettings.from_params(params)
    base = section(dict(params), "base")
    attrs = settings.attrs()
    summary: dict[str, Any] = {
        "clips": len(index),
        "clips_written": 0,
        "rejected": 0,
        "rows": 0,
        "original_rows": 0,
        "augmented_rows": 0,
        "corrupt_packets": 0,
        "silent_segments": 0,
        "noisy_copies_left_out": 0,
        "skipped": "",
    }
    modalities = list(base.get("modalities") or ["audio", "video"])
    if "audio" not in modalities:
        summary["skipped"] = f"base.modalities is {modalities}: no audio features computed"
        attrs["skipped"] = summary["skipped"]
        with SegmentWriter(out_path, settings.spectrogram.item_shape, np.float32, attrs):
            pass
        write_rejects(rejects_path, [])
        _store_summary(out_path, summary)
        return summary

    jobs = clip_jobs(index, augment=bool(settings.snr_db))
    worker = functools.partial(extract_clips, settings=settings)
    n_jobs = resolve_n_jobs(base.get("n_jobs") if n_jobs is None else n_jobs)
    rejects: list[Reject] = []
    with SegmentWriter(out_path, settings.spectrogram.item_shape, np.float32, attrs) as writer:
        batch = _WriteBatch(writer)
        results = map_clip_batches(worker, jobs, CLIPS_PER_TASK, n_jobs, desc="spectrograms")
        for result in results:
            summary["corrupt_packets"] += result.corrupt_packets
            if result.reject is not None:
                rejects.append(Reject(result.path, result.clip_id, STAGE, result.reject))
                continue
            assert result.x is not None and set(result.rows) == set(META_COLUMNS)
            batch.add(result.x, result.rows)
            n_augmented = int(np.sum(result.rows["augmented"]))
            summary["clips_written"] += 1
            summary["rows"] += len(result.x)
            summary["augmented_rows"] += n_augmented
            summary["original_rows"] += len(result.x) - n_augmented
            summary["silent_segments"] += result.silent_segments
            summary["noisy_copies_left_out"] += result.noisy_copies_left_out
        batch.flush()
    summary["rejected"] = len(rejects)
    write_rejects(rejects_path, rejects)
    _store_summary(out_path, summary)
    return summary


class _WriteBatch:
    """Clips' rows waiting to be appended together (at most ``max_rows``, ~9 MB).

    h5py costs a few milliseconds per append call (eleven datasets to resize), more than
    a clip's spectrograms take to compute; appending a few hundred rows at a time pays
    it once per batch, in the same order, with bounded memory.
    """

    def __init__(self, writer: SegmentWriter, max_rows: int = 256):
        self.writer, self.max_rows = writer, max_rows
        self.x: list[np.ndarray] = []
        self.rows: dict[str, list[Any]] = {column: [] for column in META_COLUMNS}

    def add(self, x: np.ndarray, rows: Mapping[str, list[Any]]) -> None:
        self.x.append(x)
        for column in META_COLUMNS:
            self.rows[column].extend(rows[column])
        if len(self.rows["clip_id"]) >= self.max_rows:
            self.flush()

    def flush(self) -> None:
        if self.x:
            self.writer.append(np.concatenate(self.x), self.rows)
        self.x = []
        self.rows = {column: [] for column in META_COLUMNS}


def _store_summary(path: str | Path, summary: Mapping[str, Any]) -> None:
    """Add the run's counts to the finished file (known only once every clip is done)."""
    with h5py.File(path, "a") as handle:
        for key, value in summary.items():
            if value != "":
                handle.attrs[f"summary_{key}"] = value


def summarise(summary: Mapping[str, Any]) -> str:
    """The stage's one-paragraph report."""
    if summary["skipped"]:
        return f"audio: {summary['skipped']}; wrote an empty table"
    return (
        f"audio: {summary['clips_written']} of {summary['clips']} clips -> {summary['rows']} "
        f"rows ({summary['original_rows']} original, {summary['augmented_rows']} augmented); "
        f"{summary['rejected']} rejected; {summary['corrupt_packets']} corrupt packets skipped; "
        f"{summary['silent_segments']} silent segments "
        f"({summary['noisy_copies_left_out']} noisy copies left out)"
    )
