"""Stage ``make_demo``: draw the generated audio-visual demo dataset into ``demo.out_dir``.

    python stages/make_demo.py

Reads params ``demo`` and ``base.n_jobs``. Writes
``<demo.out_dir>/<speaker>_<gender>_<emotion>_<take>.mp4`` (H.264 + AAC), removing stale
``.mp4`` files there first, so that a fresh clone runs the pipeline offline.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

from avemotion.demo import clip_specs, generate_demo
from avemotion.errors import run_stage
from avemotion.params import resolve_n_jobs, stage_params


def main() -> None:
    params = stage_params("make_demo")
    demo = params.demo
    out_dir = Path(demo.out_dir)
    n_jobs = resolve_n_jobs(params.base.n_jobs)

    start = time.perf_counter()
    paths = generate_demo(out_dir, demo, n_jobs=n_jobs)
    seconds = time.perf_counter() - start

    specs = [spec for _, spec in clip_specs(demo)]
    durations = [round(spec.duration_s * spec.fps) / spec.fps for spec in specs]
    speakers = {spec.speaker.speaker: spec.speaker.gender for spec in specs}
    genders = Counter(speakers.values())
    emotions = Counter(spec.emotion for spec in specs)
    size_mb = sum(path.stat().st_size for path in paths) / 1e6
    print(
        f"demo: {len(paths)} clips in {out_dir} ({size_mb:.1f} MB) in {seconds:.1f} s "
        f"on {n_jobs} process(es)\n"
        f"  speakers: {len(speakers)} ({genders['m']} male, {genders['f']} female)\n"
        f"  emotions: {', '.join(f'{name} {count}' for name, count in emotions.items())}\n"
        f"  duration: {min(durations):.2f}-{max(durations):.2f} s per clip, "
        f"{sum(durations) / 60:.1f} min in all; {demo.width}x{demo.height} "
        f"at {demo.fps} fps, audio {demo.sample_rate} Hz mono"
    )


if __name__ == "__main__":
    run_stage(main)
