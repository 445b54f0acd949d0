"""``avemotion predict``'s outputs from a list of :class:`ClipPrediction`: CSV, JSON, a
terminal table and one timeline picture per clip.

CSV and JSON carry every probability at full precision (``repr`` of the float, so a value
read back equals the one written) so that they can be compared with the pipeline's own
evaluation; the table is for reading, the pictures for seeing where in a clip the
prediction changes.
"""

from __future__ import annotations

import csv
import json
import re
import unicodedata
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from avemotion.predict.results import OK, ClipPrediction

FILE_WIDTH = 48
CLIP = "clip"
SEGMENT = "segment"


def class_columns(predictions: Sequence[ClipPrediction]) -> list[str]:
    """The ``p_<class>`` column names: every clip's classes, in first-seen order."""
    classes = dict.fromkeys(c for p in predictions for c in p.classes)
    return [f"p_{c}" for c in classes]


def clip_rows(predictions: Sequence[ClipPrediction]) -> list[dict[str, Any]]:
    """One row per clip, followed by one per segment of that clip.

    Keys: ``file, status, level ("clip"|"segment"), start_s, end_s, label, p_<class>...,
    modalities ("audio+video"), error, warnings ("; "-joined)``. Numbers stay floats;
    what is unknown (an error clip's label and probabilities) is ``""``.
    """
    probability_columns = class_columns(predictions)
    rows = []
    for prediction in predictions:
        end = _clip_end(prediction)
        rows.append(
            {
                "file": prediction.file,
                "status": prediction.status,
                "level": CLIP,
                "start_s": "" if end == "" else 0.0,
                "end_s": end,
                "label": prediction.label or "",
                **_probability_cells(
                    prediction.classes, prediction.probabilities, probability_columns
                ),
                "modalities": "+".join(prediction.modalities),
                "error": prediction.error or "",
                "warnings": "; ".join(prediction.warnings),
            }
        )
        for segment in prediction.segments:
            rows.append(
                {
                    "file": prediction.file,
                    "status": prediction.status,
                    "level": SEGMENT,
                    "start_s": float(segment.start_s),
                    "end_s": float(segment.end_s),
                    "label": segment.label,
                    **_probability_cells(
                        prediction.classes, segment.probabilities, probability_columns
                    ),
                    "modalities": "+".join(prediction.modalities),
                    "error": "",
                    "warnings": "",
                }
            )
    return rows


def write_csv(predictions: Sequence[ClipPrediction], stream: TextIO) -> None:
    """:func:`clip_rows` as CSV with a header; floats as ``repr`` so they read back exactly.

    Open a file ``stream`` with ``newline=""`` (the csv module writes its own line ends).
    """
    columns = [
        "file",
        "status",
        "level",
        "start_s",
        "end_s",
        "label",
        *class_columns(predictions),
        "modalities",
        "error",
        "warnings",
    ]
    writer = csv.DictWriter(stream, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in clip_rows(predictions):
        writer.writerow({k: repr(v) if isinstance(v, float) else v for k, v in row.items()})


def to_json(predictions: Sequence[ClipPrediction]) -> dict[str, Any]:
    """``{"clips": [...]}``, one object per clip with ``file, status, label, probabilities
    ({class: p}), modalities, segments ([{start, end, label, probabilities}]), error,
    warnings, duration_s``; an error clip has ``label`` and ``probabilities`` null and
    empty ``segments`` and ``modalities``."""
    return {"clips": [_clip_json(p) for p in predictions]}


def _clip_json(prediction: ClipPrediction) -> dict[str, Any]:
    ok = prediction.status == OK
    classes = prediction.classes
    segments = [
        {
            "start": float(s.start_s),
            "end": float(s.end_s),
            "label": s.label,
            "probabilities": _probability_map(classes, s.probabilities),
        }
        for s in prediction.segments
    ]
    duration = prediction.duration_s
    return {
        "file": prediction.file,
        "status": prediction.status,
        "label": prediction.label if ok else None,
        "probabilities": _probability_map(classes, prediction.probabilities) if ok else None,
        "modalities": list(prediction.modalities) if ok else [],
        "segments": segments if ok else [],
        "error": prediction.error,
        "warnings": list(prediction.warnings),
        "duration_s": None if duration is None else float(duration),
    }


def write_json(predictions: Sequence[ClipPrediction], stream: TextIO) -> None:
    """:func:`to_json`, indented by 2, with non-ASCII file names kept as they are."""
    json.dump(to_json(predictions), stream, indent=2, ensure_ascii=False)
    stream.write("\n")


def format_table(predictions: Sequence[ClipPrediction]) -> str:
    """A header, one line per clip (file, label, its probability in %, modalities, or
    ``error: <reason>``), then ``N clips: K predicted, E failed``."""
    header = ("file", "label", "p", "from")
    rows = []
    for prediction in predictions:
        name = _shorten_left(prediction.file, FILE_WIDTH)
        if prediction.status == OK:
            cells = (
                name,
                prediction.label or "",
                f"{100 * _label_probability(prediction):.1f}%",
                "+".join(prediction.modalities),
            )
            note = "; ".join(prediction.warnings)
        else:
            cells = (name, "", "", "")
            note = f"error: {prediction.error}"
        rows.append((cells, note))
    widths = [max([len(h)] + [len(cells[i]) for cells, _ in rows]) for i, h in enumerate(header)]

    def line(cells: Sequence[str], note: str = "") -> str:
        padded = [
            c.rjust(w) if i == 2 else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        if note and not any(cells[1:]):
            padded = [padded[0], note]
        elif note:
            padded.append(note)
        return "  ".join(padded).rstrip()

    ok = sum(p.status == OK for p in predictions)
    n = len(predictions)
    summary = f"{n} clip{'' if n == 1 else 's'}: {ok} predicted, {n - ok} failed"
    return "\n".join([line(header), *(line(cells, note) for cells, note in rows), summary])


def timeline_path(out_dir: Path, file: str, index: int) -> Path:
    """Where clip number ``index`` of this run draws its timeline: ``<index>_<stem>.png``
    in ``out_dir``, the stem reduced to ASCII letters (accents dropped), digits, ``._-``.
    The index keeps two clips with the same name (in different folders) apart."""
    ascii_stem = unicodedata.normalize("NFKD", Path(file).stem).encode("ascii", "ignore").decode()
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", ascii_stem).strip("._")[:80] or "clip"
    return Path(out_dir) / f"{index:03d}_{stem}.png"


def plot_timeline(
    prediction: ClipPrediction,
    path: Path,
    size_px: tuple[int, int] = (1200, 500),
    dpi: int = 100,
) -> Path:
    """Draw each class's probability over the clip's time as a PNG of exactly ``size_px``
    (width, height) pixels, and return ``path``.

    A segment's probabilities hold from its start until the next segment starts (the last
    until its end), so overlapping segments show as one step per segment.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if prediction.status != OK or prediction.probabilities is None:
        raise ValueError(f"{prediction.file}: no prediction to plot ({prediction.error})")
    if prediction.segments:
        times = [s.start_s for s in prediction.segments] + [prediction.segments[-1].end_s]
        probs = np.array([s.probabilities for s in prediction.segments], dtype=np.float64)
    else:
        times = [0.0, float(prediction.duration_s or 1.0)]
        probs = np.asarray(prediction.probabilities, dtype=np.float64)[None, :]
    probs = np.vstack([probs, probs[-1:]])  # the last step runs to the last segment's end

    width, height = size_px
    figure = Figure(figsize=(width / dpi, height / dpi), dpi=dpi)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for i, name in enumerate(prediction.classes):
        axes.step(times, probs[:, i], where="post", label=name, linewidth=1.5)
    axes.set_xlim(times[0], times[-1])
    axes.set_ylim(0.0, 1.0)
    axes.set_xlabel("time (s)")
    axes.set_ylabel("probability")
    axes.set_title(
        f"{Path(prediction.file).name}: {prediction.label} "
        f"({100 * _label_probability(prediction):.1f}%) from {'+'.join(prediction.modalities)}"
    )
    axes.legend(loc="upper right", fontsize="small")
    axes.grid(True, alpha=0.3)
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path, dpi=dpi, format="png")
    return path


def _clip_end(prediction: ClipPrediction) -> float | str:
    if prediction.duration_s is not None:
        return float(prediction.duration_s)
    if prediction.segments:
        return float(prediction.segments[-1].end_s)
    return ""


def _probability_cells(
    classes: Sequence[str], probabilities: np.ndarray | None, columns: Sequence[str]
) -> dict[str, float | str]:
    cells: dict[str, float | str] = dict.fromkeys(columns, "")
    if probabilities is not None:
        for name, p in zip(classes, probabilities, strict=True):
            cells[f"p_{name}"] = float(p)
    return cells


def _probability_map(classes: Sequence[str], probabilities: np.ndarray | None) -> dict[str, float]:
    if probabilities is None:
        return {}
    return {name: float(p) for name, p in zip(classes, probabilities, strict=True)}


def _label_probability(prediction: ClipPrediction) -> float:
    if prediction.probabilities is None or prediction.label not in prediction.classes:
        return float("nan")
    return float(prediction.probabilities[prediction.classes.index(prediction.label)])


def _shorten_left(text: str, width: int) -> str:
    """``text``, or its last ``width - 1`` characters after "…" when longer: the file name
    at the end is what tells clips apart."""
    return text if len(text) <= width else "…" + text[-(width - 1) :]
