"""Scoring every system the same way: prediction tables in, metrics and a report out.

Every per-fold stage writes its test predictions as one CSV per system,
``data/predictions/fold<f>/<system>.csv``, with columns ``clip_id, segment, label,
p0 .. p<C-1>``: one row per test segment (original rows only), the class scores summing
to 1. This module owns that format (:func:`write_predictions`, :func:`read_predictions`)
and turns the tables of all folds into the run's numbers (:func:`evaluate_run`).

Definitions, chosen where the paper gives none:

- **Segment level**: each row's prediction is the argmax of its class scores.
- **Clip level**: a clip's segment scores are averaged, then the argmax is taken.
- **UAR** (unweighted average recall) is the mean of the per-class recalls over the
  classes present in the fold's test labels (scikit-learn's ``balanced_accuracy_score``);
  **macro-F1** averages F1 over the same classes, so a class absent from a test fold
  counts in neither. A class's recall is ``null`` in folds where it has no test item.
- **Mean and standard deviation over folds**: the sample standard deviation
  (``ddof=1``); 0 when a single fold ran.
- **Chance level**: ``majority`` is the accuracy of always answering the fold's most
  frequent *training* class (counted over the training clips of ``data/index.csv``),
  measured on that fold's test clips (clip level) or test segments (segment level); the
  UAR of any constant answer, and of a uniform random guess, is ``1 / C``.
- A table with no rows (header only) means the system could not run with the run's
  modalities; it is listed as not run, never scored as zero.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import f1_score, recall_score

from avemotion.atomic import atomic_path
from avemotion.errors import BadInputError

#: Every system the pipeline can score, in report order, with what it is.
SYSTEMS: dict[str, str] = {
    "elm_svm": "CNN features -> ELM-1 (gender) -> ELM-2 (emotion) -> SVM, all fitted on "
    "the same training rows (the paper)",
    "elm_svm_crossfit": "the same, the SVM fitted on out-of-fold ELM-2 scores "
    "(speaker-grouped cross-fitting)",
    "elm_svm_cnn_crossfit": "the same, ELMs and SVM fitted on out-of-fold CNN features "
    "(inner CNNs that never saw the row's speaker; fusion.stacking: cross_fit)",
    "audio_cnn": "audio 2D-CNN softmax alone",
    "video_cnn": "video 3D-CNN softmax alone",
    "late_fusion": "mean of the two CNN softmaxes",
    "mfcc_svm": "MFCC statistics + SVM (the benchmark's audio side, Avots et al. 2019)",
    "mfcc_svm_video_late": "mean of the MFCC-SVM and video CNN probabilities "
    "(the benchmark's decision-level fusion)",
    "egemaps_svm": "openSMILE eGeMAPSv02 functionals (88) per segment + SVM",
    "compare_svm": "openSMILE ComParE_2016 functionals (6373) per segment + SVM",
}
#: The system the paper proposes: its confusion matrix and per-class recall are reported.
PAPER_SYSTEM = "elm_svm"
LEVELS = ("segment", "clip")
METRICS = ("accuracy", "uar", "macro_f1")
KEY_COLUMNS = ("clip_id", "segment", "label")
_FOLD_DIR = re.compile(r"^fold(\d+)$")
_SPEAKER_MIXING = {
    "random": "a random split of clips: the same speakers are on both sides",
    "kfold": "k folds of clips: the same speakers are on both sides",
    "speaker": "speaker-independent folds: no speaker is on both sides",
    "loso": "leave one speaker out: no speaker is on both sides",
    "fixed": "a fixed list of test speakers (or the manifest's folds)",
}


# --------------------------------------------------------------------------- tables


def probability_columns(n_classes: int) -> list[str]:
    """``["p0", ..., "p{C-1}"]``: the class-score columns of a prediction table."""
    return [f"p{c}" for c in range(n_classes)]


def class_columns(table: pd.DataFrame) -> list[str]:
    """The class-score columns (``p0``, ``p1``, ...) a prediction table has, in its order."""
    return [c for c in table.columns if re.fullmatch(r"p\d+", c)]


def write_predictions(
    path: str | Path,
    clip_id: Sequence[str],
    segment: Sequence[int],
    label: Sequence[int],
    probs: np.ndarray,
) -> int:
    """Write one system's test predictions for one fold; returns the row count.

    ``probs`` has shape ``(n_rows, n_classes)`` with rows summing to 1. ``n_rows`` may be
    0: a header-only table records that the system did not run (see module docstring).
    """
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[0] != len(clip_id):
        raise ValueError(f"probs of shape {probs.shape} for {len(clip_id)} rows")
    table = pd.DataFrame(
        {
            "clip_id": np.asarray(clip_id, dtype=object),
            "segment": np.asarray(segment, dtype=np.int64),
            "label": np.asarray(label, dtype=np.int64),
        }
    )
    table[probability_columns(probs.shape[1])] = probs
    with atomic_path(path) as partial:
        table.to_csv(partial, index=False, float_format="%.6g")
    return len(table)


def read_predictions(path: str | Path, n_classes: int | None = None) -> pd.DataFrame:
    """Read a prediction table, checking its columns (and class count when given)."""
    path = Path(path)
    try:
        table = pd.read_csv(path, dtype={"clip_id": str}, keep_default_na=False)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise BadInputError(f"cannot read the prediction table: {error}", path) from None
    missing = [c for c in KEY_COLUMNS if c not in table.columns]
    p_columns = class_columns(table)
    if missing or not p_columns:
        raise BadInputError(
            f"not a prediction table: needs columns clip_id, segment, label, p0.. "
            f"(missing {missing or 'p0..'})",
            path,
        )
    if p_columns != probability_columns(len(p_columns)):
        raise BadInputError(f"class columns must be p0..p{len(p_columns) - 1} in order", path)
    if n_classes is not None and len(p_columns) != n_classes:
        raise BadInputError(
            f"has {len(p_columns)} class columns, data.classes has {n_classes}; "
            "rerun the stages that wrote it",
            path,
        )
    if len(table) and (table["label"].min() < 0 or table["label"].max() >= len(p_columns)):
        raise BadInputError(f"labels outside 0..{len(p_columns) - 1}", path)
    return table


def clip_level(table: pd.DataFrame) -> pd.DataFrame:
    """One row per clip: its segments' class scores averaged (columns clip_id, label, p..).

    Raises ``ValueError`` when a clip's segments disagree on its label.
    """
    p_columns = class_columns(table)
    grouped = table.groupby("clip_id", sort=True)
    labels = grouped["label"].agg(["min", "max"])
    mixed = labels.index[labels["min"] != labels["max"]]
    if len(mixed):
        raise ValueError(f"clips with segments of different labels: {list(mixed[:5])}")
    clips = grouped[p_columns].mean()
    clips.insert(0, "label", labels["min"])
    return clips.reset_index()


def predicted(table: pd.DataFrame) -> np.ndarray:
    """The argmax class of each row's scores, shape (n_rows,)."""
    p_columns = class_columns(table)
    return np.argmax(table[p_columns].to_numpy(), axis=1)


# --------------------------------------------------------------------------- metrics


def classification_scores(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> dict[str, Any]:
    """Accuracy, UAR, macro-F1 and per-class recall (``None`` where a class has no item)."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    present = np.unique(y_true)
    recall = recall_score(
        y_true, y_pred, labels=np.arange(n_classes), average=None, zero_division=0.0
    )
    return {
        "accuracy": float(np.mean(y_true == y_pred)),
        "uar": float(np.mean(recall[present])),  # = balanced_accuracy_score
        "macro_f1": float(
            f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0.0)
        ),
        "recall": [float(r) if c in present else None for c, r in enumerate(recall)],
        "n": len(y_true),
    }


def score_table(table: pd.DataFrame, n_classes: int) -> dict[str, dict[str, Any]]:
    """Segment- and clip-level scores of one system on one fold."""
    clips = clip_level(table)
    return {
        "segment": classification_scores(table["label"].to_numpy(), predicted(table), n_classes),
        "clip": classification_scores(clips["label"].to_numpy(), predicted(clips), n_classes),
    }


def mean_std(values: Sequence[float | None]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation over folds, ignoring ``None``; (None, None) if empty."""
    kept = np.asarray([v for v in values if v is not None], dtype=np.float64)
    if kept.size == 0:
        return None, None
    std = float(np.std(kept, ddof=1)) if kept.size > 1 else 0.0
    return float(np.mean(kept)), std


def chance_levels(
    index: pd.DataFrame, fold: int, test_labels: Mapping[str, np.ndarray], n_classes: int
) -> dict[str, float]:
    """Majority-class accuracy for ``fold``: the training clips' most frequent class,
    scored on ``test_labels`` per level (``{"segment": labels, "clip": labels}``)."""
    training = index.loc[index["fold"] != fold, "label"].to_numpy()
    if training.size == 0:
        raise BadInputError(f"fold {fold} has no training clip in the index")
    majority = int(np.argmax(np.bincount(training, minlength=n_classes)))
    chance = {"majority_class": majority, "uar": 1.0 / n_classes}
    for level, labels in test_labels.items():
        chance[f"{level}_accuracy"] = float(np.mean(np.asarray(labels) == majority))
    return chance


# --------------------------------------------------------------------------- the run


@dataclass
class Evaluation:
    """Every fold's scores, per system and level, and what the report needs beside them."""

    classes: list[str]
    folds: list[int]
    scores: dict[str, dict[int, dict[str, dict[str, Any]]]] = field(default_factory=dict)
    not_run: list[str] = field(default_factory=list)
    chance: dict[int, dict[str, float]] = field(default_factory=dict)
    fusion: dict[int, dict[str, Any]] = field(default_factory=dict)
    confusion: list[dict[str, str]] = field(default_factory=list)
    confusion_system: str | None = None
    protocol: str = ""
    speaker_norm: bool = False
    index_folds: list[int] = field(default_factory=list)
    stale_folds: list[int] = field(default_factory=list)

    def summary(self, system: str, level: str, metric: str) -> tuple[float | None, float | None]:
        """Mean and std over folds of one metric."""
        per_fold = self.scores[system]
        return mean_std([per_fold[f][level][metric] for f in sorted(per_fold)])

    def recall_summary(self, system: str, level: str) -> list[tuple[float | None, float | None]]:
        """Per-class recall, mean and std over the folds where the class was tested."""
        per_fold = self.scores[system]
        return [
            mean_std([per_fold[f][level]["recall"][c] for f in sorted(per_fold)])
            for c in range(len(self.classes))
        ]


def prediction_folds(predictions_dir: str | Path) -> list[int]:
    """The folds with a ``fold<f>/`` folder under ``predictions_dir``, sorted."""
    root = Path(predictions_dir)
    if not root.is_dir():
        raise BadInputError("no predictions folder; run the fit stages first", root)
    folds = sorted(
        int(m.group(1)) for p in root.iterdir() if p.is_dir() and (m := _FOLD_DIR.match(p.name))
    )
    if not folds:
        raise BadInputError("no fold<f>/ folder of predictions", root)
    return folds


def evaluate_run(
    predictions_dir: str | Path,
    fusion_metrics_dir: str | Path | None,
    index: pd.DataFrame,
    classes: Sequence[str],
    protocol: str = "",
    speaker_norm: bool = False,
) -> Evaluation:
    """Score every ``<predictions_dir>/fold*/<system>.csv`` at segment and clip level.

    ``fusion_metrics_dir`` holds the fit_elm stage's ``fold<f>.json`` (ELM-1's gender
    accuracy, row counts); ``index`` gives the folds of the split and the training class
    balance for chance level. Only the folds of the index are read: a ``fold<f>/`` folder
    of a fold the index does not have (left from an earlier split) is listed as stale
    and ignored; a fold of the index without a folder (not run) is listed in the report.
    ``protocol`` and ``speaker_norm`` (``base.speaker_norm``) are what the report says
    the figures assume.
    The confusion rows are the paper's system at clip level, all folds pooled.
    """
    classes = list(classes)
    n_classes = len(classes)
    index_folds = sorted(int(f) for f in set(index["fold"]) if f >= 0)
    found = prediction_folds(predictions_dir)
    folds = [f for f in found if f in index_folds]
    if not folds:
        raise BadInputError(
            f"no predictions for the index's folds {index_folds} (found folds {found})",
            predictions_dir,
        )
    evaluation = Evaluation(
        classes=classes,
        folds=folds,
        protocol=protocol,
        speaker_norm=speaker_norm,
        index_folds=index_folds,
        stale_folds=[f for f in found if f not in index_folds],
    )
    pooled: dict[str, list[pd.DataFrame]] = {}
    seen: set[str] = set()
    for fold in folds:
        fold_dir = Path(predictions_dir) / f"fold{fold}"
        names = sorted(p.stem for p in fold_dir.glob("*.csv"))
        unknown = sorted(set(names) - set(SYSTEMS))
        if unknown:
            raise BadInputError(f"unknown systems {unknown}; known: {list(SYSTEMS)}", fold_dir)
        seen.update(names)
        test_labels: dict[str, np.ndarray] = {}
        for name in names:
            table = read_predictions(fold_dir / f"{name}.csv", n_classes)
            if table.empty:
                continue
            try:
                fold_scores = score_table(table, n_classes)
            except ValueError as error:
                raise BadInputError(str(error), fold_dir / f"{name}.csv") from None
            evaluation.scores.setdefault(name, {})[fold] = fold_scores
            pooled.setdefault(name, []).append(clip_level(table))
            if not test_labels or name == PAPER_SYSTEM:
                test_labels = {
                    "segment": table["label"].to_numpy(),
                    "clip": clip_level(table)["label"].to_numpy(),
                }
        if test_labels:
            evaluation.chance[fold] = chance_levels(index, fold, test_labels, n_classes)
        if fusion_metrics_dir is not None:
            path = Path(fusion_metrics_dir) / f"fold{fold}.json"
            if path.is_file():
                evaluation.fusion[fold] = json.loads(path.read_text())
    evaluation.scores = {s: evaluation.scores[s] for s in SYSTEMS if s in evaluation.scores}
    evaluation.not_run = [s for s in SYSTEMS if s in seen and s not in evaluation.scores]
    if not evaluation.scores:
        raise BadInputError("every prediction table is empty: nothing to evaluate", predictions_dir)
    shown = PAPER_SYSTEM if PAPER_SYSTEM in pooled else next(iter(evaluation.scores))
    clips = pd.concat(pooled[shown], ignore_index=True)
    evaluation.confusion_system = shown
    evaluation.confusion = [
        {"actual": classes[a], "predicted": classes[p]}
        for a, p in zip(clips["label"].to_numpy(), predicted(clips), strict=True)
    ]
    return evaluation


def evaluate_validation(
    validation_dir: str | Path,
    index: pd.DataFrame,
    classes: Sequence[str],
    protocol: str = "",
    speaker_norm: bool = False,
) -> Evaluation | None:
    """:func:`evaluate_run` on the validation predictions (``data/validation``); None
    when no system scored a validation row (``train.validation_fraction: 0``)."""
    folder = Path(validation_dir)
    tables = list(folder.glob("fold*/*.csv")) if folder.is_dir() else []
    if not any(len(read_predictions(t)) for t in tables):
        return None
    return evaluate_run(folder, None, index, classes, protocol, speaker_norm)


def gender_accuracies(
    evaluation: Evaluation, key: str = "elm1_gender_accuracy"
) -> list[float | None]:
    """ELM-1's gender accuracy per fold (None where it was not measured): on the test
    segments, or with ``key="elm1_validation_gender_accuracy"`` on the validation ones."""
    return [evaluation.fusion.get(f, {}).get(key) for f in evaluation.folds]


def summary_json(evaluation: Evaluation, validation: Evaluation | None) -> dict[str, Any]:
    """Every number of the report, nested: ``test`` and ``validation``, each with
    ``segment`` and ``clip`` -> system -> ``<metric>_mean`` / ``_std`` and
    ``accuracy_per_fold`` (fold -> accuracy, what runs over several seeds pool), chance levels and
    ELM-1's gender accuracy (metrics/summary.json, a plain output)."""
    out: dict[str, Any] = {"n_folds": len(evaluation.folds)}
    for part, run in (("test", evaluation), ("validation", validation)):
        if run is None:
            continue
        entry: dict[str, Any] = {}
        for level in LEVELS:
            entry[level] = {
                system: {
                    **{
                        f"{metric}_{kind}": _rounded(value)
                        for metric in METRICS
                        for kind, value in zip(
                            ("mean", "std"), run.summary(system, level, metric), strict=True
                        )
                    },
                    "accuracy_per_fold": {
                        str(f): _rounded(run.scores[system][f][level]["accuracy"])
                        for f in sorted(run.scores[system])
                    },
                }
                for system in run.scores
            }
        chance: dict[str, Any] = {"uar": _rounded(1.0 / len(run.classes))}
        for level in LEVELS:
            mean, std = mean_std([c.get(f"{level}_accuracy") for c in run.chance.values()])
            chance[f"{level}_accuracy_mean"] = _rounded(mean)
            chance[f"{level}_accuracy_std"] = _rounded(std)
        entry["chance"] = chance
        out[part] = entry
    keys = {"test": "elm1_gender_accuracy", "validation": "elm1_validation_gender_accuracy"}
    for part in [p for p in keys if p in out]:
        mean, std = mean_std(gender_accuracies(evaluation, keys[part]))
        out[part]["gender_accuracy_mean"] = _rounded(mean)
        out[part]["gender_accuracy_std"] = _rounded(std)
    return out


def metrics_json(evaluation: Evaluation, validation: Evaluation | None) -> dict[str, Any]:
    """The headline numbers ``dvc exp show`` lists: each system's clip-level accuracy and
    UAR (mean over folds) on the test folds and on the validation speakers, named
    ``test.elm_svm.acc``, ``val.elm_svm.acc``; chance and ELM-1's test gender accuracy.
    Short names, so that the table fits a terminal (metrics/metrics.json, in git)."""
    out: dict[str, Any] = {}
    for part, run in (("test", evaluation), ("val", validation)):
        if run is None:
            continue
        out[part] = {
            system: {
                "acc": _rounded(run.summary(system, "clip", "accuracy")[0]),
                "uar": _rounded(run.summary(system, "clip", "uar")[0]),
            }
            for system in run.scores
        }
    chance = mean_std([c.get("clip_accuracy") for c in evaluation.chance.values()])[0]
    out["chance"] = {"acc": _rounded(chance), "uar": _rounded(1.0 / len(evaluation.classes))}
    out["gender_acc"] = _rounded(mean_std(gender_accuracies(evaluation))[0])
    return out


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def _cell(mean: float | None, std: float | None, percent: bool = True) -> str:
    if mean is None:
        return "n/a"
    scale = 100.0 if percent else 1.0
    return f"{mean * scale:.1f} ± {(std or 0.0) * scale:.1f}"


def report_markdown(evaluation: Evaluation, validation: Evaluation | None = None) -> str:
    """The run's report: every system x level, per-class recall, chance, ELM-1, row
    counts, and each system's validation score beside its test score."""
    classes, folds = evaluation.classes, evaluation.folds
    lines = [
        "# Results",
        "",
        f"Protocol: `{evaluation.protocol or 'unknown'}` "
        f"({_SPEAKER_MIXING.get(evaluation.protocol, 'see split: in params.yaml')}); "
        f"{len(folds)} fold(s) evaluated: {', '.join(str(f) for f in folds)} "
        f"(the split has {len(evaluation.index_folds)}). "
        "Protocols `random` and `kfold` mix speakers between training and test (as the "
        "paper's 70/30 and 4-fold splits do), so their numbers are not speaker-independent.",
        "",
        *(
            [
                "Speaker-normalised features (`base.speaker_norm`): the fusion's inputs and "
                "the SVM baselines' features were z-scored within each speaker, a test "
                "speaker's with the statistics of its own unlabelled test segments. The "
                "figures assume a speaker's recordings arrive together.",
                "",
            ]
            if evaluation.speaker_norm
            else []
        ),
        "Mean ± standard deviation over folds, in %. Segment level: each 2 s segment on its "
        "own; clip level: a clip's segment scores averaged, then the argmax. "
        "UAR = unweighted average recall.",
        "",
        "| system | level | accuracy | UAR | macro-F1 | test items (all folds) |",
        "|---|---|---|---|---|---|",
    ]
    for system in evaluation.scores:
        for level in LEVELS:
            cells = [_cell(*evaluation.summary(system, level, m)) for m in METRICS]
            n = sum(evaluation.scores[system][f][level]["n"] for f in evaluation.scores[system])
            lines.append(f"| `{system}` | {level} | {' | '.join(cells)} | {n} |")
    chance_cells = {
        level: _cell(*mean_std([c.get(f"{level}_accuracy") for c in evaluation.chance.values()]))
        for level in LEVELS
    }
    lines += [
        "",
        f"Chance: always answering the majority training class gives "
        f"{chance_cells['segment']} % (segment) and {chance_cells['clip']} % (clip) accuracy; "
        f"the UAR of any constant answer is 1/{len(classes)} = {100 / len(classes):.1f} %.",
        "",
        "Systems:",
        "",
    ]
    lines += [f"- `{s}`: {SYSTEMS[s]}" for s in evaluation.scores]
    if evaluation.stale_folds:
        lines.append(
            f"- ignored: predictions of folds {evaluation.stale_folds}, which the index's "
            "split does not have (left from an earlier run)"
        )
    if evaluation.not_run:
        lines.append(f"- not run (their inputs are not in base.modalities): {evaluation.not_run}")
    system = evaluation.confusion_system
    if system is not None:
        lines += [
            "",
            f"## Per-class recall of `{system}` (clip level, %)",
            "",
            "| class | recall |",
            "|---|---|",
        ]
        for name, (mean, std) in zip(
            classes, evaluation.recall_summary(system, "clip"), strict=True
        ):
            lines.append(f"| {name} | {_cell(mean, std)} |")
    lines += _validation_lines(evaluation, validation)
    lines += _per_fold_lines(evaluation)
    lines += _fusion_lines(evaluation)
    return "\n".join(lines) + "\n"


def _validation_lines(evaluation: Evaluation, validation: Evaluation | None) -> list[str]:
    """Clip-level accuracy and UAR on the validation speakers beside the test folds'."""
    if validation is None:
        return ["", "No validation speakers (train.validation_fraction is 0)."]
    lines = [
        "",
        "## Validation speakers beside the test folds (clip level, %)",
        "",
        "Validation speakers are carved from each fold's training speakers "
        "(train.validation_fraction); the CNNs pick their best epoch on them, every other "
        "system is fitted without them to score them, and the baselines choose C on them. "
        "Choose defaults on these columns, never on the test ones.",
        "",
        "| system | validation accuracy | test accuracy | validation UAR | test UAR |",
        "|---|---|---|---|---|",
    ]
    for system in evaluation.scores:
        val = validation.scores.get(system)
        cells = []
        for metric in ("accuracy", "uar"):
            cells.append(_cell(*validation.summary(system, "clip", metric)) if val else "n/a")
            cells.append(_cell(*evaluation.summary(system, "clip", metric)))
        lines.append(f"| `{system}` | {cells[0]} | {cells[1]} | {cells[2]} | {cells[3]} |")
    return lines


def _per_fold_lines(evaluation: Evaluation) -> list[str]:
    """Clip-level accuracy of every system in every fold: the spread behind the std."""
    folds = sorted({f for per_fold in evaluation.scores.values() for f in per_fold})
    lines = [
        "",
        "## Clip-level accuracy per fold (%)",
        "",
        "| system | " + " | ".join(f"fold {f}" for f in folds) + " |",
        "|---|" + "---|" * len(folds),
    ]
    for system, per_fold in evaluation.scores.items():
        cells = [
            f"{100 * per_fold[f]['clip']['accuracy']:.1f}" if f in per_fold else "-" for f in folds
        ]
        lines.append(f"| `{system}` | " + " | ".join(cells) + " |")
    return lines


def _fusion_lines(evaluation: Evaluation) -> list[str]:
    """ELM-1's gender accuracy and the rows the fusion could not pair, per fold."""
    if not evaluation.fusion:
        return []
    gender = _cell(*mean_std(gender_accuracies(evaluation)))
    lines = [
        "",
        "## Fusion",
        "",
        f"ELM-1 gender accuracy on the test segments of known gender: {gender} %.",
        "",
        "| fold | train rows | validation rows | test rows | test rows left out (one "
        "modality only) | ELM-1 gender accuracy (validation) | (test) |",
        "|---|---|---|---|---|---|---|",
    ]
    for fold, info in sorted(evaluation.fusion.items()):
        cells = [
            "n/a" if a is None else f"{100 * a:.1f} %"
            for a in (info.get("elm1_validation_gender_accuracy"), info.get("elm1_gender_accuracy"))
        ]
        lines.append(
            f"| {fold} | {info.get('n_train_rows', 'n/a')} "
            f"| {info.get('n_validation_rows', 'n/a')} | {info.get('n_test_rows', 'n/a')} "
            f"| {info.get('pairing', {}).get('test_rows_left_out', 0)} | {cells[0]} | {cells[1]} |"
        )
    return lines


def write_outputs(
    evaluation: Evaluation,
    validation: Evaluation | None,
    metrics_path: str | Path,
    summary_path: str | Path,
    confusion_path: str | Path,
    report_path: str | Path,
) -> dict[str, Any]:
    """Write ``metrics.json`` (the headline), ``summary.json`` (every number),
    ``confusion.json`` (a DVC ``confusion`` plot's rows) and ``report.md``; returns the
    summary."""
    summary = summary_json(evaluation, validation)
    outputs = {
        Path(metrics_path): json.dumps(metrics_json(evaluation, validation), indent=2) + "\n",
        Path(summary_path): json.dumps(summary, indent=2) + "\n",
        Path(confusion_path): json.dumps(evaluation.confusion, indent=1) + "\n",
        Path(report_path): report_markdown(evaluation, validation),
    }
    for path, text in outputs.items():
        with atomic_path(path) as partial:
            partial.write_text(text)
    return summary


def class_names(classes: Sequence[str] | None, index: pd.DataFrame) -> list[str]:
    """``data.classes``, or the index's emotions in label order when it is null."""
    if classes:
        return [str(c) for c in classes]
    pairs = index[["label", "emotion"]].drop_duplicates().sort_values("label")
    return pairs["emotion"].astype(str).tolist()
