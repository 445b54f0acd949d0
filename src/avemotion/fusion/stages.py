"""What the DVC stages fit_elm and fit_svm run, for one fold (paper 2.3.3 and 2.4).

The paths come from ``dvc.yaml`` through the stage scripts (:class:`ElmPaths`,
:class:`SvmPaths`); the params from ``fusion:`` and the keys the stages declare.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import numpy as np

from avemotion.atomic import atomic_path, write_json
from avemotion.errors import BadInputError
from avemotion.evaluation import write_predictions
from avemotion.fusion.estimators import (
    STACKINGS,
    UNKNOWN_GENDERS,
    ELMFusion,
    TwoStageELM,
    cross_fit_probs,
    make_svm,
    n_support_vectors,
    svm_class_scores,
)
from avemotion.fusion.pairing import FusedTable, fuse_tables
from avemotion.params import Params
from avemotion.params.schema import FusionParams
from avemotion.scores import BranchTable, expand_columns, n_classes_of, read_branch
from avemotion.splits import test_rows, train_rows


@dataclass(frozen=True)
class ElmPaths:
    """Where fit_elm reads and writes for one fold (its deps and outs in ``dvc.yaml``).

    ``features`` is the fold's folder of ``fc_<modality>.h5`` tables.
    """

    features: Path
    model: Path
    scores: Path
    predictions: Path
    metrics: Path

    def branch_table(self, modality: str) -> Path:
        return self.features / f"fc_{modality}.h5"


@dataclass(frozen=True)
class SvmPaths:
    """Where fit_svm reads and writes for one fold: ``models`` maps each system of
    :data:`STACKINGS` to its assembled model's path."""

    scores: Path
    elm_model: Path
    predictions: Path
    models: Mapping[str, Path]


def elm_params(fusion: FusionParams, random_state: int) -> dict[str, Any]:
    """Keyword arguments of :class:`TwoStageELM` from ``fusion:``."""
    return {
        "elm1_hidden": fusion.elm1_hidden,
        "elm2_hidden_per_class": fusion.elm2_hidden_per_class,
        "elm_C": fusion.elm_C,
        "activation": fusion.activation,
        "standardise": fusion.standardise,
        "use_gender": fusion.use_gender,
        "elm2_input": fusion.elm2_input,
        "random_state": random_state,
    }


def one_gender_reason(meta: Mapping[str, np.ndarray], rows: np.ndarray) -> str | None:
    """Why ELM-1 cannot learn gender from these training rows, or None when it can."""
    known = sorted(set(np.asarray(meta["gender"][rows]).astype(str)) - UNKNOWN_GENDERS)
    if len(known) >= 2:
        return None
    return (
        f"the training rows have {'one gender (' + known[0] + ')' if known else 'no gender'}: "
        "ELM-1 cannot learn gender from one class, so it is skipped and ELM-2 reads the "
        "standardised features (as with fusion.use_gender: false)"
    )


def check_genders(meta: Mapping[str, np.ndarray], rows: np.ndarray, dataset: str) -> None:
    """Raise a :class:`BadInputError` naming the clips without gender, when ELM-1 needs it."""
    gender = np.asarray(meta["gender"][rows]).astype(str)
    unknown = np.isin(gender, list(UNKNOWN_GENDERS))
    if unknown.any():
        clips = sorted(set(meta["clip_id"][rows][unknown]))
        raise BadInputError(
            f"{len(clips)} training clips of dataset {dataset} have unknown gender (e.g. "
            f"{', '.join(clips[:3])}); ELM-1 learns gender: set fusion.use_gender: false, or "
            "give the genders via data.options"
        )


def cross_fit_groups(meta: Mapping[str, np.ndarray], rows: np.ndarray) -> tuple[np.ndarray, str]:
    """The groups of the cross-fitting: speakers, or clips when there are fewer than 2
    training speakers (augmented copies always stay with their clip)."""
    speakers = np.asarray(meta["speaker"][rows]).astype(str)
    if len(np.unique(speakers)) >= 2:
        return speakers, "speaker"
    clips = np.asarray(meta["clip_id"][rows]).astype(str)
    if len(np.unique(clips)) < 2:
        raise BadInputError("cross-fitting needs at least 2 training clips in this fold")
    return clips, "clip"


def _accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float | None:
    return float(np.mean(y_true == y_pred)) if len(y_true) else None


def run_fit_elm(params: Params, fold: int, paths: ElmPaths) -> dict[str, Any]:
    """Stage fit_elm: fit the ELM pair on fold ``fold``'s training rows, cross-fit it, and
    write the ELM-2 scores, the branch-only and late-fusion predictions, and the fold's
    fusion metrics (returned)."""
    fusion, seed = params.fusion, params.base.seed
    modalities = params.base.modalities
    tables = [read_branch(paths.branch_table(m), m) for m in modalities]
    fused = fuse_tables(tables, params.augment)
    meta = fused.meta
    train = np.flatnonzero(train_rows(meta["fold"], fold))
    test = np.flatnonzero(test_rows(meta["fold"], meta["augmented"], fold))
    if len(train) == 0 or len(test) == 0:
        raise BadInputError(
            f"fold {fold} has {len(train)} training and {len(test)} test rows after pairing "
            f"{' and '.join(modalities)}",
            paths.features,
        )
    use_gender, skipped = fusion.use_gender, None
    if use_gender:
        check_genders(meta, train, params.data.dataset)
        skipped = one_gender_reason(meta, train)
        use_gender = skipped is None
    n_classes = n_classes_of(params.data.classes, meta["label"])
    y, gender = meta["label"], np.asarray(meta["gender"]).astype(str)
    settings = {**elm_params(fusion, seed), "use_gender": use_gender}
    elm = TwoStageELM(**settings).fit(fused.x[train], y[train], gender[train])
    groups, group_kind = cross_fit_groups(meta, train)
    crossed = cross_fit_probs(
        elm, fused.x[train], y[train], gender[train], groups, fusion.cross_fit_folds, elm.classes_
    )
    train_same = elm.predict_proba(fused.x[train])
    test_probs = elm.predict_proba(fused.x[test])

    with atomic_path(paths.model) as partial:
        joblib.dump(elm, partial)
    with atomic_path(paths.scores) as partial, partial.open("wb") as handle:
        np.savez_compressed(
            handle,
            classes=elm.classes_,
            train_label=y[train],
            train_same=train_same,
            train_crossfit=crossed.probs,
            test=test_probs,
            test_clip_id=np.asarray(meta["clip_id"][test], dtype=str),
            test_segment=meta["segment"][test],
            test_label=y[test],
        )
    written = write_branch_predictions(fused, test, n_classes, paths.predictions)

    gender_accuracy = None
    if elm.elm1_ is not None:
        known = test[~np.isin(gender[test], list(UNKNOWN_GENDERS))]
        if len(known):
            gender_accuracy = _accuracy(gender[known], elm.predict_gender(fused.x[known]))
    test_set = set(zip(meta["clip_id"][test], meta["segment"][test], strict=True))
    pairing = dict(fused.pairing)
    if pairing:
        pairing["test_rows_left_out"] = _test_rows_left_out(tables, fold, test_set)
    summary = {
        "fold": fold,
        "modalities": list(modalities),
        "feature_dim": int(fused.x.shape[1]),
        "n_train_rows": len(train),
        "n_train_augmented_rows": int(meta["augmented"][train].sum()),
        "n_test_rows": len(test),
        "n_test_clips": len(set(meta["clip_id"][test])),
        "use_gender": use_gender,
        "elm1_skipped": skipped,
        "elm1_gender_accuracy": gender_accuracy,
        "elm1_gender_classes": [] if elm.elm1_ is None else elm.elm1_.classes_.tolist(),
        "elm2_train_accuracy_same": _accuracy(y[train], elm.classes_[train_same.argmax(1)]),
        "elm2_train_accuracy_crossfit": _accuracy(y[train], elm.classes_[crossed.probs.argmax(1)]),
        "elm2_test_accuracy": _accuracy(y[test], elm.classes_[test_probs.argmax(1)]),
        "cross_fit": {"groups": group_kind, "n_splits": len(crossed.splits)},
        "predictions_written": written,
        "pairing": pairing,
        "settings": {**settings, "cross_fit_folds": fusion.cross_fit_folds},
    }
    write_json(paths.metrics, summary)
    return summary


def _test_rows_left_out(tables: Sequence[BranchTable], fold: int, paired: set) -> int:
    """Test segments (original rows of ``fold``) in one branch's table but not fused."""
    left = set()
    for table in tables:
        m = table.meta
        rows = test_rows(m["fold"], m["augmented"], fold)
        left |= set(zip(m["clip_id"][rows], m["segment"][rows], strict=True)) - paired
    return len(left)


def write_branch_predictions(
    fused: FusedTable, test: np.ndarray, n_classes: int, folder: Path
) -> dict[str, int]:
    """``audio_cnn``, ``video_cnn`` and ``late_fusion`` tables for the test rows.

    All are written on the same (fused) test rows, so every system is scored on the
    same segments; a system whose branch did not run gets a header-only table, which
    keeps the stage's outputs the same whatever ``base.modalities`` holds.
    """
    meta = fused.meta
    keys = (meta["clip_id"][test], meta["segment"][test], meta["label"][test])
    empty = (np.array([], dtype=object), np.array([], dtype=np.int64), np.array([], np.int64))
    tables = {
        "audio_cnn": fused.probs.get("audio"),
        "video_cnn": fused.probs.get("video"),
        "late_fusion": (
            (fused.probs["audio"] + fused.probs["video"]) / 2.0 if len(fused.probs) == 2 else None
        ),
    }
    written = {}
    for system, probs in tables.items():
        if probs is None:
            written[system] = write_predictions(
                folder / f"{system}.csv", *empty, np.zeros((0, n_classes))
            )
        else:
            p = np.asarray(probs[test], dtype=np.float64)
            written[system] = write_predictions(folder / f"{system}.csv", *keys, p)
    return written


def run_fit_svm(params: Params, fold: int, paths: SvmPaths) -> dict[str, Any]:
    """Stage fit_svm: fit the SVM on ELM-2's training scores, once per stacking, and write
    ``elm_svm.csv`` and ``elm_svm_crossfit.csv`` and the assembled models; returns their
    training accuracies."""
    fusion, seed = params.fusion, params.base.seed
    for path in (paths.scores, paths.elm_model):
        if not path.is_file():
            raise BadInputError("not found; run the fit_elm stage first", path)
    scores = np.load(paths.scores, allow_pickle=False)
    elm = joblib.load(paths.elm_model)
    classes, y_train = scores["classes"], scores["train_label"]
    n_classes = n_classes_of(params.data.classes, np.concatenate([y_train, scores["test_label"]]))
    keys = (scores["test_clip_id"], scores["test_segment"], scores["test_label"])
    summary = {}
    for stacking, system in STACKINGS.items():
        svm = make_svm(
            fusion.svm_kernel, fusion.svm_C, fusion.svm_gamma, fusion.svm_scores, seed
        ).fit(scores[f"train_{stacking}"], y_train)
        test = svm_class_scores(svm, scores["test"], classes)
        write_predictions(
            paths.predictions / f"{system}.csv", *keys, expand_columns(test, classes, n_classes)
        )
        model = ELMFusion.from_parts(elm, svm, **fusion_params(elm, fusion, stacking))
        with atomic_path(paths.models[system]) as partial:
            joblib.dump(model, partial)
        summary[system] = {
            "svm_train_accuracy": _accuracy(y_train, svm.predict(scores[f"train_{stacking}"])),
            "test_accuracy": _accuracy(keys[2], classes[test.argmax(1)]),
            "n_support_vectors": n_support_vectors(svm),
        }
    return summary


def fusion_params(elm: TwoStageELM, fusion: FusionParams, stacking: str) -> dict[str, Any]:
    """Keyword arguments of :class:`ELMFusion`: the fitted ELM pair's own settings (its
    seed, and ELM-1 may have been skipped for one gender) and the SVM's from ``fusion:``."""
    return {
        **elm.get_params(),
        "stacking": stacking,
        "cross_fit_folds": fusion.cross_fit_folds,
        "svm_kernel": fusion.svm_kernel,
        "svm_C": fusion.svm_C,
        "svm_gamma": fusion.svm_gamma,
        "svm_scores": fusion.svm_scores,
    }
