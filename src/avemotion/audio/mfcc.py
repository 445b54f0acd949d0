"""MFCC statistics per analysis segment: the features of the paper's benchmark (section
3.6, Avots et al. 2019) for the voice.

:func:`build_mfcc_features` (stage build_mfcc): for every clip of the index, the same
analysis segments as the CNN branches (:func:`avemotion.audio.clips.clip_segments`), so
that ``(clip_id, segment)`` names the same 2 s in every table. Per segment, ``n_mfcc``
MFCCs (python_speech_features) over the segment's real samples, and their deltas; the
features are the mean and standard deviation of both over the segment's frames:
``4 * n_mfcc`` numbers, in the order MFCC means, MFCC stds, delta means, delta stds.
Original rows only: the benchmark had no augmentation. The SVM on them is
:mod:`avemotion.baseline`.

Choices made here: the padding zeros of a partial last segment are left out of its
statistics (they would add frames of digital silence); frames use a Hamming window, as
the spectrogram branch does; ``appendEnergy`` (the 0th coefficient replaced by the
frame's log energy) is python_speech_features' default and is kept.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from python_speech_features import delta, mfcc

from avemotion.audio.clips import clip_segments, next_power_of_two, samples_in
from avemotion.clip_stage import ClipJob, ClipResult, ClipStage, clip_jobs, run_clip_stage
from avemotion.errors import BadInputError
from avemotion.h5store import clip_rows
from avemotion.parallel import Workers, map_clips
from avemotion.params import Params
from avemotion.segments import SegmentParams

STAGE = "build_mfcc"


@dataclass(frozen=True)
class MfccSettings:
    """The feature keys of ``baseline:``, the segment keys of ``base:`` and the audio
    decoding keys (``audio.sample_rate``, ``audio.max_missing_s``)."""

    n_mfcc: int = 13
    n_filters: int = 26
    frame_s: float = 0.025
    step_s: float = 0.01
    preemph: float = 0.97
    delta_n: int = 2
    sample_rate: int = 16000
    max_missing_s: float = 0.5
    segments: SegmentParams = field(default_factory=SegmentParams)

    @classmethod
    def from_params(cls, params: Params) -> MfccSettings:
        baseline = params.baseline
        return cls(
            n_mfcc=baseline.n_mfcc,
            n_filters=baseline.n_filters,
            frame_s=baseline.frame_s,
            step_s=baseline.step_s,
            preemph=baseline.preemph,
            delta_n=baseline.delta_n,
            sample_rate=params.audio.sample_rate,
            max_missing_s=params.audio.max_missing_s,
            segments=SegmentParams.from_params(params),
        )

    @property
    def nfft(self) -> int:
        """The FFT size: the next power of two at or above the frame length."""
        return next_power_of_two(max(samples_in(self.frame_s, self.sample_rate), 2))

    @property
    def n_features(self) -> int:
        return 4 * self.n_mfcc

    def feature_names(self) -> list[str]:
        """Names of the ``4 * n_mfcc`` columns of ``/x``, in order."""
        return [
            f"{kind}_{stat}_{c}"
            for kind in ("mfcc", "delta")
            for stat in ("mean", "std")
            for c in range(self.n_mfcc)
        ]


def mfcc_statistics(samples: np.ndarray, settings: MfccSettings) -> np.ndarray:
    """Mean and std of the MFCCs and their deltas over one segment: (4 * n_mfcc,) float32.

    ``samples`` is the segment's mono signal at ``settings.sample_rate`` (real samples
    only, at least one sample).
    """
    coefficients = mfcc(
        np.asarray(samples, dtype=np.float64),
        samplerate=settings.sample_rate,
        winlen=settings.frame_s,
        winstep=settings.step_s,
        numcep=settings.n_mfcc,
        nfilt=settings.n_filters,
        nfft=settings.nfft,
        preemph=settings.preemph,
        winfunc=np.hamming,
    )
    deltas = delta(coefficients, settings.delta_n)
    return np.concatenate(
        [coefficients.mean(0), coefficients.std(0), deltas.mean(0), deltas.std(0)]
    ).astype(np.float32)


def clip_mfcc(job: ClipJob, settings: MfccSettings) -> ClipResult:
    """Decode one clip, cut the shared segments, and compute each one's statistics."""
    result = ClipResult(job.clip_id, job.path)
    try:
        clip = clip_segments(job, settings.segments, settings.sample_rate, settings.max_missing_s)
    except BadInputError as error:
        result.reject = error.reason
        return result
    segments, n_valid, starts = clip.segments, clip.n_valid, clip.starts_s
    keep = n_valid > 0
    result.x = (
        np.stack(
            [
                mfcc_statistics(s[:n], settings)
                for s, n in zip(segments[keep], n_valid[keep], strict=True)
            ]
        )
        if keep.any()
        else None
    )
    if result.x is None:
        result.reject = "the audio ends before the first segment"
        return result
    result.rows = clip_rows(job, np.flatnonzero(keep), starts[keep])
    result.counts = {"corrupt_packets": clip.corrupt_packets}
    return result


def build_mfcc_features(
    index: pd.DataFrame,
    params: Params,
    out_path: str | Path,
    rejects_path: str | Path,
    n_jobs: int | None = None,
) -> dict[str, Any]:
    """Stage build_mfcc: MFCC statistics of every clip's segments into ``out_path``.

    Rows follow the index order; rejected clips go to ``rejects_path`` with the reason
    (:func:`avemotion.clip_stage.run_clip_stage`, which also writes the empty table of a
    run without audio). Returns the counts.
    """
    settings = MfccSettings.from_params(params)
    attrs = {"stage": STAGE, "params": asdict(settings), "feature_names": settings.feature_names()}
    stage = ClipStage(STAGE, "audio", (settings.n_features,), np.float32, attrs)
    worker = functools.partial(clip_mfcc, settings=settings)
    workers = Workers.from_params(params.base, n_jobs)
    results = map_clips(worker, clip_jobs(index, "audio", augment=False), workers, desc="mfcc")
    return run_clip_stage(
        stage, params.base.modalities, len(index), results, out_path, rejects_path
    )
