"""Stage `export_model`: the final model as one bundle folder for `avemotion predict`.

    python stages/export_model.py --models models/final --index data/index.csv \\
        --out models/bundle

Reads the final model that train_final and fit_final wrote under `--models`
(`<modality>/best.pt`, `fusion/systems/<system>.joblib`), the class names (`data.classes`,
or the index's emotions when it is null) and params `export` (`export.system`: which
system predicts),
`base.{modalities,segment_s,hop_s,last_segment,min_segment_s,profile,speaker_norm}`,
`audio`, `video`, `models`, `functionals.sets`, `fusion.{inputs,gender_inputs}`: the ones
that shape inference, stored in the bundle. Writes `--out` (see
:mod:`avemotion.predict.bundle`): state dicts, the fusion as skops, a manifest with the
version and every file's SHA-256. The work is :func:`avemotion.predict.bundle.export_bundle`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from avemotion.errors import run_stage
from avemotion.evaluation import class_names
from avemotion.params import stage_params
from avemotion.predict.bundle import ModelFiles, export_bundle


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, required=True, help="the final model's folder")
    parser.add_argument("--index", type=Path, required=True, help="data/index.csv (class names)")
    parser.add_argument("--out", type=Path, required=True, help="bundle folder to write")
    return parser.parse_args()


def main() -> None:
    args = arguments()
    params = stage_params("export_model")
    classes = class_names(params.data.classes, pd.read_csv(args.index))
    files = ModelFiles(
        branches={m: args.models / m / "best.pt" for m in params.base.modalities},
        systems=args.models / "fusion" / "systems",
    )
    manifest = export_bundle(params, classes, files, args.out)
    print(
        f"bundle {args.out}: {manifest['system']} on {' + '.join(manifest['modalities'])}, "
        f"classes {', '.join(classes)}; files {', '.join(manifest['files'])}"
    )


if __name__ == "__main__":
    run_stage(main)
