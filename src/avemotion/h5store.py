"""Segment tables in HDF5: one row per analysis segment, a tensor and its labels side by side.

Every feature file of the pipeline (``audio.h5``, ``keyframes.h5``, ``video.h5``,
``fc_*.h5``) has the same layout, so any stage can read any of them:

- ``/x``: the tensor dataset, shape ``(n_rows, *item_shape)``, chunked one row per chunk
  so a reader pulls single segments without loading the file, and compressed only where
  it pays (:data:`NO_COMPRESSION` and the two constants after it);
- ``/meta/<column>``: one 1-D dataset per :data:`META_COLUMNS` entry, row-aligned with
  ``/x``;
- file attrs: the params that made the file (as YAML text under ``params``) and
  anything else the stage records.

Files are written to ``<name>.partial`` and renamed only when the writer closes without
an error, so an interrupted stage never leaves a file that DVC or the next stage would
take as complete. Rows are appended as clips finish and written in blocks of about
:data:`WRITE_BUFFER_BYTES`, so HDF5 pays its per-call costs (a resize and a write for
each of the eleven datasets) once per block rather than once per clip; memory holds at
most one block, whatever the number of clips.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Literal

import h5py
import numpy as np
import yaml

from avemotion.atomic import atomic_path

#: Columns every segment table carries, in this order.
META_COLUMNS: tuple[str, ...] = (
    "clip_id",
    "segment",
    "start_s",
    "speaker",
    "gender",
    "emotion",
    "label",
    "fold",
    "augmented",
    "augmentation",
)

#: Rows are held until this many bytes of tensors wait, then written in one go.
WRITE_BUFFER_BYTES = 8 * 2**20

Compression = Literal["gzip", "lzf"] | None
#: What each table is compressed with, chosen by measurement (benchmarks/audio_frontend.py
#: and the demo's tables): compression pays only where the data shrinks a lot. Float
#: spectrograms and features shrink by 7-15 %, while lzf made the audio stage 1.4x as slow
#: and gzip 2x: none. The visual tensors, mostly padding, halve with lzf (151 -> 81 MB on
#: the demo, smaller than gzip's 101 MB and several times faster to write). The uint8 face
#: keyframes halve with gzip (77 -> 42 MB), whose cost is small beside face detection.
NO_COMPRESSION: Compression = None
VISUAL_TENSORS_COMPRESSION: Compression = "lzf"
KEYFRAMES_COMPRESSION: Compression = "gzip"

_STRING_COLUMNS = {"clip_id", "speaker", "gender", "emotion", "augmentation"}
_COLUMN_DTYPES: dict[str, Any] = {
    "segment": np.int32,
    "start_s": np.float64,
    "label": np.int32,
    "fold": np.int32,
    "augmented": np.bool_,
}
_STR = h5py.string_dtype(encoding="utf-8")


def clip_rows(
    clip: Any,
    segments: Sequence[int] | np.ndarray,
    starts_s: Sequence[float] | np.ndarray,
    augmentation: Sequence[str] | None = None,
) -> dict[str, list[Any]]:
    """The meta columns of one clip's rows, ready for :meth:`SegmentWriter.append`.

    ``clip`` is anything with ``clip_id, speaker, gender, emotion, label, fold``
    attributes (an index row, a front-end job); ``segments`` and ``starts_s`` give each
    row's segment index and start time, and ``augmentation`` its copy name (``""`` for an
    original row, the default for every row).
    """
    n = len(segments)
    names = [""] * n if augmentation is None else list(augmentation)
    return {
        "clip_id": [clip.clip_id] * n,
        "segment": [int(i) for i in segments],
        "start_s": [float(t) for t in starts_s],
        "speaker": [clip.speaker] * n,
        "gender": [clip.gender] * n,
        "emotion": [clip.emotion] * n,
        "label": [int(clip.label)] * n,
        "fold": [int(clip.fold)] * n,
        "augmented": [name != "" for name in names],
        "augmentation": names,
    }


class SegmentWriter:
    """Append-only writer of a segment table; use as a context manager.

    ``item_shape`` is the shape of one row's tensor, e.g. ``(30, 100, 3)`` for a
    spectrogram or ``(16, 64, 64, 3)`` for a keyframe tensor.
    """

    def __init__(
        self,
        path: str | Path,
        item_shape: tuple[int, ...],
        dtype: Any = np.float32,
        attrs: Mapping[str, Any] | None = None,
        compression: Compression = NO_COMPRESSION,
        extra_shapes: Mapping[str, tuple[int, ...]] | None = None,
    ):
        self.path = Path(path)
        self._target: AbstractContextManager[Path] | None = None
        self.item_shape = tuple(int(n) for n in item_shape)
        self.dtype = np.dtype(dtype)
        self.attrs = dict(attrs or {})
        self.compression = compression
        self.extra_shapes = {k: tuple(v) for k, v in (extra_shapes or {}).items()}
        self.n_rows = 0  # rows appended, whether written yet or waiting in the buffer
        self._written = 0
        self._waiting: list[tuple[np.ndarray, dict[str, list[Any]], dict[str, np.ndarray]]] = []
        self._waiting_bytes = 0
        self._file: h5py.File | None = None

    def __enter__(self) -> SegmentWriter:
        self.path.unlink(missing_ok=True)
        self._target = atomic_path(self.path)
        self.partial_path = self._target.__enter__()
        self._file = h5py.File(self.partial_path, "w")
        self._file.create_dataset(
            "x",
            shape=(0, *self.item_shape),
            maxshape=(None, *self.item_shape),
            dtype=self.dtype,
            chunks=(1, *self.item_shape),
            compression=self.compression,
        )
        for name, shape in self.extra_shapes.items():
            self._file.create_dataset(
                name,
                shape=(0, *shape),
                maxshape=(None, *shape),
                dtype=np.float32,
                chunks=(min(1024, max(1, 2**20 // max(1, int(np.prod(shape))) // 4)), *shape),
            )
        meta = self._file.create_group("meta")
        for column in META_COLUMNS:
            dtype = _STR if column in _STRING_COLUMNS else _COLUMN_DTYPES[column]
            meta.create_dataset(column, shape=(0,), maxshape=(None,), dtype=dtype, chunks=(4096,))
        nested = sorted(k for k, v in self.attrs.items() if isinstance(v, (dict, list, tuple)))
        for key, value in self.attrs.items():
            self._file.attrs[key] = _attr_value(value)
        self._file.attrs[_YAML_KEYS] = _attr_value(nested)
        return self

    def append(
        self,
        tensors: np.ndarray,
        rows: Mapping[str, Iterable[Any]],
        extras: Mapping[str, np.ndarray] | None = None,
    ) -> None:
        """Append ``len(tensors)`` rows; ``rows`` maps every meta column to that many values.

        ``extras`` holds a row-aligned array for each dataset named in ``extra_shapes``
        (for example the class probabilities beside FC features).
        """
        assert self._file is not None, "use SegmentWriter as a context manager"
        tensors = np.asarray(tensors, dtype=self.dtype)
        if tensors.shape[1:] != self.item_shape:
            raise ValueError(f"rows of shape {tensors.shape[1:]} do not fit {self.item_shape}")
        n_new = len(tensors)
        if n_new == 0:
            return
        missing = set(META_COLUMNS) - set(rows)
        if missing:
            raise ValueError(f"missing meta columns: {sorted(missing)}")
        columns = {column: list(rows[column]) for column in META_COLUMNS}
        for column, values in columns.items():
            if len(values) != n_new:
                raise ValueError(f"column {column} has {len(values)} values for {n_new} rows")
        extras = {k: np.asarray(v, dtype=np.float32) for k, v in (extras or {}).items()}
        if set(extras) != set(self.extra_shapes):
            raise ValueError(f"extras must be exactly {sorted(self.extra_shapes)}")
        for name, values in extras.items():
            if values.shape != (n_new, *self.extra_shapes[name]):
                raise ValueError(f"extra {name} has shape {values.shape} for {n_new} rows")
        self._waiting.append((tensors, columns, extras))
        self._waiting_bytes += tensors.nbytes
        self.n_rows += n_new
        if self._waiting_bytes >= WRITE_BUFFER_BYTES:
            self._write_waiting()

    @property
    def rows_written(self) -> int:
        """Rows already in the file; the rest of :attr:`n_rows` wait in the buffer."""
        return self._written

    def _write_waiting(self) -> None:
        """Write the buffered rows: one resize and one write per dataset."""
        assert self._file is not None
        if not self._waiting:
            return
        tensors = np.concatenate([block[0] for block in self._waiting])
        extras = {
            name: np.concatenate([block[2][name] for block in self._waiting])
            for name in self.extra_shapes
        }
        start, end = self._written, self._written + len(tensors)
        for name, values in {"x": tensors, **extras}.items():
            dataset = self._file[name]
            dataset.resize(end, axis=0)
            dataset[start:end] = values
        for column in META_COLUMNS:
            values = [v for block in self._waiting for v in block[1][column]]
            dataset = self._file["meta"][column]
            dataset.resize(end, axis=0)
            dataset[start:end] = [str(v) for v in values] if column in _STRING_COLUMNS else values
        self._written = end
        self._waiting.clear()
        self._waiting_bytes = 0

    def set_attrs(self, attrs: Mapping[str, Any]) -> None:
        """Add attrs known only once the rows are written (a run's counts)."""
        assert self._file is not None, "use SegmentWriter as a context manager"
        for key, value in attrs.items():
            self._file.attrs[key] = _attr_value(value)

    def __exit__(self, exc_type, exc, tb) -> None:
        assert self._file is not None and self._target is not None
        if exc_type is None:
            self._write_waiting()
        self._file.attrs["n_rows"] = self.n_rows
        self._file.close()
        self._file = None
        self._target.__exit__(exc_type, exc, tb)


_YAML_KEYS = "_yaml_keys"  # which attrs hold YAML text, so free text is never parsed


def _attr_value(value: Any) -> Any:
    """HDF5 attrs hold scalars, strings and arrays; anything nested is stored as YAML text."""
    if isinstance(value, (dict, list, tuple)):
        return yaml.safe_dump(value, sort_keys=True)
    return value


def read_meta(path: str | Path) -> dict[str, np.ndarray]:
    """All meta columns of a segment table as numpy arrays (strings decoded to ``str``)."""
    with h5py.File(path, "r") as handle:
        meta = {}
        for column in META_COLUMNS:
            dataset = handle["meta"][column]
            meta[column] = dataset.asstr()[:] if column in _STRING_COLUMNS else dataset[:]
            if column in _STRING_COLUMNS:
                meta[column] = np.asarray(meta[column], dtype=object)
        return meta


def read_attrs(path: str | Path) -> dict[str, Any]:
    """File attrs, with the values the writer stored as YAML decoded back to Python objects."""
    with h5py.File(path, "r") as handle:
        raw = {k: v.decode() if isinstance(v, bytes) else v for k, v in handle.attrs.items()}
    yaml_keys = set(yaml.safe_load(raw.pop(_YAML_KEYS, "[]")) or [])
    return {k: yaml.safe_load(v) if k in yaml_keys else v for k, v in raw.items()}


def table_differences(first: str | Path, second: str | Path) -> list[str]:
    """What differs between two HDF5 files: the list of groups and datasets, any
    dataset's values, dtype or shape, any file attribute. Empty when they hold the same
    (how two runs of a stage, on two backends say, are compared)."""
    with h5py.File(first, "r") as one, h5py.File(second, "r") as other:
        names: list[str] = []
        one.visit(names.append)
        seen: list[str] = []
        other.visit(seen.append)
        if names != seen:
            return [f"datasets {names} vs {seen}"]
        found = []
        for name in names:
            if isinstance(one[name], h5py.Dataset):
                a, b = one[name][()], other[name][()]
                if a.dtype != b.dtype or a.shape != b.shape or not np.array_equal(a, b):
                    found.append(name)
        for key in sorted(set(one.attrs) | set(other.attrs)):
            if key not in one.attrs or key not in other.attrs:
                found.append(f"attr {key}")
            elif not np.array_equal(one.attrs[key], other.attrs[key]):
                found.append(f"attr {key}")
    return found
