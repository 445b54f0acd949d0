"""The demo's front-ends on the process pool and on a Dask LocalCluster (not a test).

    .venv/bin/python benchmarks/dask_backend.py [--root data/demo] [--n-jobs 2] [--limit N]

Indexes the demo clips under ``--root`` (rendered from ``params.yaml``'s ``demo:`` into a
scratch folder when that folder has none), then runs, with the repo's ``params.yaml``
(only ``data.root``, ``base.n_jobs`` and ``base.backend`` changed), each front-end stage's
function into a scratch folder, once per backend:

- ``spectrograms``: :func:`avemotion.audio.frontend.build_audio_features`;
- ``keyframes``: :func:`avemotion.video.extract_keyframes`;
- ``tensors``: :func:`avemotion.video.build_visual_tensors` on that run's keyframes.

``processes`` is the fork pool of ``--n-jobs`` processes; ``dask`` a LocalCluster of
``--n-jobs`` workers on 127.0.0.1, started for each stage's map and closed after, as a
stage run with ``base.backend: dask`` does (its start-up is timed on its own too). It
prints each stage's wall time per backend and whether the two HDF5 tables (every array,
every attribute) and the rejects are identical. One run each; other work on the machine
only makes a time longer.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import pandas as pd

from avemotion.audio.frontend import build_audio_features
from avemotion.demo import generate_demo
from avemotion.h5store import table_differences
from avemotion.index import build_index
from avemotion.parallel import Workers, map_clips
from avemotion.params import Params, load_params
from avemotion.video import build_visual_tensors, extract_keyframes

REPO = Path(__file__).resolve().parents[1]
BACKENDS = ("processes", "dask")


def with_run(params: Params, root: Path, n_jobs: int, backend: str) -> Params:
    """The repo's params with the demo folder, the job count and the backend set."""
    data = params.data.model_copy(update={"root": str(root)})
    base = params.base.model_copy(update={"n_jobs": n_jobs, "backend": backend})
    return params.model_copy(update={"data": data, "base": base})


def demo_index(
    params: Params, root: Path, n_jobs: int, scratch: Path, limit: int | None
) -> pd.DataFrame:
    """The index of the demo under ``root``, rendered into ``scratch`` if ``root`` has none."""
    if not any(root.glob("*.mp4")):
        root = scratch / "demo"
        print(f"rendering the demo into {root}")
        generate_demo(root, params.demo, n_jobs=n_jobs)
    params = with_run(params, root, n_jobs, "processes")
    clips = build_index(params.data, params.split, params.base.modalities, n_jobs).clips
    return clips if limit is None else clips.head(limit)


def run_stages(index: pd.DataFrame, params: Params, out: Path) -> dict[str, float]:
    """Each front-end stage into ``out``; its wall time in seconds."""
    out.mkdir(parents=True)
    seconds = {}
    start = time.perf_counter()
    build_audio_features(index, params, out / "audio.h5", out / "audio_rejects.csv")
    seconds["spectrograms"] = time.perf_counter() - start
    start = time.perf_counter()
    extract_keyframes(index, params, out / "keyframes.h5", out / "keyframes_rejects.csv")
    seconds["keyframes"] = time.perf_counter() - start
    start = time.perf_counter()
    build_visual_tensors(out / "keyframes.h5", params, out / "video.h5")
    seconds["tensors"] = time.perf_counter() - start
    return seconds


def cluster_start_s(n_jobs: int) -> float:
    """Seconds to start a LocalCluster, run two trivial tasks and close it."""
    start = time.perf_counter()
    list(map_clips(abs, [-1, -2], Workers(n_jobs, "dask"), quiet=True))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=REPO / "data" / "demo")
    parser.add_argument("--n-jobs", type=int, default=2)
    parser.add_argument("--limit", type=int, default=None, help="only the first N clips")
    args = parser.parse_args()
    shipped = load_params(REPO / "params.yaml")
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        index = demo_index(shipped, args.root, args.n_jobs, scratch, args.limit)
        root = Path(index.path[0]).parent
        seconds = {}
        for backend in BACKENDS:
            params = with_run(shipped, root, args.n_jobs, backend)
            seconds[backend] = run_stages(index, params, scratch / backend)
        startup = cluster_start_s(args.n_jobs)
        print(f"\n{len(index)} demo clips, {args.n_jobs} processes / {args.n_jobs} Dask workers")
        print(f"LocalCluster start + 2 tasks + close: {startup:.1f} s (paid once per stage)")
        print("| stage | processes s | dask s | identical |")
        print("|---|---|---|---|")
        tables = {"spectrograms": "audio.h5", "keyframes": "keyframes.h5", "tensors": "video.h5"}
        for stage, table in tables.items():
            found = table_differences(scratch / "processes" / table, scratch / "dask" / table)
            times = " | ".join(f"{seconds[b][stage]:.1f}" for b in BACKENDS)
            print(f"| {stage} | {times} | {'yes' if not found else 'NO: ' + ', '.join(found)} |")
        for rejects in ("audio_rejects.csv", "keyframes_rejects.csv"):
            same = (scratch / "processes" / rejects).read_bytes() == (
                scratch / "dask" / rejects
            ).read_bytes()
            print(f"{rejects}: {'identical' if same else 'DIFFERENT'}")


if __name__ == "__main__":
    main()
