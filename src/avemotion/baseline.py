"""Baselines: SVMs on hand-made features, and the benchmark's late fusion with video.

- ``mfcc_svm``: MFCC statistics (:mod:`avemotion.audio.mfcc`, stage build_mfcc), the
  paper's benchmark (section 3.6, Avots et al. 2019);
- ``egemaps_svm``, ``compare_svm``: openSMILE's eGeMAPSv02 and ComParE_2016
  functionals per segment (:mod:`avemotion.audio.functionals`, stage build_functionals);
- ``mfcc_svm_video_late``: the mean of the MFCC-SVM's and the video CNN's probabilities,
  :func:`run_mfcc_video_late` (stage fuse_mfcc_video), a stage of its own so that a
  changed CNN reruns this mean and not the SVMs' C grids.

:func:`run_fit_baseline` (stage fit_baseline) fits each SVM on a fold's original training
rows: standardise, an SVC with Platt-scaled class probabilities (what a decision-level
fusion of probabilities needs; see :func:`make_baseline_svm`), C chosen from
``baseline.svm_C_grid`` by clip accuracy on the fold's validation speakers (the ones
the CNNs hold out, :func:`avemotion.splits.validation_rows`), then refitted on all the
training rows for the test fold. With ``base.speaker_norm`` the features are first
z-scored within each speaker (:mod:`avemotion.speakers`), as the fusion's inputs are, so
the baselines and the fusion compare under the same assumption. The validation
predictions of the chosen C are written beside the test predictions, so every baseline
has a validation score.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

import h5py
import joblib
import numpy as np
import pandas as pd
from sklearn.calibration import CalibratedClassifierCV
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from avemotion.atomic import atomic_path, write_json
from avemotion.errors import BadInputError
from avemotion.evaluation import (
    class_columns,
    clip_level,
    predicted,
    probability_columns,
    read_predictions,
    write_predictions,
)
from avemotion.h5store import read_meta
from avemotion.params import Params
from avemotion.params.schema import BaselineParams, FunctionalSet
from avemotion.scores import expand_columns, n_classes_of, read_branch
from avemotion.speakers import standardise_segments
from avemotion.splits import held_and_fitting, test_rows, train_rows

#: The feature table behind each SVM baseline: mfcc, then every openSMILE set.
FEATURE_SYSTEMS: dict[str, str] = {
    "mfcc": "mfcc_svm",
    **{name: f"{name}_svm" for name in get_args(FunctionalSet)},
}
LATE_SYSTEM = "mfcc_svm_video_late"
SYSTEMS = (*FEATURE_SYSTEMS.values(), LATE_SYSTEM)


# --------------------------------------------------------------------------- the SVM


@dataclass(frozen=True)
class BaselinePaths:
    """Where one fold's baselines read and write (their deps and outs in ``dvc.yaml``).

    ``functionals`` is the folder of ``<set>.h5`` tables; ``video`` the video segment
    table (``video.h5``), whose segment keys alone are read, and only when the run has
    video (they do not depend on the CNN); ``models`` a folder of one
    ``<system>.joblib`` per fitted SVM; ``validation`` the fold's folder of validation
    predictions.
    """

    mfcc: Path
    functionals: Path
    video: Path
    models: Path
    predictions: Path
    validation: Path
    metrics: Path

    def table(self, name: str) -> Path:
        return self.mfcc if name == "mfcc" else self.functionals / f"{name}.h5"


def make_baseline_svm(
    settings: BaselineParams,
    C: float,
    seed: int,
    labels: np.ndarray | None = None,
    n_jobs: int | None = None,
) -> Pipeline:
    """Standardisation (fitted on the training rows), then an SVC with Platt-scaled class
    probabilities: ``CalibratedClassifierCV(method="sigmoid", ensemble=False)``, what
    ``SVC(probability=True)`` did before scikit-learn 1.9 deprecated it.

    The calibration's cross-validation uses 5 folds, or as many as the rarest class of the
    training ``labels`` allows (a small corpus or a tiny test run has fewer than 5), fitted
    on ``n_jobs`` processes (``base.n_jobs``; the folds are independent, the result is
    the same)."""
    n_folds = 5
    if labels is not None:
        rarest = int(np.bincount(np.asarray(labels)).astype(float)[np.unique(labels)].min())
        if rarest < 2:
            raise BadInputError(
                "an SVM baseline needs at least 2 training segments of every class to "
                "calibrate its SVM"
            )
        n_folds = min(n_folds, rarest)
    svm = SVC(
        kernel=settings.svm_kernel,
        C=C,
        gamma=settings.svm_gamma,
        random_state=seed,
    )
    return make_pipeline(
        StandardScaler(),
        CalibratedClassifierCV(svm, method="sigmoid", ensemble=False, cv=n_folds, n_jobs=n_jobs),
    )


@dataclass
class FittedBaseline:
    """One SVM baseline on one fold: the chosen C, and its scores per part.

    ``rows[part]`` are table rows, ``probs[part]`` (n_rows, C) their class scores, for
    the parts ``test`` and ``validation``.
    """

    model: Pipeline
    C: float
    validation_accuracy: dict[float, float | None]
    rows: dict[str, np.ndarray]
    probs: dict[str, np.ndarray]


def clip_accuracy(meta: dict[str, np.ndarray], rows: np.ndarray, probs: np.ndarray) -> float | None:
    """Accuracy of the argmax of each clip's mean segment scores (None without rows), at
    the clip level :mod:`avemotion.evaluation` defines."""
    if len(rows) == 0:
        return None
    frame = pd.DataFrame(probs, columns=probability_columns(probs.shape[1]))
    frame.insert(0, "clip_id", meta["clip_id"][rows])
    frame.insert(1, "label", meta["label"][rows])
    clips = clip_level(frame)
    return float(np.mean(predicted(clips) == clips["label"].to_numpy()))


def fit_baseline_svm(
    settings: BaselineParams,
    seed: int,
    x: np.ndarray,
    meta: dict[str, np.ndarray],
    fold: int,
    validation: np.ndarray,
    n_classes: int,
    n_jobs: int | None = None,
) -> FittedBaseline:
    """Choose C on the validation rows (``validation``: a mask of the fold's validation
    groups), then refit on every original training row and score the test rows.

    Without validation rows the grid's first C is taken."""
    original = ~np.asarray(meta["augmented"], dtype=bool)
    train = train_rows(meta["fold"], fold) & original
    fit_rows = np.flatnonzero(train & ~validation)
    val_rows = np.flatnonzero(validation & original)
    test = np.flatnonzero(test_rows(meta["fold"], meta["augmented"], fold))
    if not train.any() or len(test) == 0:
        raise BadInputError(
            f"fold {fold} has {int(train.sum())} training and {len(test)} test rows"
        )
    y = meta["label"]
    scores: dict[float, float | None] = {}
    val_probs: dict[float, np.ndarray] = {}
    if len(val_rows) and len(fit_rows):
        for C in settings.svm_C_grid:
            model = make_baseline_svm(settings, C, seed, y[fit_rows], n_jobs)
            model.fit(x[fit_rows], y[fit_rows])
            probs = expand_columns(model.predict_proba(x[val_rows]), model.classes_, n_classes)
            val_probs[C], scores[C] = probs, clip_accuracy(meta, val_rows, probs)
        best = max(scores, key=lambda c: (scores[c], -settings.svm_C_grid.index(c)))
    else:
        best = settings.svm_C_grid[0]
    train = np.flatnonzero(train)
    model = make_baseline_svm(settings, best, seed, y[train], n_jobs).fit(x[train], y[train])
    test_probs = expand_columns(model.predict_proba(x[test]), model.classes_, n_classes)
    return FittedBaseline(
        model=model,
        C=best,
        validation_accuracy=scores,
        rows={"test": test, "validation": val_rows},
        probs={"test": test_probs, "validation": val_probs.get(best, np.zeros((0, n_classes)))},
    )


def run_fit_baseline(params: Params, fold: int, paths: BaselinePaths) -> dict[str, Any]:
    """Stage fit_baseline: every SVM baseline whose table the run builds (MFCC when
    ``base.modalities`` has audio, each of ``functionals.sets``) for fold ``fold``: test
    and validation predictions, the fitted
    models and the fold's summary (returned). A system that cannot run gets header-only
    tables, so the stage's outputs are the same whatever the params. With video, the
    audio-only systems are scored on the test segments the video table also has, the rows
    every audio-visual system is scored on."""
    settings, seed, train = params.baseline, params.base.seed, params.train
    modalities = params.base.modalities
    names = (["mfcc"] if "audio" in modalities else []) + [
        s for s in params.functionals.sets if "audio" in modalities
    ]
    video = read_meta(paths.video) if "video" in modalities else None
    summary: dict[str, Any] = {"fold": fold, "systems": {}}
    written: dict[str, dict[str, int]] = {"test": {}, "validation": {}}
    n_classes: int | None = None
    for name in names:
        path = paths.table(name)
        if not path.is_file():
            raise BadInputError(f"{name} table not found; run its feature stage first", path)
        meta = read_meta(path)
        if len(meta["label"]) == 0:
            continue
        n_classes = n_classes_of(params.data.classes, meta["label"])
        with h5py.File(path, "r") as handle:
            x = handle["x"][:]
        if params.base.speaker_norm:
            x = standardise_segments(x, meta)
        held, _ = held_and_fitting(meta, fold, train, seed)
        fitted = fit_baseline_svm(
            settings, seed, x, meta, fold, held, n_classes, params.base.n_jobs
        )
        system = FEATURE_SYSTEMS[name]
        with atomic_path(paths.models / f"{system}.joblib") as partial:
            joblib.dump(fitted.model, partial)
        summary["systems"][system] = {
            "C": fitted.C,
            "validation_clip_accuracy_by_C": {
                str(c): a for c, a in fitted.validation_accuracy.items()
            },
            "n_feature_columns": int(x.shape[1]),
        }
        for part, folder in (("test", paths.predictions), ("validation", paths.validation)):
            rows, probs = fitted.rows[part], fitted.probs[part]
            if video is not None:
                rows, probs, missing = on_video_segments(meta, rows, probs, video)
                summary["systems"][system][f"{part}_rows_without_video"] = missing
            keys = (meta["clip_id"][rows], meta["segment"][rows], meta["label"][rows])
            written[part][system] = write_predictions(folder / f"{system}.csv", *keys, probs)
    width = n_classes or n_classes_of(params.data.classes, np.array([0]))
    for part, folder in (("test", paths.predictions), ("validation", paths.validation)):
        for system in FEATURE_SYSTEMS.values():
            if system not in written[part]:
                written[part][system] = write_predictions(
                    folder / f"{system}.csv", [], [], [], np.zeros((0, width))
                )
    for system in FEATURE_SYSTEMS.values():
        model = paths.models / f"{system}.joblib"
        if system not in summary["systems"]:
            model.unlink(missing_ok=True)
    summary["written"] = written
    write_json(paths.metrics, summary)
    return summary


def on_video_segments(
    meta: dict[str, np.ndarray], rows: np.ndarray, probs: np.ndarray, video: dict[str, np.ndarray]
) -> tuple[np.ndarray, np.ndarray, int]:
    """Keep the rows whose segment the video table (its meta) also has among its original
    rows; returns those rows, their scores and how many rows had no video."""
    wanted = pd.MultiIndex.from_arrays([meta["clip_id"][rows], meta["segment"][rows]])
    kept = wanted.isin(original_rows(video).index)
    return rows[kept], probs[kept], int((~kept).sum())


def original_rows(meta: dict[str, np.ndarray]) -> pd.Series:
    """The row number of each original (not augmented) segment of a table, indexed by
    (clip_id, segment)."""
    original = ~np.asarray(meta["augmented"], dtype=bool)
    keys = pd.MultiIndex.from_arrays([meta["clip_id"][original], meta["segment"][original]])
    return pd.Series(np.flatnonzero(original), index=keys)


def run_mfcc_video_late(
    params: Params, audio: Mapping[str, Path], video: Path, out: Mapping[str, Path]
) -> dict[str, int]:
    """Stage fuse_mfcc_video: the mean of the MFCC-SVM's and the video CNN's probabilities.

    ``audio`` maps each part (``test``, ``validation``) to the MFCC-SVM's prediction table
    (already cut to the segments video has, by :func:`run_fit_baseline`), ``video`` is
    the fold's video FC-feature table and ``out`` maps each part to the table to write.
    Every audio row is paired with the video CNN's probabilities of its segment (original
    rows, not rotated copies). Without both branches in ``base.modalities`` the tables
    are header-only, with the MFCC-SVM table's class columns (with ``data.classes: null``
    only that table knows how many classes the run has). Returns the rows written per
    part.
    """
    if set(params.base.modalities) != {"audio", "video"}:
        return {
            part: write_predictions(
                path, [], [], [], np.zeros((0, len(class_columns(read_predictions(audio[part])))))
            )
            for part, path in out.items()
        }
    table = read_branch(video, "video")
    by_segment = original_rows(table.meta)
    written = {}
    for part, path in audio.items():
        scores = read_predictions(path)
        keys = pd.MultiIndex.from_frame(scores[["clip_id", "segment"]])
        missing = ~keys.isin(by_segment.index)
        if missing.any():
            raise BadInputError(
                f"{int(missing.sum())} rows have no video segment; rerun fit_baseline", path
            )
        partner = by_segment.loc[keys].to_numpy()
        audio_probs = scores[probability_columns(table.probs.shape[1])].to_numpy()
        late = (audio_probs + table.probs[partner]) / 2.0
        written[part] = write_predictions(
            out[part], scores["clip_id"], scores["segment"], scores["label"], late
        )
    return written
