"""What the fusion reads for one fold: the feature blocks beside each other, row-aligned.

Blocks (``fusion.inputs`` and ``fusion.gender_inputs`` name them):

- ``cnn``: the branches' FC features (``fc_<modality>.h5``), audio and video paired by
  :func:`avemotion.fusion.pairing.fuse_tables`;
- ``egemaps``, ``compare``: openSMILE functionals of the same audio segment (stage
  build_functionals), joined on clip, segment and the audio copy.

With ``base.speaker_norm`` every block is z-scored within each speaker
(:func:`avemotion.speakers.standardise_segments`, each speaker's original segments
giving its statistics).

With ``fusion.stacking: cross_fit`` a second ``cnn`` block holds the out-of-fold features
of the inner CNNs (:mod:`avemotion.stacking`) for the fitting rows, and the outer CNN's
(or the inner CNNs' mean) for the validation and test rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from avemotion.errors import BadInputError
from avemotion.fusion.pairing import AUGMENTATIONS, FusedTable, fuse_tables
from avemotion.h5store import read_attrs, read_meta
from avemotion.params import Params
from avemotion.scores import BranchTable, read_branch
from avemotion.speakers import standardise_segments

KEYS = ["clip_id", "segment", "augmentation"]


@dataclass
class FusionInputs:
    """One fold's fusion rows: ``blocks[name]`` (n_rows, dim) for each block read,
    ``cnn_crossfit`` the cross-fit CNN block (None with paper stacking), the fused
    table (meta, each branch's softmax) and the branch tables it was made from."""

    tables: list[BranchTable]
    fused: FusedTable
    blocks: dict[str, np.ndarray]
    cnn_crossfit: np.ndarray | None

    def matrix(self, names: Sequence[str], crossfit: bool = False) -> np.ndarray:
        """The named blocks side by side, (n_rows, total dim); ``crossfit`` takes the
        cross-fit CNN block for ``cnn``."""
        parts = [self.cnn_crossfit if crossfit and n == "cnn" else self.blocks[n] for n in names]
        return np.hstack(parts).astype(np.float32, copy=False)


def block_order(params: Params) -> list[str]:
    """The blocks the fusion reads, each once, in ``fusion.inputs`` then
    ``fusion.gender_inputs`` order."""
    return list(dict.fromkeys([*params.fusion.inputs, *params.fusion.gender_inputs]))


def block_columns(params: Params, inputs: FusionInputs) -> dict[str, np.ndarray]:
    """Column indices of each block in :meth:`FusionInputs.matrix` of :func:`block_order`."""
    columns, start = {}, 0
    for name in block_order(params):
        width = inputs.blocks[name].shape[1]
        columns[name] = np.arange(start, start + width)
        start += width
    return columns


def branch_augmentation(names: np.ndarray, modality: str) -> np.ndarray:
    """Each fused row's own augmentation in one branch (``snr20+rot4`` -> ``snr20`` for
    audio); "" where that branch's row is the original."""
    prefix = AUGMENTATIONS[modality][0]
    return np.array(
        [next((p for p in str(n).split("+") if p.startswith(prefix)), "") for n in names],
        dtype=object,
    )


def _rows_of(meta: dict[str, np.ndarray], keys: pd.DataFrame, where: Path) -> np.ndarray:
    """Row index in a table (``meta``) of each wanted key, -1 where it has none."""
    table = pd.DataFrame({k: np.asarray(meta[k]) for k in KEYS}).assign(
        row=np.arange(len(meta["clip_id"]))
    )
    table["clip_id"] = table["clip_id"].astype(str)
    table["augmentation"] = table["augmentation"].astype(str)
    if table.duplicated(KEYS).any():
        raise BadInputError("a segment appears twice", where)
    wanted = keys.astype({"clip_id": str, "augmentation": str})
    found = wanted.merge(table, on=KEYS, how="left")["row"]
    return found.fillna(-1).to_numpy(dtype=np.int64)


def _fused_keys(fused: FusedTable, modality: str) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "clip_id": fused.meta["clip_id"],
            "segment": fused.meta["segment"],
            "augmentation": branch_augmentation(fused.meta["augmentation"], modality),
        }
    )


def read_functionals(path: Path, fused: FusedTable) -> np.ndarray:
    """The functionals row of each fused row's audio segment, (n_rows, dim)."""
    if not path.is_file():
        raise BadInputError("functionals table not found; run build_functionals", path)
    rows = _rows_of(read_meta(path), _fused_keys(fused, "audio"), path)
    if (rows < 0).any():
        missing = int((rows < 0).sum())
        raise BadInputError(
            f"{missing} fusion rows have no functionals row; rebuild both from the same "
            "data/index.csv",
            path,
        )
    with h5py.File(path, "r") as handle:
        return handle["x"][:][rows]


def crossfit_block(
    fused: FusedTable,
    inner_tables: dict[str, list[Path]],
    fitting: np.ndarray,
    test_features: str,
    outer: np.ndarray,
) -> np.ndarray:
    """The cross-fit ``cnn`` block: for each fitting row (mask ``fitting``) the features
    from the one inner CNN that held its speaker out; for the other rows the outer
    block ``outer``, or with ``test_features="inner_mean"`` the mean over the inner CNNs.

    ``inner_tables[modality]`` lists that branch's inner feature tables."""
    parts = []
    for modality, paths in inner_tables.items():
        keys = _fused_keys(fused, modality)
        out_of_fold: np.ndarray | None = None
        mean: np.ndarray | None = None
        filled = np.zeros(len(keys), dtype=bool)
        for path in paths:
            if not path.is_file():
                raise BadInputError("inner CNN features not found; run train_inner", path)
            meta = read_meta(path)
            with h5py.File(path, "r") as handle:
                x = handle["x"][:]
            attrs = read_attrs(path)
            held, kind = set(attrs["held_out_groups"]), str(attrs["group_kind"])
            rows = _rows_of(meta, keys, path)
            if out_of_fold is None:
                out_of_fold = np.zeros((len(keys), x.shape[1]), dtype=np.float32)
                mean = np.zeros_like(out_of_fold)
            group = np.asarray(fused.meta["speaker" if kind == "speaker" else "clip_id"])
            mine = fitting & np.isin(group.astype(str), list(held))
            if (rows[mine] < 0).any():
                raise BadInputError("misses rows of its held-out speakers", path)
            out_of_fold[mine] = x[rows[mine]]
            filled |= mine
            others = ~fitting
            if (rows[others] < 0).any():
                raise BadInputError("misses validation or test rows", path)
            mean[others] += x[rows[others]] / len(paths)
        if not filled[fitting].all():
            raise BadInputError(
                f"{int((~filled[fitting]).sum())} fitting rows are held out by no inner "
                f"{modality} CNN; rerun train_inner"
            )
        assert out_of_fold is not None and mean is not None
        parts.append((out_of_fold, mean))
    cnn = np.hstack([p[0] for p in parts])
    rest = outer if test_features == "outer" else np.hstack([p[1] for p in parts])
    cnn[~fitting] = rest[~fitting]
    return cnn


def read_inputs(params: Params, features: Path, functionals: Path) -> FusionInputs:
    """Read one fold's blocks (see the module docstring) but the cross-fit one
    (:func:`add_crossfit`). ``features`` is the fold's folder of ``fc_<modality>.h5``;
    ``functionals`` the folder of ``<set>.h5``."""
    modalities = params.base.modalities
    tables = [read_branch(features / f"fc_{m}.h5", m) for m in modalities]
    fused = fuse_tables(tables, params.augment)
    blocks = {"cnn": fused.x}
    for name in block_order(params):
        if name != "cnn":
            blocks[name] = read_functionals(functionals / f"{name}.h5", fused)
    if params.base.speaker_norm:
        blocks = {name: standardise_segments(block, fused.meta) for name, block in blocks.items()}
    return FusionInputs(tables, fused, blocks, None)


def add_crossfit(params: Params, inputs: FusionInputs, features: Path, fitting: np.ndarray) -> None:
    """Fill ``inputs.cnn_crossfit`` from the inner CNNs' tables in ``features/inner``."""
    inner = {
        m: [features / "inner" / f"fc_{m}_{j}.h5" for j in params.fusion.inner_folds]
        for m in params.base.modalities
    }
    cnn = crossfit_block(
        inputs.fused, inner, fitting, params.fusion.test_features, inputs.blocks["cnn"]
    )
    # a speaker's rows are all fitting or all not (the folds group by speaker), so each is
    # standardised once: the outer block's rows are already, and z-scores stay z-scores
    speaker_norm = params.base.speaker_norm
    inputs.cnn_crossfit = standardise_segments(cnn, inputs.fused.meta) if speaker_norm else cnn
