"""Which audio row goes with which video row, and the fused feature table.

:func:`pair_rows` says the rule; :func:`fuse_tables` concatenates the paired rows' FC
features (one branch alone when ``base.modalities`` has one).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from avemotion.errors import BadInputError
from avemotion.h5store import META_COLUMNS
from avemotion.params.schema import AugmentParams
from avemotion.scores import BranchTable

#: How each branch names its augmented copies, and the ``augment:`` list they come from.
AUGMENTATIONS = {"audio": ("snr", "snr_db"), "video": ("rot", "rotation_deg")}


def augmentation_index(table: BranchTable, values: Sequence[float]) -> np.ndarray:
    """Per row, 0 for an original and k for the copy made with ``values[k - 1]``
    (``augment.snr_db`` for audio, ``augment.rotation_deg`` for video)."""
    prefix = AUGMENTATIONS[table.modality][0]
    known = {"": 0} | {f"{prefix}{float(v):g}": k for k, v in enumerate(values, start=1)}
    names = pd.Series(table.meta["augmentation"], dtype=object)
    index = names.map(known)
    if index.isna().any():
        strange = sorted(set(names[index.isna()]))
        param = AUGMENTATIONS[table.modality][1]
        raise BadInputError(
            f"augmentations {strange[:5]} are not in augment.{param}={list(values)}; "
            "rerun the feature stages",
            table.path,
        )
    return index.to_numpy(dtype=np.int64)


def pair_rows(
    audio: BranchTable, video: BranchTable, augment: AugmentParams
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Match audio rows to video rows; returns their row indices (n_pairs,) each and counts.

    The rule:

    - an original row pairs with the other branch's original row of the same
      ``(clip_id, segment)``;
    - the k-th augmented copy of a segment in one branch (``augment.snr_db[k]``) pairs
      with the k-th of the other (``augment.rotation_deg[k]``), as the paper lists the
      two "respectively"; when the other branch has no k-th copy of that segment (a
      shorter list, or a copy left out), it pairs with that branch's original row;
    - a row with nothing to pair with (a segment the other branch rejected, e.g. no face
      found) is left out and counted, by branch and kind, in the returned counts.

    Pairs come in the audio table's row order.
    """
    keys = ["clip_id", "segment"]
    frames = {}
    for table in (audio, video):
        values = getattr(augment, AUGMENTATIONS[table.modality][1])
        frame = pd.DataFrame(
            {
                "clip_id": table.meta["clip_id"],
                "segment": table.meta["segment"],
                "k": augmentation_index(table, values),
                "row": np.arange(len(table.x)),
            }
        )
        if frame.duplicated([*keys, "k"]).any():
            twice = frame.loc[frame.duplicated([*keys, "k"]), keys].head(3).values.tolist()
            raise BadInputError(
                f"rows for the same segment and copy appear twice: {twice}", table.path
            )
        frames[table.modality] = frame
    a, v = frames["audio"], frames["video"]
    a_orig, v_orig = a[a.k == 0], v[v.k == 0]
    originals = a_orig.merge(v_orig, on=keys, suffixes=("_a", "_v"))[["row_a", "row_v"]]
    copies = a[a.k > 0].merge(v[v.k > 0], on=[*keys, "k"], how="outer", suffixes=("_a", "_v"))
    copies = copies.merge(
        a_orig[[*keys, "row"]].rename(columns={"row": "orig_a"}), on=keys, how="left"
    )
    copies = copies.merge(
        v_orig[[*keys, "row"]].rename(columns={"row": "orig_v"}), on=keys, how="left"
    )
    own_a, own_v = copies["row_a"].notna(), copies["row_v"].notna()
    copies["row_a"] = copies["row_a"].fillna(copies["orig_a"])
    copies["row_v"] = copies["row_v"].fillna(copies["orig_v"])
    paired = copies["row_a"].notna() & copies["row_v"].notna()
    pairs = pd.concat([originals, copies.loc[paired, ["row_a", "row_v"]]], ignore_index=True)
    pairs = pairs.astype(np.int64).sort_values(["row_a", "row_v"], kind="stable")

    a_left = a_orig[~a_orig.set_index(keys).index.isin(v_orig.set_index(keys).index)]
    v_left = v_orig[~v_orig.set_index(keys).index.isin(a_orig.set_index(keys).index)]
    counts = {
        "audio_rows": len(a),
        "video_rows": len(v),
        "pairs": len(pairs),
        "audio_original_rows_left_out": len(a_left),
        "video_original_rows_left_out": len(v_left),
        "audio_copies_left_out": int((own_a & ~paired).sum()),
        "video_copies_left_out": int((own_v & ~paired).sum()),
        "copies_paired_with_an_original": int((paired & (own_a ^ own_v)).sum()),
        "clips_left_out": sorted(set(a_left["clip_id"]) | set(v_left["clip_id"])),
    }
    return pairs["row_a"].to_numpy(), pairs["row_v"].to_numpy(), counts


@dataclass
class FusedTable:
    """The rows the fusion works on: concatenated features, each branch's softmax, meta.

    ``x`` (n_rows, sum of branch dims) float32; ``probs[modality]`` (n_rows, C);
    ``meta`` the :data:`META_COLUMNS` (``augmentation`` joins both branches' names with
    ``+``); ``pairing`` the counts of :func:`pair_rows` (empty for one branch).
    """

    modalities: tuple[str, ...]
    x: np.ndarray
    probs: dict[str, np.ndarray]
    meta: dict[str, np.ndarray]
    pairing: dict[str, Any]


def fuse_tables(tables: Sequence[BranchTable], augment: AugmentParams) -> FusedTable:
    """One branch as it is, or audio and video paired by :func:`pair_rows`."""
    if len(tables) == 1:
        (table,) = tables
        return FusedTable((table.modality,), table.x, {table.modality: table.probs}, table.meta, {})
    by_modality = {t.modality: t for t in tables}
    audio, video = by_modality["audio"], by_modality["video"]
    row_a, row_v, counts = pair_rows(audio, video, augment)
    for column in ("label", "speaker", "fold"):
        if np.any(audio.meta[column][row_a] != video.meta[column][row_v]):
            raise BadInputError(
                f"paired rows disagree on {column} with {video.path}; rebuild both from "
                "the same data/index.csv",
                audio.path,
            )
    meta = {column: audio.meta[column][row_a] for column in META_COLUMNS}
    meta["augmented"] = audio.meta["augmented"][row_a] | video.meta["augmented"][row_v]
    names = pd.Series(audio.meta["augmentation"][row_a]) + "+" + video.meta["augmentation"][row_v]
    meta["augmentation"] = names.str.strip("+").to_numpy(dtype=object)
    x = np.hstack([audio.x[row_a], video.x[row_v]]).astype(np.float32, copy=False)
    probs = {"audio": audio.probs[row_a], "video": video.probs[row_v]}
    return FusedTable(("audio", "video"), x, probs, meta, counts)
