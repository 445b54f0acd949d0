"""Print the README's results table from runs' ``metrics/summary.json`` files.

    python benchmarks/results_table.py --column demo metrics/summary.json \\
        --column "RAVDESS speech" run-seed1/summary.json run-seed2/summary.json

Each column is one or more runs (e.g. seeds) of the same setup; a cell is the clip-level
accuracy, mean ± std over every fold of every run given (pooled), in %, for the test
folds, with the validation speakers' figure beside it (``val``). Systems a column did
not run show ``-``. The table is generated, never typed, so the README cannot drift from
the runs it reports.

With ``--per-run``, each column of several runs is then broken down by run (named by the
folder that holds its summary.json): each run's mean over its folds, test (val), the
pooled test figure, the pooled clip UAR, and ELM-1's gender accuracy per run.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from avemotion.evaluation import SYSTEMS

LABELS = {
    "elm_svm": "paper: CNN features -> ELM-1 -> ELM-2 -> SVM (`elm_svm`)",
    "elm_svm_crossfit": "the same, SVM on out-of-fold ELM-2 scores (`elm_svm_crossfit`)",
    "elm_svm_cnn_crossfit": "the same, fitted on inner CNNs' out-of-fold features "
    "(`elm_svm_cnn_crossfit`)",
    "audio_cnn": "audio 2D-CNN alone",
    "video_cnn": "video 3D-CNN alone",
    "late_fusion": "late fusion (mean of the two CNNs)",
    "mfcc_svm": "MFCC statistics + SVM (Avots et al.)",
    "mfcc_svm_video_late": "MFCC-SVM + video CNN, decision level",
    "egemaps_svm": "eGeMAPS functionals + SVM",
    "compare_svm": "ComParE functionals + SVM",
}


def pooled(runs: list[dict], part: str, system: str) -> tuple[float, float] | None:
    """Mean and sample std of the clip accuracy over every fold of every run."""
    values = [
        value
        for run in runs
        for value in run.get(part, {})
        .get("clip", {})
        .get(system, {})
        .get("accuracy_per_fold", {})
        .values()
        if value is not None
    ]
    if not values:
        return None
    std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    return float(np.mean(values)), std


def cell(runs: list[dict], system: str) -> str:
    test, val = pooled(runs, "test", system), pooled(runs, "validation", system)
    if test is None:
        return "-"
    text = f"{100 * test[0]:.1f} ± {100 * test[1]:.1f}"
    return text + (f" (val {100 * val[0]:.1f})" if val else "")


def chance(runs: list[dict]) -> str:
    values = [r["test"]["chance"]["clip_accuracy_mean"] for r in runs]
    return f"{100 * float(np.mean(values)):.1f}"


def run_mean(run: dict, part: str, system: str, metric: str = "accuracy") -> float | None:
    """A run's mean over its folds of a clip-level metric, or None where it did not run."""
    return run.get(part, {}).get("clip", {}).get(system, {}).get(f"{metric}_mean")


def percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def per_run_table(name: str, runs: list[dict], labels: list[str]) -> None:
    """One column's runs side by side (see the module docstring)."""
    print(f"\n{name}, per run: clip accuracy %, test (val); pooled over folds x runs\n")
    print("| system | " + " | ".join(labels) + " | pooled test | pooled UAR |")
    print("|---|" + "---|" * (len(labels) + 2))
    for system in SYSTEMS:
        test = pooled(runs, "test", system)
        if test is None:
            continue
        cells = [
            f"{percent(run_mean(r, 'test', system))} ({percent(run_mean(r, 'validation', system))})"
            for r in runs
        ]
        uars = [u for r in runs if (u := run_mean(r, "test", system, "uar")) is not None]
        pooled_test = f"{100 * test[0]:.1f} ± {100 * test[1]:.1f}"
        uar = percent(float(np.mean(uars))) if uars else "-"
        print(f"| {system} | " + " | ".join(cells) + f" | {pooled_test} | {uar} |")
    genders = [percent(r["test"].get("gender_accuracy_mean")) for r in runs]
    print(f"\nELM-1 gender accuracy (test), per run: {', '.join(genders)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--column",
        nargs="+",
        action="append",
        metavar=("NAME", "SUMMARY_JSON"),
        required=True,
        help="a column name, then the summary.json of each run it pools",
    )
    parser.add_argument(
        "--per-run", action="store_true", help="then each column of several runs, run by run"
    )
    args = parser.parse_args()
    columns = {
        name: [json.loads(Path(p).read_text()) for p in paths] for name, *paths in args.column
    }
    run_labels = {name: [Path(p).parent.name for p in paths] for name, *paths in args.column}
    header = "| system | " + " | ".join(
        f"{name} ({len(runs)} run{'s' if len(runs) > 1 else ''})" for name, runs in columns.items()
    )
    print(header + " |")
    print("|---|" + "---|" * len(columns))
    for system in SYSTEMS:
        cells = [cell(runs, system) for runs in columns.values()]
        if any(c != "-" for c in cells):
            print(f"| {LABELS.get(system, system)} | " + " | ".join(cells) + " |")
    print("| chance (majority class) | " + " | ".join(chance(r) for r in columns.values()) + " |")
    if args.per_run:
        for name, runs in columns.items():
            if len(runs) > 1:
                per_run_table(name, runs, run_labels[name])


if __name__ == "__main__":
    main()
