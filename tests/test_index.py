"""The index stage: every file is indexed or rejected with its reason, never dropped silently."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO, shared
from test_media import AAC_FRAME_S, FPS, write_av_mp4

from avemotion.errors import BadInputError
from avemotion.index import INDEX_COLUMNS, build_index, read_index, summarise
from avemotion.params import validate_params
from avemotion.rejects import read_rejects

SPLIT = {"protocol": "kfold", "n_folds": 2, "seed": 1}


def index_of(data: dict, split: dict, modalities: list[str], n_jobs: int = 1):
    """:func:`build_index` on the ``data:`` and ``split:`` sections, checked as the stage does."""
    params = validate_params({"data": data, "split": split})
    return build_index(params.data, params.split, modalities, n_jobs)


def data_params(root: Path, **extra) -> dict:
    return {
        "dataset": "ravdess",
        "root": str(root),
        "classes": None,
        "max_reject_fraction": 1.0,
        **extra,
    }


@pytest.fixture
def messy_ravdess(tmp_path):
    """Six real RAVDESS clips plus a zero-byte file, a text file and a truncated mp4."""
    real = shared("ravdess-av-actor01")
    root = tmp_path / "corpus"
    root.mkdir()
    names = [
        "01-01-01-01-01-01-01.mp4",
        "01-01-01-01-01-02-01.mp4",
        "01-01-01-01-02-01-01.mp4",
        "01-01-08-01-01-02-01.mp4",
        "01-01-08-01-02-02-01.mp4",
        "01-01-08-02-02-02-01.mp4",
    ]
    for name in names:
        (root / name).symlink_to(real / name)
    (root / "01-01-03-01-01-01-01.mp4").write_bytes(b"")
    (root / "01-01-04-01-01-01-01.mp4").write_text("this is not a video\n")
    whole = (real / "01-01-01-01-01-01-01.mp4").read_bytes()
    (root / "01-01-05-01-01-01-01.mp4").write_bytes(whole[: len(whole) // 2])
    (root / "notes.txt").write_text("not media: ignored")
    return root


def test_bad_files_are_rejected_with_reasons_and_the_rest_indexed(messy_ravdess):
    result = index_of(data_params(messy_ravdess), SPLIT, ["audio", "video"])
    assert len(result.clips) == 6
    assert list(result.clips.columns) == list(INDEX_COLUMNS)
    reasons = {Path(r.path).name: r.reason for r in result.rejects}
    assert reasons["01-01-03-01-01-01-01.mp4"] == "zero bytes"
    assert reasons["01-01-04-01-01-01-01.mp4"].startswith("unreadable container")
    assert reasons["01-01-05-01-01-01-01.mp4"].startswith("truncated: media data ends at 1.")
    assert len(reasons) == 3
    clips = result.clips.set_index("clip_id")
    assert clips.loc["01-01-08-02-02-02-01", "emotion"] == "surprised"
    assert clips["has_audio"].all() and clips["has_video"].all()
    assert clips["duration_s"].between(3.0, 3.5).all()
    assert set(clips["fold"]) == {0, 1}
    assert "rejected: 3" in summarise(result)


def test_classes_select_order_and_count_the_rest(messy_ravdess):
    result = index_of(
        data_params(messy_ravdess, classes=["surprised", "neutral"]), SPLIT, ["video"]
    )
    assert dict(zip(result.clips["emotion"], result.clips["label"], strict=True)) == {
        "surprised": 0,
        "neutral": 1,
    }
    assert result.left_out_classes == {"happy": 1, "sad": 1, "angry": 1}
    assert len(result.rejects) == 0  # the bad files were of other classes: not even probed


def test_too_many_rejects_fail_clearly(messy_ravdess):
    with pytest.raises(
        BadInputError,
        match=r"3 of 9 files rejected \(truncated=1, unreadable container=1, zero bytes=1\), "
        r"more than data.max_reject_fraction=0.2",
    ):
        index_of(data_params(messy_ravdess, max_reject_fraction=0.2), SPLIT, ["audio"])


def test_nothing_usable_fails_clearly(tmp_path):
    (tmp_path / "01-01-03-01-01-01-01.mp4").write_bytes(b"")
    with pytest.raises(
        BadInputError,
        match=r"no usable clip found by the ravdess adapter \(1 media files, 1 rejected",
    ):
        index_of(data_params(tmp_path), SPLIT, ["audio"])


def test_duplicates_keep_one_file(tmp_path):
    flv = shared("crema-d-mini/1001_DFA_ANG_XX.flv")
    mp3 = shared("crema-d-mini/1002_DFA_SAD_XX.mp3")
    for folder in ("VideoFlash", "AudioWAV"):
        (tmp_path / folder).mkdir()
    (tmp_path / "VideoFlash" / flv.name).symlink_to(flv)
    (tmp_path / "AudioWAV" / flv.with_suffix(".mp3").name).symlink_to(mp3)  # same clip id
    (tmp_path / "AudioWAV" / "1002_DFA_NEU_XX.mp3").symlink_to(mp3)
    (tmp_path / "AudioWAV" / "1002_DFA_HAP_XX.mp3").symlink_to(mp3)  # same bytes, other id
    data = {
        "dataset": "crema_d",
        "root": str(tmp_path),
        "classes": None,
        "max_reject_fraction": 1.0,
    }
    result = index_of(data, {"protocol": "fixed", "test_speakers": ["1001"]}, ["audio", "video"])
    assert sorted(result.clips["clip_id"]) == ["1001_DFA_ANG_XX", "1002_DFA_HAP_XX"]
    reasons = {Path(r.path).name: r.reason for r in result.rejects}
    assert reasons == {
        "1001_DFA_ANG_XX.mp3": f"duplicate of {tmp_path / 'VideoFlash' / flv.name}",
        "1002_DFA_NEU_XX.mp3": f"duplicate of {tmp_path / 'AudioWAV' / '1002_DFA_HAP_XX.mp3'}",
    }
    kept = set(result.clips["path"])
    assert str(tmp_path / "VideoFlash" / flv.name) in kept  # the video file wins for a video run


def test_each_streams_length_is_a_column(tmp_path):
    """A clip whose audio stops 0.7 s before its video is indexed with both lengths."""
    write_av_mp4(tmp_path / "01-01-05-01-01-01-02.mp4", video_s=3.0, audio_s=2.3)
    (tmp_path / "03-01-05-01-01-01-02.flac").symlink_to(
        shared("ravdess-speech/Actor_02/03-01-05-01-01-01-02.flac")
    )
    result = index_of(data_params(tmp_path), SPLIT, ["audio", "video"])
    assert result.rejects == []
    index_path = tmp_path / "index.csv"
    result.clips.to_csv(index_path, index=False)
    clips = read_index(index_path).set_index("clip_id")
    columns = list(clips.reset_index().columns)
    assert columns.index("audio_duration_s") == columns.index("duration_s") + 1
    assert columns.index("video_duration_s") == columns.index("duration_s") + 2
    short_audio = clips.loc["01-01-05-01-01-01-02"]
    assert short_audio["video_duration_s"] == pytest.approx(3.0, abs=1 / FPS)
    assert short_audio["audio_duration_s"] == pytest.approx(2.3, abs=AAC_FRAME_S)
    assert short_audio["duration_s"] == short_audio["video_duration_s"]
    audio_only = clips.loc["03-01-05-01-01-01-02"]
    assert audio_only["video_duration_s"] == 0.0 and not audio_only["has_video"]
    assert audio_only["audio_duration_s"] == audio_only["duration_s"] > 3.0


def test_real_clips_have_both_stream_lengths(messy_ravdess):
    clips = index_of(data_params(messy_ravdess), SPLIT, ["audio", "video"]).clips
    for column in ("audio_duration_s", "video_duration_s"):
        assert (clips[column] > 0).all()
        assert ((clips[column] - clips["duration_s"]).abs() < 0.2).all()


def test_corpus_of_linked_actor_folders(tmp_path):
    """Links to actor folders index like the folders; a broken link is a reject, named."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "Actor_01").symlink_to(shared("ravdess-av-actor01"), target_is_directory=True)
    (corpus / "Actor_01_again").symlink_to("Actor_01", target_is_directory=True)
    (corpus / "Actor_09").mkdir()
    (corpus / "Actor_09" / "01-01-03-01-01-01-09.mp4").symlink_to(tmp_path / "unmounted.mp4")
    split = {"protocol": "fixed", "test_speakers": ["01"]}
    result = index_of(data_params(corpus), split, ["audio", "video"])
    assert len(result.clips) == 11
    assert all(path.startswith(str(corpus / "Actor_01") + "/") for path in result.clips["path"])
    [reject] = result.rejects
    assert reject.path == str(corpus / "Actor_09" / "01-01-03-01-01-01-09.mp4")
    assert reject.reason == f"broken symbolic link (to {tmp_path / 'unmounted.mp4'})"


def run_index_stage(workdir: Path, params: dict) -> subprocess.CompletedProcess:
    (workdir / "params.yaml").write_text(yaml.safe_dump(params))
    shutil.copy(REPO / "dvc.yaml", workdir / "dvc.yaml")  # the stage reads what it declares
    return subprocess.run(
        [sys.executable, str(REPO / "stages" / "index.py"), "data/index.csv", "data/rejects.csv"],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_stage_writes_index_and_rejects(tmp_path, messy_ravdess):
    params = {
        "base": {"modalities": ["audio", "video"], "n_jobs": 2},
        "data": data_params(messy_ravdess),
        "split": {"protocol": "fixed", "test_speakers": ["01"]},
    }
    done = run_index_stage(tmp_path, params)
    assert done.returncode == 0, done.stderr
    index = read_index(tmp_path / "data" / "index.csv")
    assert len(index) == 6 and set(index["fold"]) == {0}
    assert index["speaker"].tolist() == ["01"] * 6  # kept as text, not the number 1
    assert len(read_rejects(tmp_path / "data" / "rejects.csv")) == 3
    assert "6 clips from 9 media files" in done.stdout


def test_stage_bad_root_is_one_line_not_a_traceback(tmp_path):
    params = {
        "base": {"modalities": ["audio"], "n_jobs": 1},
        "data": data_params(tmp_path / "nowhere"),
        "split": SPLIT,
    }
    done = run_index_stage(tmp_path, params)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'nowhere'}: data.root does not exist"
    ]
