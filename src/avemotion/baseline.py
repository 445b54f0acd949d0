"""The paper's benchmark (section 3.6, Avots et al. 2019): an SVM on MFCC statistics for
the voice, and its decision-level fusion with the video CNN.

The features are :mod:`avemotion.audio.mfcc` (stage build_mfcc). :func:`run_fit_baseline`
(stage fit_baseline): standardise on the fold's training rows, an SVC with Platt-scaled
class probabilities (as a decision-level fusion of probabilities needs; see
:func:`make_baseline_svm`), then the ``mfcc_svm`` and ``mfcc_svm_video_late`` tables
(the latter the mean of the MFCC-SVM's and the video CNN's probabilities, each summing
to 1).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
from avemotion.evaluation import write_predictions
from avemotion.h5store import read_meta
from avemotion.params import Params
from avemotion.params.schema import BaselineParams
from avemotion.scores import expand_columns, n_classes_of, read_branch
from avemotion.splits import test_rows, train_rows

SYSTEMS = ("mfcc_svm", "mfcc_svm_video_late")


# --------------------------------------------------------------------------- the SVM


@dataclass(frozen=True)
class BaselinePaths:
    """Where one fold's baseline reads and writes (its deps and outs in ``dvc.yaml``).

    ``video`` is the fold's video FC-feature table, read only when the run has video.
    """

    mfcc: Path
    video: Path
    model: Path
    predictions: Path
    metrics: Path


def make_baseline_svm(
    settings: BaselineParams, seed: int, labels: np.ndarray | None = None
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


def run_fit_baseline(params: Params, fold: int, paths: BaselinePaths) -> dict[str, Any]:
    """Stage fit_baseline: fit the MFCC-SVM on fold ``fold``'s training rows and write the
    ``mfcc_svm`` and ``mfcc_svm_video_late`` tables (header-only when their inputs are
    not in ``base.modalities``). With video, both are written on the test segments that
    the video table also has, the rows every audio-visual system is scored on."""
    settings, seed = params.baseline, params.base.seed
    modalities = params.base.modalities
    if not paths.mfcc.is_file():
        raise BadInputError("MFCC table not found; run the build_mfcc stage first", paths.mfcc)
    meta = read_meta(paths.mfcc)
    n_classes = n_classes_of(params.data.classes, meta["label"])
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
    with atomic_path(paths.model) as partial:
        joblib.dump(model, partial)
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
    write_json(paths.metrics, summary)
    return summary
