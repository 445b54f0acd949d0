"""Stage `evaluate`: every system's scores over all folds, and the report.

    python stages/evaluate.py data/index.csv data/predictions metrics/fusion \\
        metrics/metrics.json metrics/confusion.json metrics/report.md

Reads every data/predictions/fold*/<system>.csv, the fit_elm stage's
metrics/fusion/fold*.json and the index (for the training class balance behind chance
level); params `data.classes`, `split.protocol`. Writes the key numbers (mean and std over
folds, segment and clip level) to metrics.json, the paper's system's clip-level
(actual, predicted) rows to confusion.json and the full table to report.md. The work is
:func:`avemotion.evaluation.evaluate_run`.
"""

from __future__ import annotations

import sys
from pathlib import Path

from avemotion.errors import BadInputError, run_stage
from avemotion.evaluation import class_names, evaluate_run, write_outputs
from avemotion.index import read_index
from avemotion.params import stage_params

USAGE = (
    "usage: python stages/evaluate.py INDEX_CSV PREDICTIONS_DIR FUSION_METRICS_DIR "
    "METRICS_JSON CONFUSION_JSON REPORT_MD"
)


def main() -> None:
    if len(sys.argv) != 7:
        raise BadInputError(USAGE)
    index_path, predictions, fusion, metrics, confusion, report = (Path(p) for p in sys.argv[1:])
    params = stage_params("evaluate")
    index = read_index(index_path)
    classes = class_names(params.data.classes, index)
    evaluation = evaluate_run(predictions, fusion, index, classes, params.split.protocol)
    numbers = write_outputs(evaluation, metrics, confusion, report)
    for system in evaluation.scores:
        clip = numbers["clip"][system]
        print(
            f"{system}: clip accuracy {clip['accuracy_mean']:.3f} ± {clip['accuracy_std']:.3f}, "
            f"UAR {clip['uar_mean']:.3f}"
        )
    print(f"report: {report}")


if __name__ == "__main__":
    run_stage(main)
