"""The spectrogram of the audio branch (paper section 2.2), signal code only.

:func:`spectrogram` turns 2 s segments of mono samples into ``(30, 100, 3)`` images:
40 ms Hamming frames every 20 ms, power spectrum, 30 mel filters, log, then delta and
delta-delta. :class:`SpectrogramConfig` holds the ``audio:`` values that shape it.

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
- **Precision.** The spectrogram is computed in float32 (the stored dtype) on torch's
  CPU kernels (MKL's FFT); on RAVDESS speech its log-mel values are within 2e-5 of a
  float64 python_speech_features computation.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from python_speech_features.base import get_filterbanks

from avemotion.audio.clips import next_power_of_two, samples_in

#: The three image channels of a spectrogram row, in order (last axis of ``/x``).
CHANNELS: tuple[str, ...] = ("logmel", "delta", "delta2")

FRAME_PADDING = (
    "each segment is extended at its end by mirroring its own last samples (np.pad "
    "mode='reflect') up to frame + (n_frames - 1) * step samples: with 2 s, 40 ms and "
    "20 ms that is one 20 ms step, which turns the 99 frames of plain framing into 100 "
    "and leaves frames 0-98 unchanged"
)


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
