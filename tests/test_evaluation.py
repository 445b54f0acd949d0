"""Metrics on small hand-made prediction tables, checked against values worked out by hand."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from avemotion.errors import BadInputError
from avemotion.evaluation import (
    classification_scores,
    clip_level,
    evaluate_run,
    evaluate_validation,
    metrics_json,
    read_predictions,
    report_markdown,
    summary_json,
    write_outputs,
    write_predictions,
)

CLASSES = ["neutral", "happy", "sad"]

# Fold 0: four clips, six segments. Argmax per segment: a0 0 (right), a1 1 (wrong),
# b0 1 (right), c0 0 (wrong), c1 2 (right), d0 0 (right).
FOLD0 = [
    ("a", 0, 0, [0.6, 0.3, 0.1]),
    ("a", 1, 0, [0.2, 0.7, 0.1]),
    ("b", 0, 1, [0.1, 0.8, 0.1]),
    ("c", 0, 2, [0.5, 0.1, 0.4]),
    ("c", 1, 2, [0.1, 0.2, 0.7]),
    ("d", 0, 0, [0.9, 0.05, 0.05]),
]
# Fold 1: one clip of class 1, predicted 2; classes 0 and 2 are not tested.
FOLD1 = [("e", 0, 1, [0.2, 0.3, 0.5])]


def write_table(path: Path, rows: list) -> None:
    write_predictions(
        path,
        [r[0] for r in rows],
        [r[1] for r in rows],
        [r[2] for r in rows],
        np.array([r[3] for r in rows]).reshape(len(rows), len(CLASSES)),
    )


def table(rows: list) -> pd.DataFrame:
    frame = pd.DataFrame({"clip_id": [r[0] for r in rows], "segment": [r[1] for r in rows]})
    frame["label"] = [r[2] for r in rows]
    frame[["p0", "p1", "p2"]] = np.array([r[3] for r in rows])
    return frame


def test_segment_level_scores_by_hand() -> None:
    frame = table(FOLD0)
    y_pred = frame[["p0", "p1", "p2"]].to_numpy().argmax(axis=1)
    scores = classification_scores(frame["label"].to_numpy(), y_pred, 3)
    assert scores["accuracy"] == pytest.approx(4 / 6)
    # recall: class 0 (a0, a1, d0) 2/3; class 1 (b0) 1; class 2 (c0, c1) 1/2
    assert scores["recall"] == pytest.approx([2 / 3, 1.0, 1 / 2])
    assert scores["uar"] == pytest.approx((2 / 3 + 1 + 1 / 2) / 3)
    # precision: class 0 2/3 (a0, c0, d0), class 1 1/2 (a1, b0), class 2 1 (c1): F1 2/3 each
    assert scores["macro_f1"] == pytest.approx(2 / 3)
    assert scores["n"] == 6


def test_clip_level_averages_segment_scores_then_takes_the_argmax() -> None:
    clips = clip_level(table(FOLD0))
    assert clips["clip_id"].tolist() == ["a", "b", "c", "d"]
    np.testing.assert_allclose(clips.loc[0, ["p0", "p1", "p2"]].to_numpy(float), [0.4, 0.5, 0.1])
    np.testing.assert_allclose(clips.loc[2, ["p0", "p1", "p2"]].to_numpy(float), [0.3, 0.15, 0.55])
    y_pred = clips[["p0", "p1", "p2"]].to_numpy().argmax(axis=1)
    assert y_pred.tolist() == [1, 1, 2, 0]  # clip a flips to class 1, clip c to class 2
    scores = classification_scores(clips["label"].to_numpy(), y_pred, 3)
    assert scores["accuracy"] == pytest.approx(3 / 4)
    assert scores["recall"] == pytest.approx([1 / 2, 1.0, 1.0])
    assert scores["uar"] == pytest.approx(2.5 / 3)
    assert scores["macro_f1"] == pytest.approx((2 / 3 + 2 / 3 + 1) / 3)


def test_a_class_absent_from_the_test_fold_counts_in_neither_uar_nor_f1() -> None:
    scores = classification_scores(np.array([1]), np.array([2]), 3)
    assert scores["recall"] == [None, 0.0, None]
    assert scores["uar"] == 0.0 and scores["macro_f1"] == 0.0


def test_mixed_labels_in_one_clip_are_an_error() -> None:
    with pytest.raises(ValueError, match="different labels"):
        clip_level(table([("a", 0, 0, [1, 0, 0]), ("a", 1, 1, [1, 0, 0])]))


@pytest.fixture
def run(tmp_path) -> tuple[Path, Path, pd.DataFrame]:
    predictions, fusion = tmp_path / "predictions", tmp_path / "fusion"
    write_table(predictions / "fold0" / "elm_svm.csv", FOLD0)
    write_table(predictions / "fold1" / "elm_svm.csv", FOLD1)
    write_table(predictions / "fold0" / "video_cnn.csv", [])  # not run: header only
    fusion.mkdir()
    (fusion / "fold0.json").write_text(json.dumps({"elm1_gender_accuracy": 0.9}))
    (fusion / "fold1.json").write_text(json.dumps({"elm1_gender_accuracy": None}))
    # training clips: fold 0 trains on e, f, g, h (labels 1, 1, 1, 2): majority 1;
    # fold 1 trains on a, b, c, d (labels 0, 1, 2, 0): majority 0
    index = pd.DataFrame(
        {
            "clip_id": list("abcdefgh"),
            "label": [0, 1, 2, 0, 1, 1, 1, 2],
            "fold": [0, 0, 0, 0, 1, 1, 1, 1],
        }
    )
    return predictions, fusion, index


def test_run_means_stds_chance_and_gender(run) -> None:
    predictions, fusion, index = run
    evaluation = evaluate_run(predictions, fusion, index, CLASSES, protocol="kfold")
    assert evaluation.folds == [0, 1] and evaluation.not_run == ["video_cnn"]
    summary = summary_json(evaluation, None)
    assert "validation" not in summary
    metrics = summary["test"]
    clip = metrics["clip"]["elm_svm"]
    assert clip["accuracy_mean"] == pytest.approx(0.375, abs=1e-4)  # (3/4 + 0) / 2
    assert clip["accuracy_std"] == pytest.approx(0.75 / np.sqrt(2), abs=1e-4)  # ddof=1
    assert clip["uar_mean"] == pytest.approx((2.5 / 3 + 0) / 2, abs=1e-4)
    assert metrics["segment"]["elm_svm"]["accuracy_mean"] == pytest.approx(1 / 3, abs=1e-4)
    assert "video_cnn" not in metrics["clip"]
    # chance: fold 0 majority 1 -> 1 of 4 clips, 1 of 6 segments; fold 1 majority 0 -> 0
    assert metrics["chance"]["clip_accuracy_mean"] == pytest.approx(0.125, abs=1e-4)
    assert metrics["chance"]["segment_accuracy_mean"] == pytest.approx(1 / 12, abs=1e-4)
    assert metrics["chance"]["uar"] == pytest.approx(1 / 3, abs=1e-4)
    assert metrics["gender_accuracy_mean"] == 0.9 and metrics["gender_accuracy_std"] == 0.0
    headline = metrics_json(evaluation, None)
    assert headline["test"]["elm_svm"] == {"acc": 0.375, "uar": round((2.5 / 3) / 2, 4)}
    assert headline["chance"]["acc"] == 0.125 and headline["gender_acc"] == 0.9
    # per-class recall over the folds where the class was tested
    recall = evaluation.recall_summary("elm_svm", "clip")
    assert recall[0] == (0.5, 0.0) and recall[1][0] == pytest.approx(0.5)
    assert evaluation.confusion == [
        {"actual": a, "predicted": p}
        for a, p in [
            ("neutral", "happy"),
            ("happy", "happy"),
            ("sad", "sad"),
            ("neutral", "neutral"),
            ("happy", "sad"),
        ]
    ]
    report = report_markdown(evaluation)
    assert "| `elm_svm` | clip | 37.5 ± 53.0 |" in report
    assert "mix speakers" in report and "not run" in report
    assert "| neutral | 50.0 ± 0.0 |" in report


def test_outputs_are_written(run, tmp_path) -> None:
    predictions, fusion, index = run
    evaluation = evaluate_run(predictions, fusion, index, CLASSES)
    names = ("metrics.json", "summary.json", "confusion.json", "report.md")
    paths = [tmp_path / "m" / name for name in names]
    summary = write_outputs(evaluation, None, *paths)
    assert json.loads(paths[1].read_text()) == summary
    assert set(json.loads(paths[0].read_text())) == {"test", "chance", "gender_acc"}
    assert len(json.loads(paths[2].read_text())) == 5
    assert paths[3].read_text().startswith("# Results")


def test_validation_scores_sit_beside_test_scores(run, tmp_path) -> None:
    predictions, fusion, index = run
    validation_dir = tmp_path / "validation"
    # validation speakers of fold 0: clips e (right) and f (wrong); fold 1's: none scored
    write_table(
        validation_dir / "fold0" / "elm_svm.csv",
        [("e", 0, 1, [0.1, 0.8, 0.1]), ("f", 0, 1, [0.7, 0.2, 0.1])],
    )
    write_table(validation_dir / "fold1" / "elm_svm.csv", [])
    evaluation = evaluate_run(predictions, fusion, index, CLASSES)
    validation = evaluate_validation(validation_dir, index, CLASSES)
    assert validation is not None and list(validation.scores["elm_svm"]) == [0]
    headline = metrics_json(evaluation, validation)
    assert headline["val"]["elm_svm"]["acc"] == 0.5
    assert headline["test"]["elm_svm"]["acc"] == 0.375
    report = report_markdown(evaluation, validation)
    assert "| `elm_svm` | 50.0 ± 0.0 | 37.5 ± 53.0 |" in report
    empty = tmp_path / "none"
    write_table(empty / "fold0" / "elm_svm.csv", [])
    assert evaluate_validation(empty, index, CLASSES) is None


def test_bad_tables_are_named(run, tmp_path) -> None:
    predictions, fusion, index = run
    with pytest.raises(BadInputError, match="3 class columns, data.classes has 4"):
        evaluate_run(predictions, fusion, index, [*CLASSES, "angry"])
    (predictions / "fold1" / "mystery.csv").write_text("clip_id,segment,label,p0\n")
    with pytest.raises(BadInputError, match="unknown systems"):
        evaluate_run(predictions, fusion, index, CLASSES)
    bad = tmp_path / "bad.csv"
    bad.write_text("clip,score\na,1\n")
    with pytest.raises(BadInputError, match="not a prediction table"):
        read_predictions(bad)
    with pytest.raises(BadInputError, match="no fold"):
        evaluate_run(tmp_path / "fusion", None, index, CLASSES)


def test_folds_outside_the_index_split_are_ignored(run) -> None:
    predictions, fusion, index = run
    write_table(predictions / "fold7" / "elm_svm.csv", FOLD1)  # left from an earlier split
    evaluation = evaluate_run(predictions, fusion, index, CLASSES)
    assert evaluation.folds == [0, 1] and evaluation.stale_folds == [7]
    assert "ignored: predictions of folds [7]" in report_markdown(evaluation)
    one_fold = index.assign(fold=[0, 0, 0, 0, 3, 3, 3, 3])  # only fold 0 of the split ran
    evaluation = evaluate_run(predictions, fusion, one_fold, CLASSES)
    assert evaluation.folds == [0] and evaluation.index_folds == [0, 3]
    assert "1 fold(s) evaluated: 0 (the split has 2)" in report_markdown(evaluation)


@pytest.mark.parametrize("speaker_norm", [False, True])
def test_the_report_says_when_features_were_speaker_normalised(run, speaker_norm) -> None:
    predictions, fusion, index = run
    evaluation = evaluate_run(predictions, fusion, index, CLASSES, "speaker", speaker_norm)
    report = report_markdown(evaluation)
    assert ("Speaker-normalised features (`base.speaker_norm`)" in report) is speaker_norm
    assert "a speaker's recordings arrive together" in report or not speaker_norm


def test_report_lists_clip_accuracy_per_fold(run) -> None:
    predictions, fusion, index = run
    report = report_markdown(evaluate_run(predictions, fusion, index, CLASSES))
    assert "## Clip-level accuracy per fold (%)" in report
    assert "| `elm_svm` | 75.0 | 0.0 |" in report  # fold 0: 3 of 4 clips; fold 1: 0 of 1
