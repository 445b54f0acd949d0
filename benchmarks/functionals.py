"""How fast are the openSMILE functionals of each set? (A benchmark, not a test.)

    .venv/bin/python benchmarks/functionals.py [--root ../shared/data/ravdess-speech]
        [--limit N] [--repeats 1] [--n-jobs 1] [--sets egemaps compare]

Over the clips under ``--root`` (1080 RAVDESS speech FLACs by default), for each set it
times

- segments: :func:`avemotion.audio.functionals.clip_functionals` at the segment level
  (decode + 2 s segments + openSMILE on each), through the stage's process pool;
- clips: the same at the clip level (openSMILE once over each clip's covered audio);
- stage: :func:`avemotion.audio.functionals.build_functionals` for that set alone, both
  passes plus HDF5 writing,

and prints segments (or clips) per second and the size of the tables. Each timing is
the best of ``--repeats`` passes. Original rows only (``augment.snr_db`` is []): each
noisy copy costs what an original row does.
"""

# ruff: noqa: E402  (thread limits must be set before numpy is imported)
from __future__ import annotations

import os

for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

import argparse
import functools
import tempfile
import time
from pathlib import Path

from audio_frontend import DEFAULT_ROOT, build_index, timed

from avemotion.audio.functionals import (
    FEATURE_SETS,
    FunctionalsSettings,
    build_functionals,
    clip_functionals,
)
from avemotion.clip_stage import clip_jobs
from avemotion.parallel import map_clips
from avemotion.params import validate_params
from avemotion.segments import segment_starts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    parser.add_argument("--limit", type=int, default=None, help="first N clips only")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--n-jobs", type=int, default=1)
    parser.add_argument("--sets", nargs="+", default=list(FEATURE_SETS), choices=FEATURE_SETS)
    args = parser.parse_args()

    index = build_index(args.root, args.limit)
    jobs = clip_jobs(index, "audio", augment=False)
    n_segments = sum(len(segment_starts(d)) for d in index.audio_duration_s)
    n_clips = len(index)
    print(f"clips: {n_clips} under {args.root}; segments: {n_segments} of 2 s")
    print(f"n_jobs={args.n_jobs}; best of {args.repeats}")
    for set_name in args.sets:
        params = validate_params({
            "base": {"modalities": ["audio"], "n_jobs": args.n_jobs},
            "augment": {"snr_db": []},
            "functionals": {"sets": [set_name]},
        })  # fmt: skip
        settings = FunctionalsSettings.from_params(params)
        seconds = {}
        for level in ("segment", "clip"):
            worker = functools.partial(
                clip_functionals, settings=settings, set_name=set_name, level=level
            )
            seconds[level] = min(
                timed(map_clips(worker, jobs, args.n_jobs, desc=f"{set_name} {level}"))
                for _ in range(args.repeats)
            )
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            build_functionals(index, params, Path(tmp) / "out", Path(tmp) / "rejects.csv")
            stage = time.perf_counter() - start
            mib = sum(p.stat().st_size for p in (Path(tmp) / "out").iterdir()) / 2**20
        segment_s, clip_s = seconds["segment"], seconds["clip"]
        print(f"{set_name} ({FEATURE_SETS[set_name]}):")
        print(f"  segments : {segment_s:7.2f} s  {n_segments / segment_s:8.1f} segments/s")
        print(f"  clips    : {clip_s:7.2f} s  {n_clips / clip_s:8.1f} clips/s")
        print(
            f"  stage    : {stage:7.2f} s  {n_segments / stage:8.1f} segments/s with the clip "
            f"rows and HDF5 ({mib:.1f} MiB)"
        )


if __name__ == "__main__":
    main()
