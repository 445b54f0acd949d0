"""Per-segment score tables that several systems read.

A CNN branch's FC features and class probabilities (``fc_<modality>.h5``, written by
the train_cnn stage) feed the ELM fusion and the baseline's late fusion with
video; both also need the class count of the run and probability columns over every
class. These live here, once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from avemotion.errors import BadInputError
from avemotion.h5store import read_meta


@dataclass
class BranchTable:
    """One ``fc_<modality>.h5``: features ``x`` (n_rows, dim), softmax ``probs``
    (n_rows, C) and the :data:`META_COLUMNS`."""

    modality: str
    path: Path
    x: np.ndarray
    probs: np.ndarray
    meta: dict[str, np.ndarray]


def read_branch(path: str | Path, modality: str) -> BranchTable:
    """Read a branch's FC-feature table (written by the train_cnn stage)."""
    path = Path(path)
    if not path.is_file():
        raise BadInputError(
            f"{modality} FC features not found; run the train_cnn stage "
            f"(base.modalities lists {modality})",
            path,
        )
    try:
        with h5py.File(path, "r") as handle:
            if "probs" not in handle:
                raise BadInputError("has no /probs dataset; rerun train_cnn", path)
            x = handle["x"][:]
            probs = handle["probs"][:]
    except OSError as error:
        raise BadInputError(f"cannot read: {error}", path) from None
    if x.ndim != 2 or len(probs) != len(x):
        raise BadInputError(f"/x of shape {x.shape} and /probs of {probs.shape} do not fit", path)
    return BranchTable(modality, path, x, probs, read_meta(path))


def n_classes_of(classes: Sequence[str] | None, labels: np.ndarray) -> int:
    """``len(data.classes)``, or one more than the largest label when it is null."""
    return len(classes) if classes else int(np.max(labels, initial=-1)) + 1


def expand_columns(probs: np.ndarray, classes: np.ndarray, n_classes: int) -> np.ndarray:
    """Scores over ``classes`` (a subset of 0..C-1) as (n_rows, n_classes), 0 elsewhere."""
    out = np.zeros((len(probs), n_classes), dtype=np.float64)
    out[:, np.asarray(classes, dtype=np.int64)] = probs
    return out
