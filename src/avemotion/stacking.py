"""Cross-fit stacking at the CNN level: inner CNNs whose FC features the fusion learns from.

With ``fusion.stacking: paper`` the ELMs and the SVM learn from FC features of the very
rows the CNN was trained on, which are far more separable than an unseen speaker's; at
test time they meet unseen speakers only. With ``cross_fit`` each outer fold's
*fitting* speakers (its training speakers less the validation speakers, see
:func:`avemotion.splits.validation_rows`) are dealt into K inner folds
(``fusion.inner_folds``); inner CNN j trains on the fitting speakers outside inner fold j,
picks its best epoch on the validation speakers (as the outer CNN does) and writes the FC
features of

- its held-out inner speakers (every row, augmented copies included): the out-of-fold
  features the fusion is fitted on;
- every other row of the table (validation speakers, test fold, with their augmented
  copies, which the fused table pairs): for ``fusion.test_features: inner_mean``, the
  mean over the inner CNNs.

So no training row's features come from a CNN that saw its speaker, and the validation
speakers, seen by no CNN at all, score the fusion the way the test fold will.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from avemotion.branch import extract_after_training, train_branch
from avemotion.errors import BadInputError
from avemotion.params import Params
from avemotion.splits import held_and_fitting
from avemotion.training import FoldRows, load_table_meta


def inner_groups(
    meta: dict[str, np.ndarray], fold: int, n_inner: int, params: Params
) -> tuple[list[np.ndarray], str]:
    """The speakers of each of the ``n_inner`` inner folds of outer fold ``fold``, and
    the group kind (``speaker``, or ``clip`` where the fitting part has fewer speakers
    than inner folds).

    The fitting speakers, sorted, are shuffled with ``base.seed`` and dealt round-robin,
    so the audio and the video table (whose rows differ) get the same inner folds.
    """
    _, fitting = held_and_fitting(meta, fold, params.train, params.base.seed)
    kind = "speaker"
    groups = np.unique(np.asarray(meta["speaker"][fitting]).astype(str))
    if len(groups) < n_inner:
        kind = "clip"
        groups = np.unique(np.asarray(meta["clip_id"][fitting]).astype(str))
    if len(groups) < n_inner:
        raise BadInputError(
            f"fold {fold} has {len(groups)} fitting {kind}s for {n_inner} inner folds: "
            "lower the number of fusion.inner_folds"
        )
    order = np.random.default_rng(params.base.seed).permutation(groups)
    return [np.sort(order[j::n_inner]) for j in range(n_inner)], kind


def inner_fold_rows(
    meta: dict[str, np.ndarray], fold: int, inner: int, n_inner: int, params: Params
) -> tuple[FoldRows, np.ndarray, str]:
    """Rows of inner CNN ``inner``: training (fitting rows outside inner fold ``inner``),
    validation (the outer fold's validation originals) and, as ``test``, the rows whose
    features it writes (its held-out inner rows and every row outside the fitting part:
    the validation speakers' and the outer test fold's, noisy copies included, since the
    fused table has them all).
    Also returns the held-out groups and their kind."""
    groups, kind = inner_groups(meta, fold, n_inner, params)
    column = np.asarray(meta["speaker" if kind == "speaker" else "clip_id"]).astype(str)
    held, fitting = held_and_fitting(meta, fold, params.train, params.base.seed)
    out_of_fold = fitting & np.isin(column, groups[inner])
    original = ~np.asarray(meta["augmented"], dtype=bool)
    validation = held & original
    scored = out_of_fold | ~fitting  # the fusion reads copies of validation/test rows too
    rows = FoldRows(
        train=np.flatnonzero(fitting & ~out_of_fold),
        validation=np.flatnonzero(validation),
        test=np.flatnonzero(scored),
    )
    return rows, groups[inner], kind


def run_train_inner(
    params: Params,
    modality: str,
    fold: int,
    inner: int,
    table: Path,
    model: Path,
    features: Path,
    metrics: Path,
) -> dict[str, Any]:
    """Stage train_inner: train inner CNN ``inner`` of fold ``fold`` and write the FC
    features of its held-out, validation and test rows to ``features`` (a segment table
    like ``fc_<modality>.h5``, with the speakers it trained on and held out in its attrs).

    As one of N > 1 processes (``train.distributed``) it trains its share, and rank 0
    alone writes the model, the metrics and the features."""
    n_inner = len(params.fusion.inner_folds)
    if inner not in params.fusion.inner_folds:
        raise BadInputError(f"inner fold {inner} is not in fusion.inner_folds")
    meta = load_table_meta(table)
    rows, held_out, kind = inner_fold_rows(meta, fold, inner, n_inner, params)
    summary = train_branch(
        params, modality, fold, table, model, metrics, rows=rows, run_name=f"inner{inner}"
    )
    attrs = {
        "inner_fold": inner,
        "group_kind": kind,
        "held_out_groups": [str(g) for g in held_out],
        "trained_speakers": sorted({str(s) for s in meta["speaker"][rows.train]}),
    }
    wanted = np.zeros(len(meta["label"]), dtype=bool)
    wanted[rows.test] = True
    extract_after_training(params, modality, table, model, features, keep=wanted, attrs=attrs)
    return {**summary, "inner_fold": inner, "held_out_groups": attrs["held_out_groups"]}
