"""``data/index.csv``: one row per usable clip, the table every later stage reads."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from avemotion.atomic import file_digest
from avemotion.datasets import EMOTIONS, ClipRecord, Unlabelled, iter_records
from avemotion.errors import BadInputError
from avemotion.media import MediaInfo, probe
from avemotion.parallel import Workers, map_clips
from avemotion.params.schema import DataParams, SplitParams
from avemotion.rejects import Reject
from avemotion.splits import assign_folds

#: Columns of ``data/index.csv``. ``fold`` is the fold whose *test* part holds the clip;
#: -1 means the clip is never tested (the training part of a single-split protocol).
#: ``label`` is the clip's emotion as an index into ``data.classes``. ``duration_s`` is
#: where the clip's media data ends; ``audio_duration_s`` and ``video_duration_s`` are
#: where each stream ends (0.0 for a stream the file lacks), since real recordings often
#: stop one stream before the other.
INDEX_COLUMNS: tuple[str, ...] = (
    "clip_id",
    "path",
    "dataset",
    "speaker",
    "gender",
    "emotion",
    "label",
    "sentence",
    "duration_s",
    "audio_duration_s",
    "video_duration_s",
    "has_audio",
    "has_video",
    "fold",
)

_DTYPES = {
    "clip_id": str,
    "path": str,
    "dataset": str,
    "speaker": str,
    "gender": str,
    "emotion": str,
    "label": int,
    "sentence": str,
    "duration_s": float,
    "audio_duration_s": float,
    "video_duration_s": float,
    "has_audio": bool,
    "has_video": bool,
    "fold": int,
}


def read_index(path: str | Path) -> pd.DataFrame:
    """Read ``data/index.csv`` with the column types the stages rely on."""
    path = Path(path)
    if not path.is_file():
        raise BadInputError("index not found; run the index stage first (dvc repro index)", path)
    frame = pd.read_csv(path, dtype=_DTYPES, keep_default_na=False)
    missing = set(INDEX_COLUMNS) - set(frame.columns)
    if missing:
        raise BadInputError(
            f"index lacks columns {sorted(missing)}; rerun the index stage (dvc repro index)",
            path,
        )
    return frame


@dataclass
class IndexResult:
    """What the index stage found: the usable clips, the rejected files, and counts."""

    clips: pd.DataFrame
    rejects: list[Reject]
    left_out_classes: Counter = field(default_factory=Counter)
    n_files: int = 0


def build_index(
    data: DataParams,
    split: SplitParams,
    modalities: Sequence[str],
    n_jobs: int | Workers = 1,
) -> IndexResult:
    """Walk ``data.root`` with the ``data.dataset`` adapter and assign every clip its fold.

    ``data`` and ``split`` are those sections of ``params.yaml``. Every media file ends in
    exactly one place: a row of the index, a reject with its reason (unreadable, zero
    bytes, no decodable stream, no stream for the run's modalities, unknown label,
    duplicate), or the count of clips whose emotion is not in ``data.classes``. Files
    are checked on ``n_jobs`` processes, or where a :class:`~avemotion.parallel.Workers`
    says (``base.backend``).

    Raises :class:`BadInputError` when nothing usable is found, when the rejects exceed
    ``data.max_reject_fraction``, or when the split cannot be made.
    """
    records, rejects = [], []
    for item in iter_records(data.dataset, data.root, data.options):
        if isinstance(item, Unlabelled):
            rejects.append(Reject(str(item.path), item.path.stem, "index", item.reason))
        else:
            records.append(item)
    n_files = len(records) + len(rejects)
    classes = list(data.classes or sorted({r.emotion for r in records}, key=EMOTIONS.index))
    unknown = sorted(set(classes) - set(EMOTIONS))
    if unknown:
        raise BadInputError(f"data.classes {unknown} are not in the vocabulary {list(EMOTIONS)}")
    left_out = Counter(r.emotion for r in records if r.emotion not in classes)
    records = [r for r in records if r.emotion in classes]

    checked = map_clips(
        partial(_check_clip, modalities=tuple(modalities)), records, n_jobs, "index"
    )
    usable: list[tuple[ClipRecord, MediaInfo]] = []
    for record, outcome in zip(records, checked, strict=True):
        if isinstance(outcome, str):
            rejects.append(Reject(str(record.path), record.clip_id, "index", outcome))
        else:
            usable.append((record, outcome))
    usable, duplicates = _drop_duplicates(usable, prefer_video="video" in modalities)
    rejects.extend(duplicates)

    if not usable:
        raise BadInputError(
            f"no usable clip found by the {data.dataset} adapter ({n_files} media files, "
            f"{len(rejects)} rejected, {sum(left_out.values())} of other classes)",
            data.root,
        )
    max_fraction = data.max_reject_fraction
    if n_files and len(rejects) / n_files > max_fraction:
        raise BadInputError(
            f"{len(rejects)} of {n_files} files rejected ({_reason_counts(rejects)}), more than "
            f"data.max_reject_fraction={max_fraction}",
            data.root,
        )
    clips = pd.DataFrame(
        {
            "clip_id": [r.clip_id for r, _ in usable],
            "path": [str(r.path) for r, _ in usable],
            "dataset": [r.dataset for r, _ in usable],
            "speaker": [r.speaker for r, _ in usable],
            "gender": [r.gender for r, _ in usable],
            "emotion": [r.emotion for r, _ in usable],
            "label": [classes.index(r.emotion) for r, _ in usable],
            "sentence": [r.sentence for r, _ in usable],
            "duration_s": [round(info.duration_s, 6) for _, info in usable],
            "audio_duration_s": [round(info.audio_duration_s, 6) for _, info in usable],
            "video_duration_s": [round(info.video_duration_s, 6) for _, info in usable],
            "has_audio": [info.has_audio for _, info in usable],
            "has_video": [info.has_video for _, info in usable],
        }
    )
    given = [r.fold for r, _ in usable]
    clips["fold"] = assign_folds(
        clips["label"].to_numpy(),
        clips["speaker"].to_numpy(),
        protocol=split.protocol,
        n_folds=split.n_folds,
        test_size=split.test_size,
        test_speakers=split.test_speakers,
        seed=split.seed,
        given_folds=None if None in given else np.asarray(given),
    )
    return IndexResult(clips[list(INDEX_COLUMNS)], rejects, left_out, n_files)


def _check_clip(record: ClipRecord, modalities: tuple[str, ...]) -> MediaInfo | str:
    """Probe one clip: its :class:`MediaInfo`, or the reason it cannot be used."""
    try:
        info = probe(record.path)
    except BadInputError as error:
        return error.reason
    wanted = [
        m
        for m in modalities
        if (m == "audio" and info.has_audio) or (m == "video" and info.has_video)
    ]
    if not wanted:
        return f"no decodable {' or '.join(modalities)} stream"
    return info


def _drop_duplicates(
    usable: list[tuple[ClipRecord, MediaInfo]], prefer_video: bool
) -> tuple[list[tuple[ClipRecord, MediaInfo]], list[Reject]]:
    """Keep one file per clip id and per content; the rest are rejects naming the one kept.

    When a corpus holds a clip twice (CREMA-D's ``AudioWAV/`` and ``VideoFlash/``), the
    file with video is kept for a run that uses video, the audio file otherwise.
    """

    def preference(item: tuple[ClipRecord, MediaInfo]) -> tuple[bool, str]:
        return (item[1].has_video != prefer_video, str(item[0].path))

    kept: dict[str, tuple[ClipRecord, MediaInfo]] = {}
    by_content: dict[str, str] = {}
    rejects = []
    for item in sorted(usable, key=preference):
        record = item[0]
        digest = file_digest(record.path, "sha1")
        twin = kept.get(record.clip_id)
        if twin is None and digest in by_content:
            twin = kept[by_content[digest]]
        if twin is not None:
            rejects.append(
                Reject(str(record.path), record.clip_id, "index", f"duplicate of {twin[0].path}")
            )
            continue
        kept[record.clip_id] = item
        by_content[digest] = record.clip_id
    order = {id(item): n for n, item in enumerate(usable)}
    return sorted(kept.values(), key=lambda item: order[id(item)]), rejects


def summarise(result: IndexResult) -> str:
    """A few lines for the terminal: clips per class, speaker and gender; rejects by reason."""
    clips = result.clips
    lines = [f"{len(clips)} clips from {result.n_files} media files"]
    for column in ("emotion", "gender", "speaker", "fold"):
        counts = clips[column].value_counts(sort=False).sort_index()
        lines.append(f"  per {column}: " + ", ".join(f"{k}={v}" for k, v in counts.items()))
    if (clips["gender"] == "unknown").any():
        lines.append(
            f"  note: {int((clips['gender'] == 'unknown').sum())} clips have unknown gender; "
            "ELM-1 (gender) needs it (see data.options or fusion settings)"
        )
    if result.left_out_classes:
        lines.append(
            "  left out (not in data.classes): "
            + ", ".join(f"{k}={v}" for k, v in sorted(result.left_out_classes.items()))
        )
    rejected = f" ({_reason_counts(result.rejects)})" if result.rejects else ""
    lines.append(f"  rejected: {len(result.rejects)}{rejected}")
    return "\n".join(lines)


def _reason_counts(rejects: list[Reject]) -> str:
    """``zero bytes=1, truncated=2``: rejects counted by the kind of reason."""
    kinds = Counter(r.reason.split("(")[0].split(":")[0].split(" of ")[0].strip() for r in rejects)
    return ", ".join(f"{kind}={n}" for kind, n in sorted(kinds.items()))
