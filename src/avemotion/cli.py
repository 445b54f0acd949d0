"""The ``avemotion`` command: ``avemotion predict PATH...`` labels clips with a trained
bundle (``python -m avemotion predict`` works too).

Exit status: 0 when every input was predicted, 1 when some could not be (each named on
stderr with its reason; the others are still predicted), 2 when nothing could start (no
bundle, a refused bundle, bad options).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from avemotion.errors import BadInputError

DEFAULT_BUNDLE = Path("models/bundle")


def parser() -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(prog="avemotion", description=__doc__.splitlines()[0])
    commands = main.add_subparsers(dest="command", required=True)
    predict = commands.add_parser(
        "predict",
        help="emotion labels for clips, per 2 s segment and per clip",
        description="Predict the emotion of each clip (files, folders searched recursively "
        "for media files, or glob patterns) with a model bundle.",
    )
    predict.add_argument("paths", nargs="+", metavar="PATH", help="files, folders or globs")
    predict.add_argument(
        "--model",
        type=Path,
        default=DEFAULT_BUNDLE,
        help=f"the bundle folder (default: the pipeline's, {DEFAULT_BUNDLE})",
    )
    predict.add_argument("--format", choices=("table", "csv", "json"), default="table")
    predict.add_argument(
        "--output", "-o", default="-", help="file for the table, CSV or JSON (default: stdout)"
    )
    predict.add_argument("--plot", type=Path, help="folder for one timeline PNG per clip")
    predict.add_argument(
        "--n-jobs", type=int, default=1, help="processes for the front-ends (-1: all cores)"
    )
    predict.add_argument("--batch-size", type=int, default=64, help="segments per forward pass")
    return main


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return predict(args)
    except BadInputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


def predict(args: argparse.Namespace) -> int:
    """``avemotion predict``: see :func:`parser` for the options."""
    from avemotion.params import resolve_n_jobs
    from avemotion.predict.bundle import load_bundle
    from avemotion.predict.engine import Predictor
    from avemotion.predict.inputs import discover
    from avemotion.predict.report import (
        format_table,
        plot_timeline,
        timeline_path,
        write_csv,
        write_json,
    )
    from avemotion.predict.results import ClipPrediction

    bundle = load_bundle(args.model)
    targets = discover(args.paths)
    readable = [t.path for t in targets if t.error is None]
    engine = Predictor(bundle, n_jobs=resolve_n_jobs(args.n_jobs), batch_size=args.batch_size)
    predicted = iter(engine.predict(readable))
    results: list[ClipPrediction] = []
    for target in targets:
        if target.error is not None:
            result = ClipPrediction.failed(target.path, bundle.classes, target.error)
        else:
            result = next(predicted)
        for warning in result.warnings:
            print(f"warning: {result.file}: {warning}", file=sys.stderr)
        if result.error is not None:
            print(f"error: {result.file}: {result.error}", file=sys.stderr)
        results.append(result)
    if args.plot is not None:
        args.plot.mkdir(parents=True, exist_ok=True)
        for i, result in enumerate(results):
            if result.status == "ok":
                plot_timeline(result, timeline_path(args.plot, result.file, i))
    writers = {
        "csv": write_csv,
        "json": write_json,
        "table": lambda rows, stream: stream.write(format_table(rows) + "\n"),
    }
    if args.output == "-":
        writers[args.format](results, sys.stdout)
    else:
        with open(args.output, "w", encoding="utf-8", newline="") as stream:
            writers[args.format](results, stream)
    return 0 if all(r.status == "ok" for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
