"""The paper's benchmark (section 3.6, Avots et al. 2019): MFCC statistics + SVM for the
voice, and its decision-level fusion with the video CNN.

- :func:`build_mfcc_features` (stage build_mfcc): for every clip of the index, the same
  analysis segments as the CNN branches (:func:`avemotion.segments.segment_starts` on the
  index's duration, decoded by :func:`avemotion.audio_clips.decode_audio`), so that
  ``(clip_id, segment)`` names the same 2 s in every table. Per segment, ``n_mfcc``
  MFCCs (python_speech_features) over the segment's real samples, and their deltas;
  the features are the mean and standard deviation of both over the segment's frames:
  ``4 * n_mfcc`` numbers, in the order MFCC means, MFCC stds, delta means, delta stds.
  Original rows only: the benchmark had no augmentation.
- :func:`run_fit_baseline` (stage fit_baseline): standardise on the fold's training rows,
  an SVC with Platt-scaled class probabilities (as a decision-level fusion of
  probabilities needs; see :func:`make_baseline_svm`), then the ``mfcc_svm`` and
  ``mfcc_svm_video_late`` tables (the latter the mean of the MFCC-SVM's and the video
  CNN's probabilities, each summing to 1).

Choices made here: the padding zeros of a partial last segment are left out of its
statistics (they would add frames of digital silence); frames use a Hamming window, as
the spectrogram branch does; ``appendEnergy`` (the 0th coefficient replaced by the
frame's log energy) is python_speech_features' default and is kept.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import h5py
import joblib
import numpy as np
import pandas as pd
from python_speech_features import delta, mfcc
from sklearn.calibration import CalibratedClassifierCV
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from avemotion.audio_clips import (
    ClipJob,
    clip_jobs,
    clip_segments,
    next_power_of_two,
    samples_in,
)
from avemotion.errors import BadInputError
from avemotion.evaluation import write_predictions
from avemotion.fusion import SVM_KERNELS, expand_columns, n_classes_of, read_branch, run_modalities
from avemotion.h5store import SegmentWriter, clip_rows, read_meta
from avemotion.parallel import map_clips
from avemotion.params import resolve_n_jobs, section
from avemotion.rejects import Reject, write_rejects
from avemotion.segments import SegmentParams
from avemotion.splits import test_rows, train_rows

STAGE = "build_mfcc"
SYSTEMS = ("mfcc_svm", "mfcc_svm_video_late")


@dataclass(frozen=True)
class BaselineSettings:
    """The ``baseline:`` params, the segment keys of ``base:`` and ``audio.sample_rate``."""

    n_mfcc: int = 13
    n_filters: int = 26
    frame_s: float = 0.025
    step_s: float = 0.01
    preemph: float = 0.97
    delta_n: int = 2
    svm_kernel: str = "rbf"
    svm_C: float = 1.0
    svm_gamma: str | float = "scale"
    sample_rate: int = 16000
    max_missing_s: float = 0.5
    segments: SegmentParams = field(default_factory=SegmentParams)

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> BaselineSettings:
        """Read and check the keys; ``baseline:`` keys left out take the defaults above."""
        given = dict(params.get("baseline") or {})
        own = {"n_mfcc", "n_filters", "frame_s", "step_s", "preemph", "delta_n"}
        own |= {"svm_kernel", "svm_C", "svm_gamma"}
        unknown = sorted(set(given) - own)
        if unknown:
            raise BadInputError(f"params baseline: unknown keys {unknown}; known: {sorted(own)}")
        audio = dict(params.get("audio") or {})
        settings = cls(
            **given,
            sample_rate=int(audio.get("sample_rate", 16000)),
            max_missing_s=float(audio.get("max_missing_s", 0.5)),
            segments=SegmentParams.from_params(params),
        )
        settings.check()
        return settings

    def check(self) -> None:
        problems = []
        if not (1 <= self.n_mfcc <= self.n_filters):
            problems.append(
                f"baseline.n_mfcc={self.n_mfcc} must be in 1..n_filters={self.n_filters}"
            )
        if not 0 < self.step_s <= self.frame_s:
            problems.append(f"baseline.step_s={self.step_s} must be in (0, frame_s]")
        if self.delta_n < 1:
            problems.append(f"baseline.delta_n={self.delta_n} must be >= 1")
        if not 0 <= self.preemph < 1:
            problems.append(f"baseline.preemph={self.preemph} must be in [0, 1)")
        if self.svm_kernel not in SVM_KERNELS:
            problems.append(f"baseline.svm_kernel must be one of {list(SVM_KERNELS)}")
        if not self.svm_C > 0:
            problems.append(f"baseline.svm_C={self.svm_C} must be positive")
        if problems:
            raise BadInputError("; ".join(problems))

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


# --------------------------------------------------------------------------- features


def mfcc_statistics(samples: np.ndarray, settings: BaselineSettings) -> np.ndarray:
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


@dataclass
class ClipMfcc:
    """One clip's MFCC rows (n_segments, 4 * n_mfcc), or the reason it has none."""

    clip_id: str
    path: str
    x: np.ndarray | None = None
    segments: np.ndarray | None = None
    starts_s: np.ndarray | None = None
    reject: str | None = None


def clip_mfcc(job: ClipJob, settings: BaselineSettings) -> ClipMfcc:
    """Decode one clip, cut the shared segments, and compute each one's statistics."""
    result = ClipMfcc(job.clip_id, job.path)
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
    result.segments = np.flatnonzero(keep)
    result.starts_s = starts[keep]
    return result


def build_mfcc_features(
    index: pd.DataFrame,
    params: Mapping[str, Any],
    out_path: str | Path,
    rejects_path: str | Path,
    n_jobs: int | None = None,
) -> dict[str, Any]:
    """Stage build_mfcc: MFCC statistics of every clip's segments into ``out_path``.

    Rows follow the index order; rejected clips go to ``rejects_path`` with the reason.
    When ``base.modalities`` has no audio, an empty table is written (attr ``skipped``).
    Returns the counts.
    """
    settings = BaselineSettings.from_params(params)
    attrs = {
        "stage": STAGE,
        "params": asdict(settings),
        "feature_names": settings.feature_names(),
    }
    summary: dict[str, Any] = {"clips": len(index), "clips_written": 0, "rows": 0, "rejected": 0}
    rejects: list[Reject] = []
    if "audio" not in run_modalities(params):
        attrs["skipped"] = "base.modalities has no audio: no MFCC features computed"
        summary["skipped"] = attrs["skipped"]
        jobs: list[ClipJob] = []
    else:
        jobs = clip_jobs(index, augment=False)
    worker = functools.partial(clip_mfcc, settings=settings)
    n_jobs = resolve_n_jobs(
        section(dict(params), "base").get("n_jobs") if n_jobs is None else n_jobs
    )
    by_id = {job.clip_id: job for job in jobs}
    with SegmentWriter(out_path, (settings.n_features,), np.float32, attrs) as writer:
        for result in map_clips(worker, jobs, n_jobs, desc="mfcc"):
            if result.reject is not None:
                rejects.append(Reject(result.path, result.clip_id, STAGE, result.reject))
                continue
            job, n = by_id[result.clip_id], len(result.x)
            writer.append(
                result.x,
                clip_rows(job, result.segments, result.starts_s),
            )
            summary["clips_written"] += 1
            summary["rows"] += n
    summary["rejected"] = len(rejects)
    write_rejects(rejects_path, rejects)
    with h5py.File(out_path, "a") as handle:
        for key, value in summary.items():
            handle.attrs[f"summary_{key}"] = value
    return summary


# --------------------------------------------------------------------------- the SVM


@dataclass(frozen=True)
class BaselinePaths:
    """Where one fold's baseline reads and writes (the DVC stage's deps and outs)."""

    mfcc: Path
    video: Path
    model: Path
    predictions: Path
    metrics: Path

    @classmethod
    def default(cls, fold: int) -> BaselinePaths:
        return cls(
            mfcc=Path("data/features/mfcc.h5"),
            video=Path(f"data/features/fold{fold}/fc_video.h5"),
            model=Path(f"models/baseline/fold{fold}/mfcc_svm.joblib"),
            predictions=Path(f"data/predictions/fold{fold}"),
            metrics=Path(f"metrics/baseline/fold{fold}.json"),
        )


def make_baseline_svm(
    settings: BaselineSettings, seed: int, labels: np.ndarray | None = None
) -> Pipeline:
    """Standardisation (fitted on the training rows), then an SVC with Platt-scaled class
    probabilities: ``CalibratedClassifierCV(method="sigmoid", ensemble=False)``, what
    ``SVC(probability=True)`` did before scikit-learn 1.9 deprecated it.

    The calibration's cross-validation uses 5 folds, or as many as the rarest class of the
    training ``labels`` allows (a small corpus or a tiny test run has fewer than 5)."""
    n_folds = 5
    if labels is not None:
        rarest = int(np.bincount(np.asarray(labels)).astype(float)[np.unique(labels)].min())
        if rarest < 2:
            raise BadInputError(
                "the MFCC baseline needs at least 2 training segments of every class to "
                "calibrate its SVM"
            )
        n_folds = min(n_folds, rarest)
    svm = SVC(
        kernel=settings.svm_kernel,
        C=settings.svm_C,
        gamma=settings.svm_gamma,
        random_state=seed,
    )
    return make_pipeline(
        StandardScaler(),
        CalibratedClassifierCV(svm, method="sigmoid", ensemble=False, cv=n_folds),
    )


def run_fit_baseline(params: Mapping[str, Any], fold: int, paths: BaselinePaths) -> dict[str, Any]:
    """Stage fit_baseline: fit the MFCC-SVM on fold ``fold``'s training rows and write the
    ``mfcc_svm`` and ``mfcc_svm_video_late`` tables (header-only when their inputs are
    not in ``base.modalities``). With video, both are written on the test segments that
    the video table also has, the rows every audio-visual system is scored on."""
    settings = BaselineSettings.from_params(params)
    seed = int(section(dict(params), "base").get("seed", 42))
    modalities = run_modalities(params)
    if not paths.mfcc.is_file():
        raise BadInputError("MFCC table not found; run the build_mfcc stage first", paths.mfcc)
    meta = read_meta(paths.mfcc)
    n_classes = n_classes_of(params, meta["label"])
    summary: dict[str, Any] = {"fold": fold, "written": {}}
    empty = ([], [], [], np.zeros((0, n_classes)))
    if "audio" not in modalities or len(meta["label"]) == 0:
        for system in SYSTEMS:
            summary["written"][system] = write_predictions(
                paths.predictions / f"{system}.csv", *empty
            )
        summary["skipped"] = "no MFCC rows (base.modalities has no audio)"
        return _write_summary(paths, summary)
    with h5py.File(paths.mfcc, "r") as handle:
        x = handle["x"][:]
    train = np.flatnonzero(train_rows(meta["fold"], fold) & ~meta["augmented"])
    test = np.flatnonzero(test_rows(meta["fold"], meta["augmented"], fold))
    if len(train) == 0 or len(test) == 0:
        raise BadInputError(
            f"fold {fold} has {len(train)} training and {len(test)} test rows", paths.mfcc
        )
    labels = meta["label"][train]
    model = make_baseline_svm(settings, seed, labels).fit(x[train], labels)
    classes = model.classes_
    probs = expand_columns(model.predict_proba(x[test]), classes, n_classes)
    paths.model.parent.mkdir(parents=True, exist_ok=True)
    joblib.dump(model, paths.model)
    summary.update(
        n_train_rows=len(train),
        n_test_rows=len(test),
        svm_train_accuracy=float(np.mean(model.predict(x[train]) == meta["label"][train])),
    )

    late = None
    if "video" in modalities:
        video = read_branch(paths.video, "video")
        originals = pd.DataFrame(
            {
                "clip_id": video.meta["clip_id"],
                "segment": video.meta["segment"],
                "row": np.arange(len(video.x)),
            }
        )[~video.meta["augmented"]]
        wanted = pd.DataFrame({"clip_id": meta["clip_id"][test], "segment": meta["segment"][test]})
        partner = wanted.merge(originals, on=["clip_id", "segment"], how="left")["row"]
        kept = partner.notna().to_numpy()
        summary["test_rows_without_video"] = int((~kept).sum())
        test, probs = test[kept], probs[kept]
        late = (probs + video.probs[partner[kept].to_numpy(dtype=np.int64)]) / 2.0
    keys = (meta["clip_id"][test], meta["segment"][test], meta["label"][test])
    summary["written"]["mfcc_svm"] = write_predictions(
        paths.predictions / "mfcc_svm.csv", *keys, probs
    )
    summary["written"]["mfcc_svm_video_late"] = write_predictions(
        paths.predictions / "mfcc_svm_video_late.csv",
        *(keys if late is not None else empty[:3]),
        late if late is not None else empty[3],
    )
    summary["test_accuracy"] = float(np.mean(probs.argmax(1) == keys[2])) if len(test) else None
    return _write_summary(paths, summary)


def _write_summary(paths: BaselinePaths, summary: dict[str, Any]) -> dict[str, Any]:
    paths.metrics.parent.mkdir(parents=True, exist_ok=True)
    paths.metrics.write_text(json.dumps(summary, indent=2) + "\n")
    return summary
