"""How fast is the audio front-end, next to decoding alone? (A benchmark, not a test.)

    .venv/bin/python benchmarks/audio_frontend.py [--root ../shared/data/ravdess-speech]
        [--limit N] [--repeats 2] [--n-jobs 1]

Over every clip under ``--root`` (1080 RAVDESS speech FLACs by default) it times

- decode only: PyAV demux + decode of the first audio stream to numpy arrays, nothing else,
  in the same batches of clips and through the same process pool as the front-end;
- front-end: :func:`avemotion.audio.frontend.extract_clips`, i.e. decode + resample + downmix +
  2 s segments + log-mel/delta/delta-delta images, on the stage's batches of clips;
- stage: :func:`avemotion.audio.frontend.build_audio_features`, the front-end plus HDF5 writing
  (the file's size is printed: it depends on :data:`avemotion.h5store.DEFAULT_COMPRESSION`),

and prints segments per second for each, the front-end/decode ratio (target: <= 2) and
the peak resident memory of this process and its children. Each timing is the best of
``--repeats`` passes, alternated, so a burst of load from other processes counts once
at most. Numeric libraries are held to one thread, as in the stage's worker processes.
"""

# ruff: noqa: E402  (thread limits must be set before numpy is imported)
from __future__ import annotations

import os

for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

import argparse
import functools
import resource
import tempfile
import time
from pathlib import Path

import pandas as pd

from avemotion.audio.frontend import (
    CLIPS_PER_TASK,
    FrontEndSettings,
    build_audio_features,
    extract_clips,
)
from avemotion.clip_stage import clip_jobs
from avemotion.index import INDEX_COLUMNS
from avemotion.media import AUDIO_EXTENSIONS, MEDIA_EXTENSIONS, open_container, probe
from avemotion.parallel import map_clip_batches
from avemotion.params import validate_params
from avemotion.segments import segment_starts

DEFAULT_ROOT = Path(__file__).resolve().parents[2] / "shared" / "data" / "ravdess-speech"


def decode_only(paths: list[str]) -> list[int]:
    """Decode the first audio stream of each file to arrays and do nothing else.

    Takes the same batches of clips as the front-end, so that both pay the same
    inter-process costs; returns each file's sample count.
    """
    counts = []
    for path in paths:
        n_samples = 0
        with open_container(path) as container:
            stream = container.streams.audio[0]
            for packet in container.demux(stream):
                for frame in packet.decode():
                    n_samples += frame.to_ndarray().shape[-1]
        counts.append(n_samples)
    return counts


def run_front_end(jobs, settings: FrontEndSettings) -> list[int]:
    """The stage's work on a batch of clips; returns the number of rows of each."""
    results = extract_clips(jobs, settings)
    for result in results:
        if result.reject is not None:
            raise SystemExit(f"{result.path}: {result.reject}")
    return [len(result.x) for result in results]


def build_index(root: Path, limit: int | None) -> pd.DataFrame:
    """A minimal index of every media file under ``root`` (probe gives the durations)."""
    paths = sorted(p for p in root.rglob("*") if p.suffix.lower() in MEDIA_EXTENSIONS)[:limit]
    if not paths:
        raise SystemExit(f"{root}: no media files (is ../shared/data there?)")
    rows = []
    for path in paths:
        info = probe(path)
        rows.append(
            {
                "clip_id": path.stem, "path": str(path), "dataset": root.name, "speaker": "",
                "gender": "unknown", "emotion": "", "label": 0, "sentence": "",
                "duration_s": info.duration_s, "audio_duration_s": info.audio_duration_s,
                "video_duration_s": info.video_duration_s, "has_audio": info.has_audio,
                "has_video": info.has_video, "fold": -1,
            }
        )  # fmt: skip
    return pd.DataFrame(rows, columns=list(INDEX_COLUMNS))


def random_row_read_ms(path: Path, n_reads: int = 1000) -> float:
    """Milliseconds per read of one random row of ``path``'s ``/x`` (best of 3 passes)."""
    import h5py
    import numpy as np

    with h5py.File(path, "r") as handle:
        x = handle["x"]
        rows = np.random.default_rng(0).integers(0, len(x), n_reads)
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            for row in rows:
                x[row]
            best = min(best, time.perf_counter() - start)
    return best / n_reads * 1e3


def timed(results) -> float:
    """Seconds to exhaust an iterator of results."""
    start = time.perf_counter()
    for _ in results:
        pass
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    parser.add_argument("--limit", type=int, default=None, help="first N clips only")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--n-jobs", type=int, default=1)
    args = parser.parse_args()

    params = validate_params({
        "base": {"seed": 42, "modalities": ["audio"], "segment_s": 2.0, "hop_s": 2.0,
                 "last_segment": "pad", "min_segment_s": 1.0, "n_jobs": args.n_jobs},
        "audio": {},
        "augment": {"snr_db": []},
    })  # fmt: skip
    settings = FrontEndSettings.from_params(params)
    index = build_index(args.root, args.limit)
    n_segments = sum(len(segment_starts(d)) for d in index.audio_duration_s)
    jobs = clip_jobs(index, "audio", augment=False)
    paths = index.path.tolist()
    front_end = functools.partial(run_front_end, settings=settings)

    decode_s, front_s, stage_s = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeats):
            decoding = map_clip_batches(decode_only, paths, CLIPS_PER_TASK, args.n_jobs, "decode")
            decode_s.append(timed(decoding))
            front = map_clip_batches(front_end, jobs, CLIPS_PER_TASK, args.n_jobs, "front-end")
            front_s.append(timed(front))
            start = time.perf_counter()
            build_audio_features(index, params, Path(tmp) / "audio.h5", Path(tmp) / "rejects.csv")
            stage_s.append(time.perf_counter() - start)
        h5_mb = (Path(tmp) / "audio.h5").stat().st_size / 2**20
        read_ms = random_row_read_ms(Path(tmp) / "audio.h5")

    self_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    audio_only = all(Path(p).suffix.lower() in AUDIO_EXTENSIONS for p in paths)
    decode, front, stage = min(decode_s), min(front_s), min(stage_s)
    ratio = front / decode
    print(f"clips: {len(paths)} under {args.root} ({'audio files' if audio_only else 'media'})")
    print(f"segments: {n_segments} of 2 s; n_jobs={args.n_jobs}; best of {args.repeats}")
    print(f"decode only : {decode:7.2f} s  {n_segments / decode:8.1f} segments/s")
    print(f"front-end   : {front:7.2f} s  {n_segments / front:8.1f} segments/s")
    print(f"stage + HDF5: {stage:7.2f} s  {n_segments / stage:8.1f} segments/s  ({h5_mb:.1f} MiB)")
    verdict = "met" if ratio <= 2 else "NOT met"
    print(f"front-end / decode-only time: {ratio:.2f}x (target <= 2x: {verdict})")
    print(
        f"stage / decode-only time: {stage / decode:.2f}x; stage / front-end time: "
        f"{stage / front:.2f}x (what writing the table adds)"
    )
    print(f"random single-row reads of the table (as training reads it): {read_ms:.3f} ms/row")
    print(f"peak RSS: this process {self_mb:.0f} MiB, largest child {children_mb:.0f} MiB")


if __name__ == "__main__":
    main()
