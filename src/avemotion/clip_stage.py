"""One driver for the per-clip feature stages: build_spectrograms, extract_keyframes and
build_mfcc.

Each of those stages turns every clip of the index into segment rows in one HDF5 table,
and every clip that gives no row into a line of its rejects report. What differs is the
work on one clip; what they share is here, done one way:

- a run whose ``base.modalities`` lacks the stage's modality writes an empty table with
  the same layout (attr ``skipped`` says why) and an empty rejects report, so the DAG
  keeps its shape for audio-only and video-only corpora;
- rows are appended in index order as clips finish, a few hundred at a time (h5py costs
  a few milliseconds per append call, more than a clip's spectrograms take);
- the table and the rejects report are written atomically (:mod:`avemotion.atomic`), and
  the previous run's report is removed first: an interrupted run leaves neither;
- the run's counts (``summary_*`` attrs) are stored inside the table before it is
  renamed into place, and returned;
- a run in which no clip gives a row stops with the count of rejects, after writing
  the report that says why.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from avemotion.errors import BadInputError
from avemotion.h5store import META_COLUMNS, NO_COMPRESSION, Compression, SegmentWriter
from avemotion.rejects import Reject, write_rejects
from avemotion.splits import augment_mask


@dataclass(frozen=True)
class ClipJob:
    """One index row, as much of it as a worker needs for one modality's stream.

    ``duration_s`` is that stream's own length (the index's ``audio_duration_s`` or
    ``video_duration_s``): each stream is cut into the segments it covers and judged
    against its own length, so audio that ends 0.7 s before the video keeps its
    segments. ``augment`` says whether this clip gets augmented copies.
    """

    clip_id: str
    path: str
    duration_s: float
    has_stream: bool
    augment: bool
    speaker: str
    gender: str
    emotion: str
    label: int
    fold: int


def clip_jobs(index: pd.DataFrame, modality: str, augment: bool) -> list[ClipJob]:
    """One :class:`ClipJob` per index row for ``modality``'s stream; ``augment`` turns
    augmentation on at all (then only the clips of some fold's training side get it)."""
    wants = augment_mask(index["fold"].to_numpy()) if augment and len(index) else None
    jobs = []
    for i, row in enumerate(index.itertuples(index=False)):
        stream_s = float(getattr(row, f"{modality}_duration_s", 0.0) or 0.0)
        jobs.append(
            ClipJob(
                clip_id=str(row.clip_id),
                path=str(row.path),
                duration_s=stream_s if stream_s > 0 else float(row.duration_s),
                has_stream=bool(getattr(row, f"has_{modality}")),
                augment=bool(wants[i]) if wants is not None else False,
                speaker=str(row.speaker),
                gender=str(row.gender),
                emotion=str(row.emotion),
                label=int(row.label),
                fold=int(row.fold),
            )
        )
    return jobs


@dataclass
class ClipResult:
    """What the work on one clip gives: rows to append, or the reason it gives none.

    ``x`` holds the rows' tensors, ``rows`` their meta columns
    (:func:`avemotion.h5store.clip_rows`), ``counts`` whatever the stage counts per clip
    (corrupt packets, frames with a face, ...), summed over the run.
    """

    clip_id: str
    path: str
    x: np.ndarray | None = None
    rows: Mapping[str, Sequence[Any]] = field(default_factory=dict)
    reject: str | None = None
    counts: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class ClipStage:
    """A per-clip stage's name, its modality and the layout of its table."""

    name: str
    modality: str
    item_shape: tuple[int, ...]
    dtype: Any
    attrs: Mapping[str, Any]
    compression: Compression = NO_COMPRESSION


def run_clip_stage(
    stage: ClipStage,
    modalities: Sequence[str],
    n_clips: int,
    results: Iterable[ClipResult],
    out_path: str | Path,
    rejects_path: str | Path,
) -> dict[str, Any]:
    """Write the table and rejects report of ``results`` (one per clip, in index order).

    ``results`` is consumed only when ``stage.modality`` is in ``modalities``. Returns
    the summary: ``clips``, ``clips_written``, ``rows``, ``augmented_rows``, ``rejected``,
    the stage's own counts, and ``skipped`` (the reason) for a skipped run.
    """
    Path(rejects_path).unlink(missing_ok=True)  # a killed run leaves neither file
    attrs = dict(stage.attrs)
    summary: dict[str, Any] = {"clips": n_clips, "clips_written": 0, "rows": 0}
    summary |= {"augmented_rows": 0, "rejected": 0}
    counts: Counter[str] = Counter()
    rejects: list[Reject] = []
    skipped = stage.modality not in modalities
    if skipped:
        summary["skipped"] = attrs["skipped"] = (
            f"base.modalities is {list(modalities)}: no {stage.modality} features computed"
        )
    with SegmentWriter(
        out_path, stage.item_shape, stage.dtype, attrs, compression=stage.compression
    ) as writer:
        for result in () if skipped else results:
            counts.update(result.counts)
            if result.reject is not None:
                rejects.append(Reject(result.path, result.clip_id, stage.name, result.reject))
                continue
            assert result.x is not None and set(result.rows) == set(META_COLUMNS)
            writer.append(result.x, result.rows)  # buffered: written in blocks
            summary["clips_written"] += 1
            summary["rows"] += len(result.x)
            summary["augmented_rows"] += int(np.sum(result.rows["augmented"]))
        summary["rejected"] = len(rejects)
        summary |= dict(sorted(counts.items()))
        write_rejects(rejects_path, rejects)
        if summary["rows"] == 0 and not skipped and n_clips:
            raise BadInputError(
                f"no clip gave {stage.name} rows; {len(rejects)} rejected, see the reasons",
                rejects_path,
            )
        writer.set_attrs({f"summary_{key}": value for key, value in summary.items()})
    return summary
