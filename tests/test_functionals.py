"""openSMILE functionals: rows aligned with the spectrogram table, real values, the stage."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import h5py
import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import REPO, shared
from test_audio import index_row, make_index, params_tree, tone, write_audio

from avemotion.audio.clips import cut_segments, decode_audio
from avemotion.audio.frontend import build_audio_features, noisy_copies, snr_name
from avemotion.audio.functionals import (
    FULL_SCALE,
    build_functionals,
    covered_audio,
    functionals,
    past_full_scale,
)
from avemotion.augment import clip_rng
from avemotion.errors import BadInputError
from avemotion.h5store import META_COLUMNS, read_attrs, read_meta
from avemotion.params import validate_params
from avemotion.params.loader import TRACE_ENV, declared_params
from avemotion.rejects import read_rejects

STAGE_SCRIPT = str(REPO / "stages" / "build_functionals.py")
WIDTH = {"egemaps": 88, "compare": 6373}
TABLES = ("egemaps", "egemaps_clip", "compare", "compare_clip")
PAPER_FUSION = {"inputs": ["cnn"], "gender_inputs": ["cnn"], "elm2_input": "hidden"}


def make_params(sets=("egemaps",), snr_db=(), modalities=("audio", "video"), n_jobs=1, **base):
    tree = params_tree(snr_db, modalities=modalities, n_jobs=n_jobs)
    tree["base"].update(base)
    tree["functionals"] = {"sets": list(sets)}
    tree["fusion"] = PAPER_FUSION  # the fusion reads no functionals, whatever sets are built
    return validate_params(tree)


def table(path) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    with h5py.File(path) as handle:
        return handle["x"][:], read_meta(path)


def test_segment_rows_are_the_spectrogram_rows_and_hold_the_same_audio(tmp_path):
    ravdess = sorted(shared("ravdess-speech/Actor_01").glob("*.flac"))[:2]  # 3.3-3.7 s
    crema = shared("crema-d-mini/1001_DFA_HAP_XX.flv")  # 1.9 s: one padded segment
    hush = write_audio(tmp_path / "hush.wav", np.zeros(40000), 16000)  # no noisy copy
    voice = write_audio(tmp_path / "voice.flac", tone(220, 16000, 4.2, 0.3), 16000)
    rows = [index_row(p) for p in [*ravdess, crema, hush]]
    rows.append(index_row(tmp_path / "gone.wav", duration_s=3.0))
    rows.append(index_row(voice, fold=0))  # a test fold's clip: never augmented
    index = make_index(rows)
    params = make_params(("egemaps", "compare"), snr_db=(15, 30), n_jobs=2)
    build_audio_features(index, params, tmp_path / "audio.h5", tmp_path / "audio_rejects.csv")
    out, rejects_csv = tmp_path / "functionals", tmp_path / "functionals_rejects.csv"
    summaries = build_functionals(index, params, out, rejects_csv)

    assert sorted(summaries) == sorted(TABLES)
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{t}.h5" for t in TABLES)
    spectrogram_meta = read_meta(tmp_path / "audio.h5")
    n_rows = len(spectrogram_meta["clip_id"])
    assert n_rows == 2 * 2 * 3 + 3 + 1 + 2  # RAVDESS, CREMA-D (x3 with copies), hush, voice
    for name, width in WIDTH.items():
        x, meta = table(out / f"{name}.h5")
        for column in META_COLUMNS:  # same keys, same order, noisy copies included
            np.testing.assert_array_equal(meta[column], spectrogram_meta[column], column)
        assert x.shape == (n_rows, width) and x.dtype == np.float32 and np.isfinite(x).all()
        attrs = read_attrs(out / f"{name}.h5")
        assert len(attrs["feature_names"]) == width and attrs["set"] == name
        assert attrs["level"] == "segment" and attrs["params"]["augment"]["snr_db"] == [15, 30]

    # the values are openSMILE's on the very audio of the spectrogram rows
    x, meta = table(out / "egemaps.h5")
    first = ravdess[0].stem
    audio = decode_audio(ravdess[0], 16000)
    segments, n_valid = cut_segments(audio.samples, 16000, np.array([0.0, 2.0]), 2.0)
    noisy, _ = noisy_copies(segments, n_valid, 15, clip_rng(42, first, snr_name(15)))
    expected = {
        ("", 1): audio.samples[32000:],  # real samples only: no padding zeros
        ("snr15", 0): noisy[0],
    }
    for (augmentation, segment), signal in expected.items():
        row = (meta["clip_id"] == first) & (meta["augmentation"] == augmentation)
        row &= meta["segment"] == segment
        np.testing.assert_allclose(x[row][0], functionals(signal, 16000, "egemaps"), rtol=1e-6)
    segment_0 = (meta["clip_id"] == first) & (meta["segment"] == 0)
    assert len({row.tobytes() for row in x[segment_0]}) == 3  # original, snr15, snr30

    # clip rows: one per clip and copy, over the audio its segments cover
    x, meta = table(out / "egemaps_clip.h5")
    keys = list(zip(meta["clip_id"], meta["augmentation"], strict=True))
    copies = ["", "snr15", "snr30"]
    assert keys == [
        *((p.stem, c) for p in [*ravdess, crema] for c in copies),
        ("hush", ""),
        ("voice", ""),
    ]
    assert (meta["segment"] == 0).all() and (meta["start_s"] == 0).all()
    assert x.shape == (len(keys), 88) and np.isfinite(x).all()
    whole = functionals(audio.samples[: 2 * 32000], 16000, "egemaps")
    np.testing.assert_allclose(x[0], whole, rtol=1e-6)
    assert read_attrs(out / "compare_clip.h5")["level"] == "clip"

    rejects = read_rejects(rejects_csv)
    assert {(r.stage, r.clip_id, r.reason) for r in rejects} == {
        (f"build_functionals/{t}", "gone", "file not found") for t in TABLES
    }
    assert summaries["compare"]["rows"] == n_rows and summaries["compare"]["rejected"] == 1


def test_a_segment_too_short_for_opensmile_rejects_its_clip(tmp_path):
    """30 ms of real audio in a padded last segment: openSMILE gives NaN, the clip is
    rejected from the segment table with the reason, and no NaN is written."""
    short = write_audio(tmp_path / "short.wav", tone(300, 16000, 2.03, 0.3), 16000)
    rows = [
        index_row(short, duration_s=2.2),  # the index says 2.2 s: 0.17 s missing is allowed
        index_row(write_audio(tmp_path / "ok.wav", tone(500, 16000, 2.0, 0.3), 16000)),
        index_row(tmp_path / "empty.wav", duration_s=2.0),
    ]
    (tmp_path / "empty.wav").write_bytes(b"")
    params = make_params(min_segment_s=0.1)
    rejects_csv = tmp_path / "rejects.csv"
    build_functionals(make_index(rows), params, tmp_path / "out", rejects_csv)

    reasons = {(r.stage, r.clip_id): r.reason for r in read_rejects(rejects_csv)}
    assert reasons.pop(("build_functionals/egemaps", "short")) == (
        "openSMILE eGeMAPSv02 functionals of segment 1 (original) are not finite (88 of 88 "
        "values) on 0.030 s of real audio; openSMILE gives NaN for less than about 0.06 s"
    )
    assert reasons == {(f"build_functionals/{t}", "empty"): "zero bytes" for t in TABLES[:2]}
    for name, clips in [("egemaps", {"ok"}), ("egemaps_clip", {"ok", "short"})]:
        x, meta = table(tmp_path / "out" / f"{name}.h5")
        assert set(meta["clip_id"]) == clips and np.isfinite(x).all()


def test_a_run_where_no_clip_gives_a_row_stops_and_says_where_the_reasons_are(tmp_path):
    index = make_index([index_row(tmp_path / "gone.wav", duration_s=3.0)])
    rejects_csv = tmp_path / "rejects.csv"
    with pytest.raises(BadInputError, match="no clip gave build_functionals/egemaps rows") as e:
        build_functionals(index, make_params(), tmp_path / "out", rejects_csv)
    assert e.value.path == str(rejects_csv)
    assert [r.reason for r in read_rejects(rejects_csv)] == ["file not found"]


def test_samples_past_full_scale_are_clipped_not_wrapped_around():
    loud = tone(220, 16000, 1.0, amplitude=1.5)
    assert past_full_scale(loud) > 1000 and past_full_scale(np.clip(loud, -1, FULL_SCALE)) == 0
    clipped = functionals(np.clip(loud, -1, FULL_SCALE), 16000, "egemaps")
    np.testing.assert_array_equal(functionals(loud, 16000, "egemaps"), clipped)


@pytest.mark.parametrize(("hop_s", "expected"), [(1.0, np.s_[:50]), (3.0, np.r_[0:20, 30:50])])
def test_covered_audio_takes_each_covered_sample_once_in_time_order(hop_s, expected):
    samples = np.arange(50, dtype=np.float32)  # 5 s at 10 Hz
    starts = np.arange(0.0, 3.5, hop_s)
    segments, n_valid = cut_segments(samples, 10, starts, 2.0)
    np.testing.assert_array_equal(covered_audio(segments, n_valid, starts, 10), samples[expected])


def test_video_only_runs_write_empty_tables_and_no_sets_an_empty_folder(tmp_path):
    index = make_index([index_row(tmp_path / "gone.wav", duration_s=3.0)])
    out, rejects_csv = tmp_path / "functionals", tmp_path / "rejects.csv"
    summaries = build_functionals(index, make_params(modalities=["video"]), out, rejects_csv)
    assert "base.modalities" in summaries["egemaps"]["skipped"]
    for name in ("egemaps", "egemaps_clip"):
        with h5py.File(out / f"{name}.h5") as handle:
            assert handle["x"].shape == (0, 88) and "no audio" in handle.attrs["skipped"]
    assert read_rejects(rejects_csv) == []
    assert build_functionals(index, make_params(sets=()), out, rejects_csv) == {}
    assert out.is_dir() and not list(out.iterdir())  # the unlisted set's tables are gone
    assert read_rejects(rejects_csv) == []


def test_the_stage_script_writes_the_folder_and_reads_exactly_what_it_declares(tmp_path):
    clip = write_audio(tmp_path / "a.wav", tone(300, 16000, 2.5, 0.3), 16000)
    make_index([index_row(clip)]).to_csv(tmp_path / "index.csv", index=False)
    tree = params_tree((20,), n_jobs=2) | {
        "functionals": {"sets": ["egemaps"]},
        "fusion": PAPER_FUSION,
    }
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(tree))
    shutil.copy(REPO / "dvc.yaml", tmp_path)  # the stage reads the params it declares there
    env = {**os.environ, TRACE_ENV: str(tmp_path / "trace")}
    args = ["index.csv", "features/functionals", "features/functionals_rejects.csv"]
    run = subprocess.run(
        [sys.executable, STAGE_SCRIPT, *args],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "functionals egemaps: 1 of 1 clips -> 2 rows (1 augmented)" in run.stdout
    out = tmp_path / "features" / "functionals"
    assert sorted(p.name for p in out.iterdir()) == ["egemaps.h5", "egemaps_clip.h5"]
    meta = pd.DataFrame(read_meta(out / "egemaps_clip.h5"))
    assert meta[["clip_id", "augmentation"]].values.tolist() == [["a", ""], ["a", "snr20"]]
    (trace,) = (tmp_path / "trace").glob("build_functionals-*.json")
    read = set(json.loads(trace.read_text())["read"])
    assert read == set(declared_params("build_functionals", tmp_path / "dvc.yaml"))
