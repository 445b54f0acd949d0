"""One CNN branch for one fold: train it, then turn every segment into FC features.

This is what ``stages/train_cnn.py`` runs (both, one after the other), for
``modality`` ``audio`` (2D-CNN on ``audio.h5``) or ``video`` (3D-CNN on ``video.h5``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

from avemotion.atomic import write_json
from avemotion.distributed import process_group
from avemotion.errors import BadInputError
from avemotion.h5store import META_COLUMNS, SegmentWriter, read_attrs
from avemotion.launch import World
from avemotion.models import (
    ROW_TIME_AXIS,
    BranchCNN,
    BranchSpec,
    branch_spec,
    build_audio_cnn,
    build_video_cnn,
)
from avemotion.params import MODALITIES, Params
from avemotion.recipes import straddling_windows
from avemotion.scores import n_classes_of
from avemotion.training import (
    FoldRows,
    SegmentDataset,
    fit,
    fold_rows,
    load_table_meta,
    outcome_json,
    predict_batches,
    resolve_device,
    settings_digest,
)

#: Keys of a training's metrics measured in wall-clock time: returned, not written.
WALL_CLOCK = frozenset({"train_samples_per_s"})


def checkpoint_path(best: Path) -> Path:
    """The resumable checkpoint kept beside ``best.pt`` (not a DVC output)."""
    return best.with_name("checkpoint.pt")


def build_branch(
    params: Params,
    modality: str,
    n_classes: int,
    table: Path,
    init: str | None = None,
    standardise: bool = False,
) -> BranchCNN:
    """The branch network for ``base.profile``, sized to the table's tensors; ``init``
    optionally names conv weights to start from (``train.init_weights``); ``standardise``
    gives it input statistics (``train.standardise_inputs``, see :class:`BranchCNN`)."""
    if modality not in MODALITIES:
        raise BadInputError(f"modality must be one of {MODALITIES}, not {modality!r}")
    with h5py.File(table, "r") as handle:
        item_shape = handle["x"].shape[1:]
    spec = branch_spec(params, modality)
    return network_for_rows(modality, spec, n_classes, item_shape, init, standardise)


def network_for_rows(
    modality: str,
    spec: BranchSpec | Mapping[str, Any],
    n_classes: int,
    item_shape: tuple[int, ...],
    init: str | None = None,
    standardise: bool = False,
) -> BranchCNN:
    """The branch network for rows of ``item_shape`` as the front-ends store them
    (channels last: audio (n_mels, n_frames, 3), video (n_keyframes, size, size, 3));
    what :func:`build_branch` builds from a table and a model bundle from its manifest."""
    if modality == "audio":
        return build_audio_cnn(
            n_classes,
            spec,
            input_size=tuple(item_shape[:2]),
            init_weights=init,
            standardise=standardise,
        )
    return build_video_cnn(
        n_classes,
        spec,
        input_size=int(item_shape[1]),
        n_frames=int(item_shape[0]),
        init_weights=init,
        standardise=standardise,
    )


def train_branch(
    params: Params,
    modality: str,
    fold: int,
    table: Path,
    best: Path,
    metrics_path: Path,
    log_epoch: Callable[[dict[str, float]], None] | None = None,
    rows: FoldRows | None = None,
    run_name: str | None = None,
) -> dict[str, Any]:
    """Train one branch on fold ``fold``'s training rows of ``table``; write the best
    epoch's weights (or the mean of the last ``train.average_last`` epochs', with the
    input statistics of ``train.standardise_inputs``) to ``best`` and the run's metrics
    to ``metrics_path`` (returned). SpecAugment masks apply to the audio branch only;
    with ``train.hop_s`` the training rows are joined by the windows that straddle two
    consecutive segments (``base.segment_s`` apart) of a clip.

    The written metrics leave out :data:`WALL_CLOCK` keys (the training speed), which
    the returned ones keep.

    ``rows`` replaces the fold's own split (an inner CNN of cross-fit stacking trains on
    part of the fold's training speakers); ``run_name`` then tells its checkpoint apart.

    Started as one of N > 1 processes (``train.distributed``, :mod:`avemotion.distributed`)
    it joins their group for the training, and only rank 0 writes ``best`` and
    ``metrics_path`` (every rank returns the metrics). The checkpoint's digest names the
    process count (a run resumes only with as many processes as it started with), but
    not with one process, whose checkpoints stay those of single-process training."""
    base = params.base
    settings = params.train.for_branch(modality)
    torch.set_num_threads(settings.threads)
    meta = load_table_meta(table)
    if len(meta["label"]) == 0:
        raise BadInputError(f"no {modality} segments to train on", table)
    if rows is None:
        rows = fold_rows(meta, fold, settings.validation_fraction, settings.validate_by, base.seed)
    time_axis = ROW_TIME_AXIS[modality]
    with h5py.File(table, "r") as handle:
        steps = handle["x"].shape[1 + time_axis]
    windows = straddling_windows(meta, rows.train, settings.hop_s, base.segment_s, steps)
    labels = meta["label"]
    train_set = SegmentDataset(
        table, rows.train, labels[rows.train], windows, labels[windows[:, 0]], time_axis
    )
    torch.manual_seed(base.seed)
    n_classes = n_classes_of(params.data.classes, meta["label"])
    init = settings.init_weights.get(modality)  # type: ignore[call-overload]
    model = build_branch(params, modality, n_classes, table, init, settings.standardise_inputs)
    world = World.from_env()
    digest = settings_digest(
        modality,
        fold,
        run_name,
        settings.model_dump(exclude={"by_modality", "distributed"}),
        base.seed,
        branch_spec(params, modality),
        read_attrs(table).get("params"),
        *([] if world.size == 1 else [{"processes": world.size}]),
    )
    backend = settings.distributed.backend
    with process_group(backend, resolve_device(base.device)) as (world, device):
        outcome = fit(
            model,
            train_set,
            SegmentDataset(table, rows.validation, labels[rows.validation]),
            settings,
            base.seed,
            checkpoint_path(best),
            best,
            digest,
            log_epoch=log_epoch,
            device=device,
            spec_augment=modality == "audio",
        )
    metrics = {
        **outcome_json(outcome),
        "modality": modality,
        "fold": fold,
        "profile": base.profile,
        "processes": world.size,
        "n_train_rows": len(rows.train),
        "n_train_windows": len(windows),
        "n_validation_rows": len(rows.validation),
        "n_test_rows": len(rows.test),
    }
    if world.is_main:  # wall-clock figures vary run to run: a DVC output holding them could
        # never match dvc.lock, so they are returned (and printed by the stage) only
        write_json(metrics_path, {k: v for k, v in metrics.items() if k not in WALL_CLOCK})
    return metrics


def extract_after_training(
    params: Params,
    modality: str,
    table: Path,
    best: Path,
    out: Path,
    keep: np.ndarray | None = None,
    attrs: dict[str, Any] | None = None,
) -> int | None:
    """What a training stage does once its processes have trained (``train_cnn``, and
    ``train_inner`` with ``keep`` and ``attrs``): rank 0 alone writes ``out`` (see
    :func:`extract_branch_features`, whose row count it returns) on the threads this
    machine's training processes had between them, ``train.threads`` times
    :attr:`~avemotion.launch.World.local_size`; the other ranks write nothing and return
    None."""
    world = World.from_env()
    if not world.is_main:
        return None
    torch.set_num_threads(params.train.for_branch(modality).threads * world.local_size)
    return extract_branch_features(params, modality, table, best, out, keep=keep, attrs=attrs)


def extract_branch_features(
    params: Params,
    modality: str,
    table: Path,
    best: Path,
    out: Path,
    batch_size: int = 64,
    keep: np.ndarray | None = None,
    attrs: dict[str, Any] | None = None,
) -> int:
    """Write the best model's FC features and class probabilities for every row of
    ``table`` (all folds, augmented rows marked), or the rows of the boolean mask
    ``keep``, to ``out``, in batches; returns the row count. Inputs are standardised
    with the statistics ``best`` carries, if any; ``attrs`` are added to the file's."""
    if not best.is_file():
        raise BadInputError("trained model not found; run the train_cnn stage first", best)
    meta = load_table_meta(table)
    state = torch.load(best, map_location="cpu", weights_only=True)
    n_classes = n_classes_of(params.data.classes, meta["label"])
    # a model trained with train.standardise_inputs carries its input statistics
    model = build_branch(params, modality, n_classes, table, standardise="input_mean" in state)
    model.load_state_dict(state)
    device = resolve_device(params.base.device)
    model.to(device)
    attrs = {"source": str(table), "model": str(best), "modality": modality, **(attrs or {})}
    with SegmentWriter(
        out,
        (model.feature_dim,),
        attrs=attrs,
        extra_shapes={"probs": (model.n_classes,)},
    ) as writer:
        for start, features, probs in predict_batches(model, table, batch_size, device):
            picked = np.arange(start, start + len(features))
            if keep is not None:
                chosen = keep[picked]
                picked, features, probs = picked[chosen], features[chosen], probs[chosen]
            if len(picked):
                rows = {column: meta[column][picked] for column in META_COLUMNS}
                writer.append(features, rows, extras={"probs": probs})
    return writer.n_rows
