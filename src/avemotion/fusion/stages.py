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
    UNKNOWN_GENDERS,
    ELMFusion,
    TwoStageELM,
    cross_fit_probs,
    make_svm,
    n_support_vectors,
    svm_class_scores,
)
from avemotion.fusion.inputs import add_crossfit, block_columns, block_order, read_inputs
from avemotion.fusion.pairing import FusedTable
from avemotion.params import Params
from avemotion.params.schema import FusionParams
from avemotion.scores import BranchTable, expand_columns, n_classes_of
from avemotion.splits import FINAL, held_and_fitting, test_rows, train_rows


@dataclass(frozen=True)
class ElmPaths:
    """Where fit_elm reads and writes for one fold (its deps and outs in ``dvc.yaml``).

    ``features`` is the fold's folder of ``fc_<modality>.h5`` tables (and ``inner/``
    for cross-fit stacking); ``functionals`` the folder of openSMILE tables; ``models``
    the folder of fitted ELM pairs, one per feature family (:data:`FAMILIES`);
    ``predictions`` and ``validation`` the fold's test and validation prediction folders.
    """

    features: Path
    functionals: Path
    models: Path
    scores: Path
    predictions: Path
    validation: Path
    metrics: Path


@dataclass(frozen=True)
class SvmPaths:
    """Where fit_svm reads and writes for one fold: ``models`` is the folder of one
    assembled :class:`ELMFusion` per system of :data:`FUSION_SYSTEMS`."""

    scores: Path
    elm_models: Path
    predictions: Path
    validation: Path
    models: Path


#: The fusion's systems: (feature family, how the SVM is stacked on ELM-2's scores).
#: ``paper``: the CNN features of the rows the CNN trained on; ``cnn_crossfit``: the
#: inner CNNs' out-of-fold features (fusion.stacking: cross_fit).
FUSION_SYSTEMS: dict[str, tuple[str, str]] = {
    "elm_svm": ("paper", "same"),
    "elm_svm_crossfit": ("paper", "crossfit"),
    "elm_svm_cnn_crossfit": ("cnn_crossfit", "same"),
}
FAMILIES = ("paper", "cnn_crossfit")
#: Where the ELM pair is fitted and what it scores: the validation part fits on the
#: fitting rows (training less validation speakers) and scores the validation speakers;
#: the test part fits on every training row and scores the test fold.
PARTS = ("validation", "test")


def elm_params(fusion: FusionParams, random_state: int) -> dict[str, Any]:
    """Keyword arguments of :class:`TwoStageELM` from ``fusion:``."""
    return {
        "elm1_hidden": fusion.elm1_hidden,
        "elm2_hidden_per_class": fusion.elm2_hidden_per_class,
        "elm_C": fusion.elm_C,
        "n_members": fusion.elm_members,
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
    """Stage fit_elm: for each feature family and each part (:data:`PARTS`), fit the ELM
    pair and score the part's rows; write the ELM pairs fitted for the test, the SVMs'
    inputs (``--scores``), the branch-only and late-fusion predictions of the validation
    and test rows, and the fold's fusion metrics (returned)."""
    fusion, seed, train_params = params.fusion, params.base.seed, params.train
    inputs = read_inputs(params, paths.features, paths.functionals)
    fused = inputs.fused
    meta = fused.meta
    original = ~np.asarray(meta["augmented"], dtype=bool)
    train = train_rows(meta["fold"], fold)
    held, fitting = held_and_fitting(meta, fold, train_params, seed)
    rows = {
        "validation": (np.flatnonzero(fitting), np.flatnonzero(held & original)),
        "test": (
            np.flatnonzero(train),
            np.flatnonzero(test_rows(meta["fold"], meta["augmented"], fold)),
        ),
    }
    if len(rows["test"][0]) == 0 or (len(rows["test"][1]) == 0 and fold != FINAL):
        raise BadInputError(
            f"fold {fold} has {len(rows['test'][0])} training and {len(rows['test'][1])} "
            f"test rows after pairing {' and '.join(params.base.modalities)}",
            paths.features,
        )
    families = ["paper"]
    if fusion.stacking == "cross_fit" and fold != FINAL:  # no inner CNNs for the final model
        add_crossfit(params, inputs, paths.features, fitting)
        families.append("cnn_crossfit")
    use_gender, skipped = fusion.use_gender, None
    if use_gender:
        check_genders(meta, rows["test"][0], params.data.dataset)
        skipped = one_gender_reason(meta, rows["validation"][0])
        use_gender = skipped is None
    y, gender = meta["label"], np.asarray(meta["gender"]).astype(str)
    order = block_order(params)
    columns = block_columns(params, inputs)
    settings = {
        **elm_params(fusion, seed),
        "use_gender": use_gender,
        "emotion_columns": np.concatenate([columns[n] for n in fusion.inputs]),
        "gender_columns": np.concatenate([columns[n] for n in fusion.gender_inputs]),
    }
    n_classes = n_classes_of(params.data.classes, meta["label"])
    arrays: dict[str, np.ndarray] = {}
    summary_parts: dict[str, Any] = {}
    for part in PARTS:
        fit, scored = rows[part]
        arrays[f"{part}__clip_id"] = np.asarray(meta["clip_id"][scored], dtype=str)
        arrays[f"{part}__segment"] = meta["segment"][scored]
        arrays[f"{part}__label"] = y[scored]
        arrays[f"{part}__fit_label"] = y[fit]
        folder = paths.predictions if part == "test" else paths.validation
        written = write_branch_predictions(fused, scored, n_classes, folder)
        part_summary: dict[str, Any] = {
            "n_fit_rows": len(fit),
            "n_scored_rows": len(scored),
            "n_scored_clips": len(set(meta["clip_id"][scored])),
            "branch_predictions_written": written,
        }
        for family in families:
            x = inputs.matrix(order, crossfit=family == "cnn_crossfit")
            elm = TwoStageELM(**settings).fit(x[fit], y[fit], gender[fit])
            same = elm.predict_proba(x[fit])
            arrays[f"{family}__{part}__classes"] = elm.classes_
            arrays[f"{family}__{part}__fit_same"] = same
            arrays[f"{family}__{part}__scored"] = (
                elm.predict_proba(x[scored]) if len(scored) else np.zeros((0, len(elm.classes_)))
            )
            if family == "paper" and (len(scored) or part == "test"):
                groups, _ = cross_fit_groups(meta, fit)
                arrays[f"{family}__{part}__fit_crossfit"] = cross_fit_probs(
                    elm, x[fit], y[fit], gender[fit], groups, fusion.cross_fit_folds, elm.classes_
                ).probs
            if part == "test":
                with atomic_path(paths.models / f"{family}.joblib") as partial:
                    joblib.dump(elm, partial)
            part_summary[family] = {
                "elm2_fit_accuracy": _accuracy(y[fit], elm.classes_[same.argmax(1)]),
                "elm2_accuracy": _accuracy(
                    y[scored], elm.classes_[arrays[f"{family}__{part}__scored"].argmax(1)]
                )
                if len(scored)
                else None,
                "elm1_gender_accuracy": _gender_accuracy(elm, x, gender, scored),
            }
        summary_parts[part] = part_summary
    for family in FAMILIES:
        if family not in families:
            (paths.models / f"{family}.joblib").unlink(missing_ok=True)
    with atomic_path(paths.scores) as partial, partial.open("wb") as handle:
        np.savez_compressed(handle, **arrays)

    test = rows["test"][1]
    test_set = set(zip(meta["clip_id"][test], meta["segment"][test], strict=True))
    pairing = dict(fused.pairing)
    if pairing:
        pairing["test_rows_left_out"] = _test_rows_left_out(inputs.tables, fold, test_set)
    gender_model = summary_parts["test"]["paper"]
    summary = {
        "fold": fold,
        "modalities": list(params.base.modalities),
        "inputs": {name: int(inputs.blocks[name].shape[1]) for name in order},
        "feature_dim": int(sum(inputs.blocks[name].shape[1] for name in order)),
        "stacking": fusion.stacking,
        "n_train_rows": len(rows["test"][0]),
        "n_train_augmented_rows": int(meta["augmented"][rows["test"][0]].sum()),
        "n_validation_rows": len(rows["validation"][1]),
        "n_test_rows": len(test),
        "n_test_clips": len(set(meta["clip_id"][test])),
        "use_gender": use_gender,
        "elm1_skipped": skipped,
        "elm1_gender_accuracy": gender_model["elm1_gender_accuracy"],
        "elm1_validation_gender_accuracy": summary_parts["validation"]["paper"][
            "elm1_gender_accuracy"
        ],
        "elm2_test_accuracy": gender_model["elm2_accuracy"],
        "parts": summary_parts,
        "pairing": pairing,
        "settings": {
            **{k: v for k, v in settings.items() if not k.endswith("_columns")},
            "inputs": list(fusion.inputs),
            "gender_inputs": list(fusion.gender_inputs),
            "cross_fit_folds": fusion.cross_fit_folds,
            "test_features": fusion.test_features,
        },
    }
    write_json(paths.metrics, summary)
    return summary


def _gender_accuracy(
    elm: TwoStageELM, x: np.ndarray, gender: np.ndarray, rows: np.ndarray
) -> float | None:
    """ELM-1's accuracy on the rows of known gender (None when it was skipped or none)."""
    if elm.elm1_ is None:
        return None
    known = rows[~np.isin(gender[rows], list(UNKNOWN_GENDERS))]
    return _accuracy(gender[known], elm.predict_gender(x[known])) if len(known) else None


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
    """Stage fit_svm: for each system of :data:`FUSION_SYSTEMS` whose ELM scores fit_elm
    wrote, and each part, fit the SVM on ELM-2's scores of the part's fitting rows and
    write the scored rows' predictions (test or validation); the test part's model is
    assembled with its ELM pair into one :class:`ELMFusion`. A system not run (no
    cross-fit stacking) gets header-only tables. Returns the SVMs' fitting accuracies."""
    fusion, seed = params.fusion, params.base.seed
    if not paths.scores.is_file():
        raise BadInputError("not found; run the fit_elm stage first", paths.scores)
    scores = np.load(paths.scores, allow_pickle=False)
    labels = np.concatenate([scores[f"{part}__label"] for part in PARTS])
    n_classes = n_classes_of(params.data.classes, labels)
    summary: dict[str, Any] = {}
    for system, (family, stacking) in FUSION_SYSTEMS.items():
        for part in PARTS:
            folder = paths.predictions if part == "test" else paths.validation
            key = f"{family}__{part}__fit_{stacking}"
            if key not in scores:
                write_predictions(folder / f"{system}.csv", [], [], [], np.zeros((0, n_classes)))
                continue
            classes = scores[f"{family}__{part}__classes"]
            y_fit = scores[f"{part}__fit_label"]
            svm = make_svm(
                fusion.svm_kernel, fusion.svm_C, fusion.svm_gamma, fusion.svm_scores, seed
            ).fit(scores[key], y_fit)
            given = scores[f"{family}__{part}__scored"]
            scored = svm_class_scores(svm, given, classes) if len(given) else given
            keys = (
                scores[f"{part}__clip_id"],
                scores[f"{part}__segment"],
                scores[f"{part}__label"],
            )
            write_predictions(
                folder / f"{system}.csv", *keys, expand_columns(scored, classes, n_classes)
            )
            summary.setdefault(system, {})[part] = {
                "svm_fit_accuracy": _accuracy(y_fit, svm.predict(scores[key])),
                "accuracy": _accuracy(keys[2], classes[scored.argmax(1)]) if len(scored) else None,
                "n_support_vectors": n_support_vectors(svm),
            }
            if part == "test":
                elm = joblib.load(paths.elm_models / f"{family}.joblib")
                model = ELMFusion.from_parts(elm, svm, **fusion_params(elm, fusion, stacking))
                with atomic_path(paths.models / f"{system}.joblib") as partial:
                    joblib.dump(model, partial)
        if system not in summary:
            (paths.models / f"{system}.joblib").unlink(missing_ok=True)
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
