"""`avemotion predict`'s inputs and outputs: which files a command line names, and the CSV,
JSON, table and timeline pictures written from hand-built predictions.

Discovery looks only at names and kinds of paths, so the media files here are a few fake
bytes; the predictions are built by hand with probabilities that are not round numbers,
so that a writer losing precision or mixing up classes fails.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest

from avemotion.predict.inputs import (
    DIRECTORY,
    EMPTY_FOLDER,
    NO_MATCH,
    NOT_FOUND,
    Target,
    discover,
)
from avemotion.predict.report import (
    clip_rows,
    format_table,
    plot_timeline,
    timeline_path,
    to_json,
    write_csv,
    write_json,
)
from avemotion.predict.results import ClipPrediction, SegmentPrediction

CLASSES = ("angry", "happy", "neutral")


# --- discover ------------------------------------------------------------------------------


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"fake")
    return path


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A folder of clips with nesting, a symlink to a folder outside it, a folder named like
    a clip, a non-media file, a unicode name with spaces and an empty folder."""
    root = tmp_path / "clips"
    _touch(root / "b.mp4")
    _touch(root / "A.WAV")
    _touch(root / "notes.txt")
    _touch(root / "sub" / "deeper" / "c.flv")
    _touch(root / "sub" / "ünï códe clip.wav")
    _touch(root / "x.mp4" / "inside.mp4")
    outside = tmp_path / "elsewhere"
    _touch(outside / "linked.avi")
    _touch(outside / "readme.md")
    os.symlink(outside, root / "linked", target_is_directory=True)
    (tmp_path / "empty").mkdir()
    _touch(tmp_path / "empty_of_media" / "data.csv")
    return root


def test_discover_walks_folders_following_links_and_keeps_only_media(tree: Path) -> None:
    targets = discover([str(tree)])
    assert targets == [
        Target(str(tree / "A.WAV")),
        Target(str(tree / "b.mp4")),
        Target(str(tree / "linked" / "linked.avi")),
        Target(str(tree / "sub" / "deeper" / "c.flv")),
        Target(str(tree / "sub" / "ünï códe clip.wav")),
        Target(str(tree / "x.mp4"), DIRECTORY),
    ]
    assert Path(targets[4].path).is_file()  # the unicode name is the file's real name


def test_discover_takes_an_explicit_file_whatever_its_extension(tree: Path) -> None:
    notes = str(tree / "notes.txt")
    unicode_name = str(tree / "sub" / "ünï códe clip.wav")
    assert discover([notes, unicode_name]) == [Target(notes), Target(unicode_name)]


def test_discover_reports_what_it_cannot_read(tree: Path) -> None:
    tmp = tree.parent
    missing = str(tmp / "missing.mp4")
    no_match = str(tmp / "nothing" / "*.mp4")
    media_dir = str(tree / "x.mp4")
    empty, only_csv = str(tmp / "empty"), str(tmp / "empty_of_media")
    assert discover([missing, no_match, media_dir, empty, only_csv]) == [
        Target(missing, NOT_FOUND),
        Target(no_match, NO_MATCH),
        Target(media_dir, DIRECTORY),
        Target(empty, EMPTY_FOLDER),
        Target(only_csv, EMPTY_FOLDER),
    ]


def test_discover_expands_glob_patterns_recursively(tree: Path) -> None:
    pattern = str(tree / "**" / "*.wav")
    assert discover([pattern]) == [
        Target(str(tree / "sub" / "ünï códe clip.wav")),
    ]
    # a folder matched by a pattern is walked; one named like a clip is reported
    assert discover([str(tree / "s*")]) == [
        Target(str(tree / "sub" / "deeper" / "c.flv")),
        Target(str(tree / "sub" / "ünï códe clip.wav")),
    ]
    assert discover([str(tree / "x.*")]) == [Target(str(tree / "x.mp4"), DIRECTORY)]


def test_discover_gives_each_file_once_in_first_seen_order(tree: Path) -> None:
    clip = tree / "sub" / "deeper" / "c.flv"
    via_dots = str(tree / "sub" / ".." / "sub" / "deeper" / "c.flv")
    linked = str(tree / "linked" / "linked.avi")
    real = str(tree.parent / "elsewhere" / "linked.avi")
    targets = discover([str(clip), str(tree / "sub"), via_dots, real, linked, str(tree)])
    assert [t.path for t in targets[:4]] == [
        str(clip),
        str(tree / "sub" / "ünï códe clip.wav"),
        real,
        str(tree / "A.WAV"),
    ]
    assert len(targets) == 6
    assert len({os.path.realpath(t.path) for t in targets}) == 6


def test_discover_survives_a_symlink_loop_and_reports_a_broken_link(tmp_path: Path) -> None:
    root = tmp_path / "loop"
    _touch(root / "a.mp4")
    os.symlink(root, root / "again", target_is_directory=True)
    os.symlink(tmp_path / "gone.wav", root / "broken.wav")
    targets = discover([str(root)])
    assert targets[0] == Target(str(root / "a.mp4"))
    assert targets[1].path == str(root / "broken.wav")
    assert targets[1].error is not None and "broken symbolic link" in targets[1].error
    assert len(targets) == 2


# --- predictions built by hand ------------------------------------------------------------


def _segment(start: float, end: float, probabilities: list[float]) -> SegmentPrediction:
    p = np.asarray(probabilities, dtype=np.float64)
    p = p / p.sum()
    return SegmentPrediction(start, end, CLASSES[int(np.argmax(p))], p)


def _clip(file: str, segments: list[SegmentPrediction], **kwargs: object) -> ClipPrediction:
    mean = np.mean([s.probabilities for s in segments], axis=0)
    defaults: dict[str, object] = {"modalities": ("audio", "video"), "duration_s": 4.6}
    return ClipPrediction(
        file=file,
        status="ok",
        classes=CLASSES,
        label=CLASSES[int(np.argmax(mean))],
        probabilities=mean,
        segments=segments,
        **(defaults | kwargs),  # type: ignore[arg-type]
    )


@pytest.fixture
def predictions() -> list[ClipPrediction]:
    """Four clips: audio-visual with four overlapping segments, an error, audio alone with
    a warning and two segments (float32 probabilities, as a network gives), and one with
    a single segment and no known duration."""
    rng = np.random.default_rng(7)
    audio_visual = _clip(
        "/data/session 1/ünï códe clip.mp4",
        [_segment(0.5 * i, 0.5 * i + 2.0, list(rng.random(3) + 0.01)) for i in range(4)],
        duration_s=3.5,
    )
    failed = ClipPrediction.failed("/data/broken.mp4", CLASSES, "unreadable container (EOF)")
    audio = _clip(
        "speech.wav",
        [_segment(0.0, 2.0, [0.1, 0.7, 0.2]), _segment(2.0, 3.25, [0.3, 0.3, 0.4])],
        modalities=("audio",),
        warnings=["no face found: predicted from audio alone", "video stream ends early"],
        duration_s=3.25,
    )
    for segment in audio.segments:
        object.__setattr__(segment, "probabilities", segment.probabilities.astype(np.float32))
    single = _clip("a" * 70 + ".avi", [_segment(0.0, 1.5, [0.2, 0.2, 0.6])], duration_s=None)
    return [audio_visual, failed, audio, single]


# --- CSV ---------------------------------------------------------------------------------


def test_csv_has_a_row_per_clip_and_segment_with_exact_probabilities(
    predictions: list[ClipPrediction],
) -> None:
    stream = io.StringIO()
    write_csv(predictions, stream)
    rows = list(csv.DictReader(io.StringIO(stream.getvalue())))
    assert list(rows[0]) == [
        "file",
        "status",
        "level",
        "start_s",
        "end_s",
        "label",
        "p_angry",
        "p_happy",
        "p_neutral",
        "modalities",
        "error",
        "warnings",
    ]
    assert len(rows) == 4 + (4 + 0 + 2 + 1)
    assert [r["level"] for r in rows] == ["clip"] + ["segment"] * 4 + ["clip"] * 2 + [
        "segment"
    ] * 2 + ["clip", "segment"]

    expected = []  # (row's probabilities, what they should be) in row order
    for prediction in predictions:
        if prediction.status == "ok":
            expected.append(prediction.probabilities)
            expected.extend(s.probabilities for s in prediction.segments)
    ok_rows = [r for r in rows if r["status"] == "ok"]
    for row, probabilities in zip(ok_rows, expected, strict=True):
        read = np.array([float(row[f"p_{c}"]) for c in CLASSES])
        np.testing.assert_array_equal(read, np.asarray(probabilities, dtype=np.float64))
        assert row["label"] == CLASSES[int(np.argmax(read))]

    clip = rows[0]
    assert clip["file"] == "/data/session 1/ünï códe clip.mp4"
    assert (float(clip["start_s"]), float(clip["end_s"])) == (0.0, 3.5)
    assert clip["modalities"] == "audio+video"
    assert [(float(r["start_s"]), float(r["end_s"])) for r in rows[1:5]] == [
        (0.0, 2.0),
        (0.5, 2.5),
        (1.0, 3.0),
        (1.5, 3.5),
    ]

    error = rows[5]
    assert (error["status"], error["level"], error["label"]) == ("error", "clip", "")
    assert error["error"] == "unreadable container (EOF)"
    assert [error[f"p_{c}"] for c in CLASSES] == ["", "", ""]

    audio = rows[6]
    assert audio["modalities"] == "audio"
    assert audio["warnings"] == "no face found: predicted from audio alone; video stream ends early"
    # no duration: the clip ends where its last segment does
    assert (float(rows[9]["start_s"]), float(rows[9]["end_s"])) == (0.0, 1.5)


def test_clip_rows_match_the_csv_columns(predictions: list[ClipPrediction]) -> None:
    rows = clip_rows(predictions)
    assert len(rows) == 11
    assert all(isinstance(r["p_happy"], float) for r in rows if r["status"] == "ok")
    assert rows[7]["p_happy"] == pytest.approx(0.7, abs=1e-7)  # float32 in, float out


# --- JSON --------------------------------------------------------------------------------


def test_json_has_exactly_the_documented_keys(predictions: list[ClipPrediction]) -> None:
    stream = io.StringIO()
    write_json(predictions, stream)
    data = json.loads(stream.getvalue())
    assert data == to_json(predictions)
    assert list(data) == ["clips"]
    clip_keys = {
        "file",
        "status",
        "label",
        "probabilities",
        "modalities",
        "segments",
        "error",
        "warnings",
        "duration_s",
    }
    assert all(set(c) == clip_keys for c in data["clips"])
    first, failed, audio, single = data["clips"]

    assert first["file"] == "/data/session 1/ünï códe clip.mp4"
    assert first["modalities"] == ["audio", "video"]
    assert first["label"] == predictions[0].label
    assert list(first["probabilities"]) == list(CLASSES)
    np.testing.assert_array_equal(
        list(first["probabilities"].values()), predictions[0].probabilities
    )
    assert len(first["segments"]) == 4
    for segment, expected in zip(first["segments"], predictions[0].segments, strict=True):
        assert set(segment) == {"start", "end", "label", "probabilities"}
        assert (segment["start"], segment["end"]) == (expected.start_s, expected.end_s)
        assert sum(segment["probabilities"].values()) == pytest.approx(1.0, abs=1e-12)
        assert segment["label"] == max(segment["probabilities"], key=segment["probabilities"].get)
    assert (first["error"], first["warnings"], first["duration_s"]) == (None, [], 3.5)

    assert failed == {
        "file": "/data/broken.mp4",
        "status": "error",
        "label": None,
        "probabilities": None,
        "modalities": [],
        "segments": [],
        "error": "unreadable container (EOF)",
        "warnings": [],
        "duration_s": None,
    }
    assert audio["modalities"] == ["audio"]
    assert len(audio["warnings"]) == 2
    for segment in audio["segments"]:  # float32 probabilities: sum to 1 within float32
        assert sum(segment["probabilities"].values()) == pytest.approx(1.0, abs=1e-6)
    assert single["duration_s"] is None


# --- table -------------------------------------------------------------------------------


def test_table_has_a_line_per_clip_and_the_counts(predictions: list[ClipPrediction]) -> None:
    lines = format_table(predictions).splitlines()
    header, body, summary = lines[0], lines[1:-1], lines[-1]
    assert header.split() == ["file", "label", "p", "from"]
    assert len(body) == len(predictions)
    assert summary == "4 clips: 3 predicted, 1 failed"

    first = body[0]
    p = 100 * predictions[0].probabilities[CLASSES.index(predictions[0].label)]
    assert first.startswith("/data/session 1/ünï códe clip.mp4")
    assert predictions[0].label in first and f"{p:.1f}%" in first and "audio+video" in first
    assert body[1].startswith("/data/broken.mp4")
    assert body[1].endswith("error: unreadable container (EOF)")
    assert "happy" in body[2] and "50.0%" in body[2] and "audio " in body[2]
    assert "no face found" in body[2]
    long_name = body[3].split()[0]
    assert len(long_name) == 48 and long_name.startswith("…") and long_name.endswith("a.avi")
    # columns line up: every label starts where the header's does
    column = header.index("label")
    assert [line[column:].split()[0] for line in (body[0], body[2], body[3])] == [
        predictions[0].label,
        "happy",
        "neutral",
    ]


def test_table_of_one_clip_says_clip(predictions: list[ClipPrediction]) -> None:
    assert format_table(predictions[1:2]).splitlines()[-1] == "1 clip: 0 predicted, 1 failed"


# --- timeline pictures -------------------------------------------------------------------


@pytest.mark.parametrize(("size", "dpi"), [((1200, 500), 100), ((641, 333), 72)])
def test_timeline_png_has_exactly_the_requested_size(
    predictions: list[ClipPrediction], tmp_path: Path, size: tuple[int, int], dpi: int
) -> None:
    for index in (0, 2, 3):
        path = timeline_path(tmp_path, predictions[index].file, index)
        assert plot_timeline(predictions[index], path, size_px=size, dpi=dpi) == path
        image = matplotlib.image.imread(path)
        assert image.shape[:2] == (size[1], size[0])
        assert image[..., :3].std() > 0.05  # something is drawn, not a blank canvas


def test_timeline_refuses_an_error_clip(predictions: list[ClipPrediction], tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="broken.mp4"):
        plot_timeline(predictions[1], tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_timeline_paths_are_unique_and_safe(tmp_path: Path) -> None:
    files = ["/a/ünï códe clip.mp4", "/b/ünï códe clip.mp4", "c/../weird name?.wav", ".hidden"]
    paths = [timeline_path(tmp_path, f, i) for i, f in enumerate(files)]
    assert len(set(paths)) == len(files)
    assert all(p.parent == tmp_path and p.suffix == ".png" for p in paths)
    assert paths[0].name == "000_uni_code_clip.png"
    assert paths[2].name == "002_weird_name.png"
    assert all(p.name.isascii() and " " not in p.name for p in paths)
