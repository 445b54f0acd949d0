"""The audio front-end (paper section 2.2): every clip's voice as 2 s log-mel spectrogram images.

A clip goes through five steps:

1. :func:`avemotion.audio.clips.decode_audio`: the first audio stream of any container
   PyAV reads, in one forward pass (FLV refuses ``seek``), downmixed to mono as the
   plain mean of its channels (a 5.1 file keeps the level of the same voice in mono and
   never clips) and resampled to ``audio.sample_rate`` by scipy's polyphase
   anti-aliasing filter. Corrupt packets are counted and skipped.
2. :func:`avemotion.audio.clips.cut_segments`: the 2 s spans of
   :class:`avemotion.segments.SegmentParams` (the same spans as the video branch),
   zero-padded where a partial last segment or a short clip runs out of audio.
3. :func:`noisy_copies` (training-side clips only): white Gaussian noise at each
   ``augment.snr_db``, scaled to each segment's own power.
4. :func:`avemotion.audio.spectrogram.spectrogram`: one ``(30, 100, 3)`` image per
   segment.
5. :func:`build_audio_features`: all clips in parallel into ``audio.h5``
   (:func:`avemotion.clip_stage.run_clip_stage`). Workers take a few clips at a time
   (:func:`extract_clips`) and compute the spectrograms of their rows together.

Choices the paper leaves open (also recorded in the HDF5 attrs):

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
- **Audio shorter than the clip.** Segments come from the audio stream's own length in
  the index (``audio_duration_s``): a clip whose audio ends before its video keeps the
  segments its audio covers. Audio that decodes to less than that length is
  zero-padded when it is at most ``audio.max_missing_s`` (0.5 s) short; more is a
  truncated or corrupt file, rejected.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from avemotion.audio.clips import clip_segments
from avemotion.audio.spectrogram import CHANNELS, FRAME_PADDING, SpectrogramConfig, spectrogram
from avemotion.augment import add_white_noise, clip_rng
from avemotion.clip_stage import ClipJob, ClipResult, ClipStage, clip_jobs, run_clip_stage
from avemotion.errors import BadInputError
from avemotion.h5store import clip_rows
from avemotion.parallel import Workers, map_clip_batches
from avemotion.params import Params
from avemotion.segments import SegmentParams

STAGE = "build_spectrograms"

NOISE_RULE = (
    "white Gaussian noise scaled to each segment's own power over its real (unpadded) "
    "samples; an all-zero segment gets no augmented copy"
)


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class FrontEndSettings:
    """Everything one clip's worker needs, read once from the params."""

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
    def from_params(cls, params: Params) -> FrontEndSettings:
        """Read ``audio:``, the segment keys and seed of ``base:`` and ``augment.snr_db``.

        ``audio.n_frames: null`` means ``round(base.segment_s / audio.step_s)``.
        """
        audio = params.audio
        segments = SegmentParams.from_params(params)
        n_frames = audio.n_frames
        if n_frames is None:
            n_frames = round(segments.segment_s / audio.step_s)
        shape = audio.model_dump(exclude={"max_missing_s", "n_frames"})
        settings = cls(
            spectrogram=SpectrogramConfig(**shape, n_frames=n_frames),
            segments=segments,
            snr_db=tuple(params.augment.snr_db),
            seed=params.base.seed,
            max_missing_s=audio.max_missing_s,
        )
        settings.check()
        return settings

    def check(self) -> None:
        """Raise :class:`BadInputError` for ``audio:`` values that cannot work together
        (each value's own type and range are checked by the params schema)."""
        c = self.spectrogram
        problems = []
        if c.fft_len < c.frame_len:
            problems.append(f"audio.nfft={c.nfft} is below the frame length {c.frame_len} samples")
        if not 0 <= c.low_hz < c.top_hz <= c.sample_rate / 2:
            problems.append(
                f"need 0 <= audio.low_hz < audio.high_hz <= Nyquist ({c.sample_rate / 2:g} Hz)"
            )
        if self.segment_len > c.span_len:
            problems.append(
                f"audio.n_frames={c.n_frames} frames cover {c.span_len / c.sample_rate:.3f} s, "
                f"less than base.segment_s={self.segments.segment_s}; raise n_frames"
            )
        elif c.span_len >= 2 * self.segment_len:
            problems.append(
                f"audio.n_frames={c.n_frames} frames span more than twice base.segment_s"
            )
        if problems:
            raise BadInputError("; ".join(problems), "params.yaml")

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


#: Clips a worker takes at a time (see :func:`avemotion.parallel.map_clip_batches`).
CLIPS_PER_TASK = 8
#: Signal rows a worker holds before it computes their spectrograms together: a few
#: clips' worth (a clip gives 2-3 rows, five times that with augmentation), and a bound on
#: memory (128 KB per row) however long the clips are.
BATCH_ROWS = 32


def extract_clips(jobs: Sequence[ClipJob], settings: FrontEndSettings) -> list[ClipResult]:
    """Decode, segment, augment and turn clips into spectrogram rows, one result per job.

    Each clip is decoded and cut in turn; the spectrograms of the rows of consecutive
    clips are then computed in one call once :data:`BATCH_ROWS` are waiting (and at the
    end). A clip's rows come original segments first, then one block per
    ``augment.snr_db`` value. A clip that gives no row comes back with ``reject`` set to
    the reason.
    """
    results: list[ClipResult] = []
    waiting: list[tuple[ClipResult, list[np.ndarray]]] = []
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
) -> tuple[ClipResult, list[np.ndarray] | None]:
    """One clip's result with its meta rows and counts, and its rows' signals in blocks
    (None for a rejected clip)."""
    result = ClipResult(job.clip_id, job.path)
    try:
        clip = clip_segments(
            job, settings.segments, settings.spectrogram.sample_rate, settings.max_missing_s
        )
    except BadInputError as error:
        result.reject = error.reason
        return result, None
    segments, n_valid, starts = clip.segments, clip.n_valid, clip.starts_s
    left_out = 0
    blocks, kept, names = [segments], [np.ones(len(segments), dtype=bool)], [""]
    if job.augment:
        for snr in settings.snr_db:
            rng = clip_rng(settings.seed, job.clip_id, snr_name(snr))
            noisy, augmented = noisy_copies(segments, n_valid, snr, rng)
            blocks.append(noisy[augmented])
            kept.append(augmented)
            names.append(snr_name(snr))
            left_out += int((~augmented).sum())
    result.rows = _rows(job, starts, kept, names)
    result.counts = {
        "corrupt_packets": clip.corrupt_packets,
        "silent_segments": int(np.count_nonzero(~np.any(segments, axis=1))),
        "noisy_copies_left_out": left_out,
    }
    return result, blocks


def _add_spectrograms(
    waiting: list[tuple[ClipResult, list[np.ndarray]]], config: SpectrogramConfig
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
    params: Params,
    out_path: str | Path,
    rejects_path: str | Path,
    n_jobs: int | None = None,
) -> dict[str, Any]:
    """The audio stage: spectrogram rows for every clip of ``index`` into ``out_path``.

    Clips are processed on ``n_jobs`` processes (default ``base.n_jobs``; or on a Dask
    cluster, ``base.backend``) and written in
    index order as they finish (:func:`avemotion.clip_stage.run_clip_stage`, which also
    says what happens when ``base.modalities`` has no audio). Returns the summary.
    """
    settings = FrontEndSettings.from_params(params)
    modalities = params.base.modalities
    workers = Workers.from_params(params.base, n_jobs)
    jobs = clip_jobs(index, "audio", augment=bool(settings.snr_db))
    worker = functools.partial(extract_clips, settings=settings)
    stage = ClipStage(STAGE, "audio", settings.spectrogram.item_shape, np.float32, settings.attrs())
    results = map_clip_batches(worker, jobs, CLIPS_PER_TASK, workers, desc="spectrograms")
    return run_clip_stage(stage, modalities, len(index), results, out_path, rejects_path)


def summarise(summary: Mapping[str, Any]) -> str:
    """The stage's one-paragraph report."""
    if summary.get("skipped"):
        return f"audio: {summary['skipped']}; wrote an empty table"
    return (
        f"audio: {summary['clips_written']} of {summary['clips']} clips -> {summary['rows']} "
        f"rows ({summary['rows'] - summary['augmented_rows']} original, "
        f"{summary['augmented_rows']} augmented); {summary['rejected']} rejected; "
        f"{summary.get('corrupt_packets', 0)} corrupt packets skipped; "
        f"{summary.get('silent_segments', 0)} silent segments "
        f"({summary.get('noisy_copies_left_out', 0)} noisy copies left out)"
    )
