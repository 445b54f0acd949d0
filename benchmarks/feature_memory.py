"""Peak memory and wall time of every feature stage at 1x and 4x the demo (not a test).

    .venv/bin/python benchmarks/feature_memory.py [--scales 3 12] [--n-jobs 2] [--keep DIR]
        [--stages build_spectrograms ...]

For each ``demo.takes_per_emotion`` in ``--scales`` (3 is the demo, 12 four times it) it
renders the demo into a scratch folder, indexes it, then runs each feature stage's own
script, exactly as ``dvc.yaml``'s ``cmd`` gives it, in a fresh process with the repo's
``params.yaml`` (only the demo's size, its folder and ``base.n_jobs`` changed). It prints,
per stage and scale, the wall time and two peaks of resident memory:

- ``stage MB``: the stage's own process, the one that writes the HDF5 table (what grew
  with the dataset before the bounded task window and the buffered writer);
- ``worker MB``: the largest of its worker processes.

A stage whose memory is bounded shows the same peaks at both scales and a time about four
times as long. Figures from one run; other work on the machine only makes them larger.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
#: The feature stages, in the order they run; each reads the index or a table before it.
FEATURE_STAGES = (
    "build_spectrograms",
    "build_mfcc",
    "build_functionals",
    "extract_keyframes",
    "build_visual_tensors",
)
#: Runs a stage script in this process and writes its peak RSS (self, children) on exit.
MEASURE = """
import json, resource, runpy, sys
out, script, *args = sys.argv[1:]
sys.argv = [script, *args]
try:
    runpy.run_path(script, run_name="__main__")
finally:
    peak = {who: resource.getrusage(flag).ru_maxrss / 1024 for who, flag in
            (("stage", resource.RUSAGE_SELF), ("worker", resource.RUSAGE_CHILDREN))}
    open(out, "w").write(json.dumps(peak))
"""


def stage_command(pipeline: dict, stage: str) -> list[str]:
    """The stage's ``cmd`` from dvc.yaml as arguments, its script made absolute."""
    words = shlex.split(pipeline["stages"][stage]["cmd"])
    if words[0] != "python" or not words[1].startswith("stages/"):
        raise SystemExit(f"{stage}: expected 'python stages/...' as its cmd, got {words[:2]}")
    return [str(REPO / words[1]), *words[2:]]


def prepare(folder: Path, takes: int, n_jobs: int) -> None:
    """params.yaml and dvc.yaml in ``folder``, with the demo of ``takes`` takes rendered
    and indexed there."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["demo"]["takes_per_emotion"] = takes
    params["base"]["n_jobs"] = n_jobs
    (folder / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (folder / "dvc.yaml").write_text((REPO / "dvc.yaml").read_text())
    pipeline = yaml.safe_load((REPO / "dvc.yaml").read_text())
    for stage in ("check_params", "make_demo", "index"):
        run(folder, stage_command(pipeline, stage), quiet=True)


def run(folder: Path, command: list[str], quiet: bool = False) -> dict[str, float]:
    """Run ``command`` (a stage script and its arguments) in ``folder``; its peaks and time."""
    peaks = folder / "peaks.json"
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", MEASURE, str(peaks), *command],
        cwd=folder,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO / "src")},
    )
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command[:1])} failed:\n{done.stderr[-2000:]}")
    if not quiet and done.stdout.strip():
        print("   ", done.stdout.strip().splitlines()[-1], file=sys.stderr)
    return {**json.loads(peaks.read_text()), "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", type=int, nargs="+", default=[3, 12])
    parser.add_argument("--n-jobs", type=int, default=2)
    parser.add_argument(
        "--stages", nargs="+", choices=FEATURE_STAGES, default=FEATURE_STAGES, help="a subset"
    )
    parser.add_argument(
        "--keep", type=Path, default=None, help="work here and keep it; a demo there is reused"
    )
    args = parser.parse_args()
    pipeline = yaml.safe_load((REPO / "dvc.yaml").read_text())
    stages = [stage for stage in FEATURE_STAGES if stage in args.stages]  # in pipeline order
    results: dict[str, dict[int, dict[str, float]]] = {stage: {} for stage in stages}
    clips: dict[int, int] = {}
    with tempfile.TemporaryDirectory() as scratch:
        for takes in args.scales:
            folder = (args.keep or Path(scratch)) / f"takes{takes}"
            folder.mkdir(parents=True, exist_ok=True)
            if not (folder / "data/index.csv").is_file():
                print(f"demo with {takes} takes per emotion: rendering", file=sys.stderr)
                prepare(folder, takes, args.n_jobs)
            clips[takes] = sum(1 for _ in open(folder / "data/index.csv")) - 1
            for stage in stages:
                results[stage][takes] = run(folder, stage_command(pipeline, stage))
    header = " | ".join(
        f"{t} takes ({clips[t]} clips): s, stage MB, worker MB" for t in args.scales
    )
    print(f"| stage | {header} |")
    print("|---|" + "---|" * len(args.scales))
    for stage, by_scale in results.items():
        cells = " | ".join(
            f"{r['seconds']:.1f} s, {r['stage']:.0f}, {r['worker']:.0f}"
            for r in (by_scale[t] for t in args.scales)
        )
        print(f"| {stage} | {cells} |")


if __name__ == "__main__":
    main()
