"""How fast is ``avemotion predict``, and how much memory does it take? (A benchmark, not a test.)

    .venv/bin/python benchmarks/predict.py [--model models/bundle] [--n-jobs 2]
        [--batch-size 64] [--shared ../shared/data] [--long-minutes 10] [--limit N]

The issue's targets, on the 2-core CPU with a bundle of the default profile: real-time
factor (RTF = prediction time / media duration) <= 0.05 for audio-only clips and <= 0.5 for
audio-visual ones, with peak memory bounded on long clips. Each group of files below runs
in a fresh child process of this script, so that its peak memory is its own:

- ``audio-only``: the audio files (:data:`avemotion.media.AUDIO_EXTENSIONS`) of
  ``ravdess-speech`` and ``crema-d-mini``, which an audio-visual bundle predicts from
  audio alone;
- ``crema-d flv (audio-visual)``: the ``.flv`` clips of ``crema-d-mini`` (VP6 + MP3);
- ``audio-visual``: ``ravdess-av-actor01/01-*.mp4`` (1280x720 H.264 + AAC);
- ``ravdess video-only (silent audio)``: its ``02-*.mp4``, whose audio is all zeros;
- ``long clip``: one demo clip (:func:`avemotion.demo.render_clip`, a 30 s piece repeated)
  of ``--long-minutes`` and one of a quarter of that, written to a temporary folder first
  (timed, but no part of the RTF). Their difference in peak memory, per minute of media,
  says whether memory grows with clip length. ``--long-minutes 0`` leaves them out.

Per group it prints the bundle's load time apart from the prediction time (the wall time
of consuming :meth:`Predictor.predict` over every file, media durations from
:func:`avemotion.media.probe`, which runs first and so leaves the files in the page cache),
then peak RSS in MB (ru_maxrss): of the process that loads the bundle and runs the
networks, and of the largest of its ``--n-jobs`` forked front-end workers. A forked
worker's figure counts the pages it shares with its parent; a single file runs in the
main process (no worker), which is how the long clips run. Timings are wall-clock: other
load on the machine inflates them.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = REPO / "models" / "bundle"
DEFAULT_SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
AUDIO_ONLY, AUDIO_VISUAL = "audio-only", "audio-visual"
#: RTF targets of the issue, by group.
TARGETS = {AUDIO_ONLY: 0.05, AUDIO_VISUAL: 0.5}
#: Longest piece the demo renderer draws at once (about 1.4 GB); longer clips repeat it.
PIECE_S = 30.0
#: The reference long clip is this fraction of ``--long-minutes``.
REFERENCE_FRACTION = 0.25


def walk(folder: Path, suffixes: tuple[str, ...]) -> list[str]:
    """Every file under ``folder`` (following symlinks) whose suffix is in ``suffixes``,
    sorted; the shared data folders may be links."""
    found = [
        os.path.join(root, name)
        for root, _, names in os.walk(folder, followlinks=True)
        for name in names
        if os.path.splitext(name)[1].lower() in suffixes
    ]
    return sorted(found)


def data_groups(shared: Path, limit: int | None) -> dict[str, list[str]]:
    """The groups of shared files, by name, each cut to its first ``limit`` files."""
    from avemotion.media import AUDIO_EXTENSIONS

    av_actor = shared / "ravdess-av-actor01"
    groups = {
        AUDIO_ONLY: walk(shared / "ravdess-speech", AUDIO_EXTENSIONS)
        + walk(shared / "crema-d-mini", AUDIO_EXTENSIONS),
        "crema-d flv (audio-visual)": walk(shared / "crema-d-mini", (".flv",)),
        AUDIO_VISUAL: sorted(str(p) for p in av_actor.glob("01-*.mp4")),
        "ravdess video-only (silent audio)": sorted(str(p) for p in av_actor.glob("02-*.mp4")),
    }
    for name, files in groups.items():
        if not files:
            raise SystemExit(f"{shared}: no files for group {name!r} (is ../shared/data there?)")
    return {name: files[:limit] for name, files in groups.items()}


def render_long_clip(path: Path, minutes: float) -> dict:
    """Write a demo clip of ``minutes`` to ``path`` (H.264/AAC mp4) in this process; returns
    the seconds it took, this process's peak RSS in MB, the piece's length and copies.

    The demo renderer holds every frame, and its voice takes (samples x syllables) memory
    (4.3 GB for one minute), so a clip longer than :data:`PIECE_S` is one rendered piece
    repeated by stream copy (no re-encoding): the same media, at bounded cost.
    """
    from avemotion.demo import ClipSpec, render_clip, speaker_traits

    start = time.perf_counter()
    duration_s = minutes * 60.0
    copies = math.ceil(duration_s / PIECE_S)
    piece_s = duration_s / copies
    piece = path.with_name(f"{path.stem}-piece.mp4") if copies > 1 else path
    render_clip(piece, ClipSpec(speaker_traits("s1", "f", 3), "happy", piece_s, seed=1))
    if copies > 1:
        repeat_clip(piece, path, copies, piece_s)
        piece.unlink()
    return {
        "render_s": time.perf_counter() - start,
        "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "piece_s": piece_s,
        "copies": copies,
    }


def repeat_clip(piece: Path, path: Path, copies: int, piece_s: float) -> None:
    """Write ``piece`` (``piece_s`` long) ``copies`` times in a row to ``path``, by stream
    copy: each copy's timestamps shifted by ``piece_s``, and the packets that would
    overlap the next copy (the AAC encoder's padding) dropped, so timestamps only grow."""
    import av

    with av.open(str(path), "w", format="mp4") as out:
        streams: dict[int, av.stream.Stream] = {}
        last_dts: dict[int, int] = {}
        for copy in range(copies):
            with av.open(str(piece)) as source:
                for stream in source.streams:
                    if stream.index not in streams:
                        streams[stream.index] = out.add_stream_from_template(stream)
                for packet in source.demux():
                    if packet.dts is None:  # the demuxer's empty end-of-stream packets
                        continue
                    index = packet.stream.index
                    offset = copy * round(piece_s / packet.time_base)
                    packet.pts += offset
                    packet.dts += offset
                    if index in last_dts and packet.dts <= last_dts[index]:
                        continue
                    last_dts[index] = packet.dts
                    packet.stream = streams[index]
                    out.mux(packet)


def measure(group: str, files: list[str], model: Path, n_jobs: int, batch_size: int) -> dict:
    """Load the bundle and predict ``files`` in this process; the figures as a dict.

    Meant for a fresh process: ``rss_main_mb`` is this process's peak RSS since it started
    and ``rss_workers_mb`` that of its largest reaped child (the front-end workers), None
    where no child outgrew those started before the prediction. Linux counts a fork+exec'd
    child at its parent's size: ``platform`` runs ``uname -p`` once, on import of some
    libraries, so it runs here first, while this process is small.
    """
    platform.processor()
    start = time.perf_counter()
    import torch

    from avemotion.media import probe
    from avemotion.predict.bundle import load_bundle
    from avemotion.predict.engine import Predictor
    from avemotion.predict.results import OK

    import_s = time.perf_counter() - start
    media_s = sum(probe(f).duration_s for f in files)

    start = time.perf_counter()
    bundle = load_bundle(model)
    predictor = Predictor(bundle, n_jobs=n_jobs, batch_size=batch_size)
    load_s = time.perf_counter() - start

    children_before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    predictions = list(predictor.predict(files))
    predict_s = time.perf_counter() - start
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss

    ok = [p for p in predictions if p.status == OK]
    errors = [p for p in predictions if p.status != OK]
    used = Counter("+".join(p.modalities) for p in ok)
    return {
        "group": group,
        "files": len(files),
        "media_s": media_s,
        "segments": sum(len(p.segments) for p in ok),
        "ok": len(ok),
        "errors": len(errors),
        "first_error": f"{Path(errors[0].file).name}: {errors[0].error}" if errors else None,
        "used": dict(used),
        "import_s": import_s,
        "load_s": load_s,
        "predict_s": predict_s,
        "rtf": predict_s / media_s if media_s else float("nan"),
        "rss_main_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "rss_workers_mb": children / 1024 if children > children_before else None,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "system": bundle.system,
        "modalities": list(bundle.modalities),
        "classes": list(bundle.classes),
    }


def run_child(args: argparse.Namespace, mode: list[str], stdin: str, what: str) -> dict:
    """Run this script in a fresh process in a hidden ``mode`` (``stdin`` on its stdin) and
    return the JSON line it prints last.

    Rendering and measuring each get their own process: Linux starts a child's peak RSS
    at its parent's peak (kept across fork and exec), so this process must stay small.
    """
    print(f"{what} ...", file=sys.stderr, flush=True)
    command = [
        sys.executable, __file__, *mode, "--model", str(args.model),
        "--n-jobs", str(args.n_jobs), "--batch-size", str(args.batch_size),
    ]  # fmt: skip
    done = subprocess.run(command, input=stdin, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{what} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure_in_child(group: str, files: list[str], args: argparse.Namespace) -> dict:
    """:func:`measure` in a fresh process (file list on stdin), so that each group's peak
    memory is its own."""
    what = f"measuring {group!r}: {len(files)} file(s)"
    return run_child(args, ["--measure", group], json.dumps(files), what)


def print_table(rows: list[dict]) -> None:
    """One line per group: files, media, segments, outcomes, times, RTF and peak RSS."""
    head = (
        f"{'group':<34} {'files':>5} {'media s':>8} {'segm':>5} {'ok/err':>9} "
        f"{'load s':>6} {'predict s':>9} {'RTF':>6} {'RSS main':>8} {'workers':>7}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        workers = f"{'-':>7}" if r["rss_workers_mb"] is None else f"{r['rss_workers_mb']:7.0f}"
        print(
            f"{r['group']:<34} {r['files']:>5} {r['media_s']:8.1f} {r['segments']:>5} "
            f"{r['ok']:>4}/{r['errors']:<4} {r['load_s']:6.2f} {r['predict_s']:9.2f} "
            f"{r['rtf']:6.3f} {r['rss_main_mb']:8.0f} {workers}"
        )
    print("(RSS in MB; workers: the largest front-end worker, '-' where none ran)")
    for r in rows:
        used = ", ".join(f"{k or 'none'} x{n}" for k, n in r["used"].items()) or "nothing"
        error = f"; first error: {r['first_error']}" if r["first_error"] else ""
        print(f"  {r['group']}: predicted from {used}{error}")


def print_long_clips(long: list[dict], renders: list[dict]) -> None:
    """Render times, peak RSS per media minute and its growth from the reference clip."""
    for r, render in zip(long, renders, strict=True):
        minutes = r["media_s"] / 60
        print(
            f"{r['group']}: rendered in {render['render_s']:.1f} s ({render['copies']} x "
            f"{render['piece_s']:g} s, renderer peak RSS {render['rss_mb']:.0f} MB); "
            f"peak RSS main {r['rss_main_mb']:.0f} MB"
            f" = {r['rss_main_mb'] / minutes:.0f} MB per media minute"
        )
    if len(long) == 2:
        ref, full = long
        minutes = (full["media_s"] - ref["media_s"]) / 60
        growth = (full["rss_main_mb"] - ref["rss_main_mb"]) / minutes
        print(
            f"peak RSS growth from {ref['media_s'] / 60:.3g} to {full['media_s'] / 60:.3g} min: "
            f"{full['rss_main_mb'] - ref['rss_main_mb']:+.0f} MB, {growth:+.1f} MB per media minute"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="bundle folder")
    parser.add_argument("--n-jobs", type=int, default=2, help="front-end worker processes")
    parser.add_argument("--batch-size", type=int, default=64, help="segments per forward pass")
    parser.add_argument("--shared", type=Path, default=DEFAULT_SHARED, help="shared data folder")
    parser.add_argument("--long-minutes", type=float, default=10.0, help="0: no long clip")
    parser.add_argument("--limit", type=int, default=None, help="first N files of each group")
    parser.add_argument("--measure", metavar="GROUP", help=argparse.SUPPRESS)
    parser.add_argument("--render", nargs=2, metavar=("PATH", "MIN"), help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.render is not None:  # child mode: write one long clip, one JSON line out
        print(json.dumps(render_long_clip(Path(args.render[0]), float(args.render[1]))))
        return
    if args.measure is not None:  # child mode: files on stdin, one JSON line out
        files = json.loads(sys.stdin.read())
        result = measure(args.measure, files, args.model, args.n_jobs, args.batch_size)
        print(json.dumps(result))
        return
    if not (args.model / "bundle.json").is_file():
        raise SystemExit(f"{args.model}: no bundle.json (run `dvc repro export_model`, or --model)")

    rows = [measure_in_child(g, f, args) for g, f in data_groups(args.shared, args.limit).items()]
    long, renders = [], []
    if args.long_minutes > 0:
        with tempfile.TemporaryDirectory(prefix="avemotion-bench-") as tmp:
            for minutes in (args.long_minutes * REFERENCE_FRACTION, args.long_minutes):
                clip = Path(tmp) / f"long-{minutes:g}min.mp4"
                mode = ["--render", str(clip), str(minutes)]
                renders.append(run_child(args, mode, "", f"rendering {clip.name}"))
                long.append(measure_in_child(f"long clip ({minutes:g} min)", [str(clip)], args))
                clip.unlink()

    first = rows[0]
    print(f"machine: os.cpu_count()={first['cpu_count']}, torch threads={first['torch_threads']}")
    print(
        f"bundle: {args.model} system={first['system']} modalities={'+'.join(first['modalities'])}"
        f" classes={len(first['classes'])}; n_jobs={args.n_jobs}, batch_size={args.batch_size}"
    )
    print(f"import torch + avemotion.predict: {min(r['import_s'] for r in rows):.1f} s per process")
    print()
    print_table(rows + long)
    if long:
        print()
        print_long_clips(long, renders)
    parent_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"(this driver's own peak RSS, a floor under every child's: {parent_mb:.0f} MB)")
    print()
    for r in rows:
        target = TARGETS.get(r["group"])
        if target is not None:
            verdict = "met" if r["rtf"] <= target else "NOT met"
            print(f"{r['group']} RTF {r['rtf']:.3f} <= {target}: {verdict}")


if __name__ == "__main__":
    main()
