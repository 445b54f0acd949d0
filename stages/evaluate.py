"""Stage `evaluate`: every system's scores over all folds, and the report.

    python stages/evaluate.py data/index.csv data/predictions data/validation \\
        metrics/fusion metrics/metrics.json metrics/summary.json metrics/confusion.json \\
        metrics/report.md

Reads every data/predictions/fold*/<system>.csv (test) and data/validation/fold*/
<system>.csv (validation speakers), the fit_elm stage's metrics/fusion/fold*.json and the
index (for the training class balance behind chance level); params `data.classes`,
`split.protocol`, `base.speaker_norm` (the report says what the figures assume). Writes
the headline (each system's clip-level test and validation accuracy and UAR, in git) to
metrics.json, every number (mean and std over folds, segment and clip level) to
summary.json, the paper's system's clip-level (actual, predicted) rows to confusion.json
and the full table to report.md. The work is
:func:`avemotion.evaluation.evaluate_run`.
"""

from __future__ import annotations

import sys
from pathlib import Path

from avemotion.errors import BadInputError, run_stage
from avemotion.evaluation import class_names, evaluate_run, evaluate_validation, write_outputs
from avemotion.index import read_index
from avemotion.params import stage_params

USAGE = (
    "usage: python stages/evaluate.py INDEX_CSV PREDICTIONS_DIR VALIDATION_DIR "
    "FUSION_METRICS_DIR METRICS_JSON SUMMARY_JSON CONFUSION_JSON REPORT_MD"
)


def main() -> None:
    if len(sys.argv) != 9:
        raise BadInputError(USAGE)
    paths = [Path(p) for p in sys.argv[1:]]
    index_path, predictions, validation_dir, fusion = paths[:4]
    metrics, summary, confusion, report = paths[4:]
    params = stage_params("evaluate")
    index = read_index(index_path)
    classes = class_names(params.data.classes, index)
    protocol, speaker_norm = params.split.protocol, params.base.speaker_norm
    evaluation = evaluate_run(predictions, fusion, index, classes, protocol, speaker_norm)
    validation = evaluate_validation(validation_dir, index, classes, protocol, speaker_norm)
    numbers = write_outputs(evaluation, validation, metrics, summary, confusion, report)
    for system in evaluation.scores:
        clip = numbers["test"]["clip"][system]
        val = numbers.get("validation", {}).get("clip", {}).get(system, {}).get("accuracy_mean")
        print(
            f"{system}: clip accuracy {clip['accuracy_mean']:.3f} ± {clip['accuracy_std']:.3f}, "
            f"UAR {clip['uar_mean']:.3f}; validation accuracy "
            f"{'n/a' if val is None else f'{val:.3f}'}"
        )
    print(f"report: {report}")


if __name__ == "__main__":
    run_stage(main)
