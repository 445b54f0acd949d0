"""One CNN branch for one fold: train it, then turn every segment into FC features.

This is what ``stages/train_cnn.py`` and ``stages/extract_features.py`` run, for
``modality`` ``audio`` (2D-CNN on ``audio.h5``) or ``video`` (3D-CNN on ``video.h5``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

from avemotion.errors import BadInputError
from avemotion.h5store import META_COLUMNS, SegmentWriter, read_attrs
from avemotion.models import BranchCNN, branch_spec, build_audio_cnn, build_video_cnn
from avemotion.training import (
    SegmentDataset,
    TrainSettings,
    fit,
    fold_rows,
    load_table_meta,
    outcome_json,
    predict_batches,
    resolve_device,
    settings_digest,
)

MODALITIES = ("audio", "video")


@dataclass(frozen=True)
class BranchPaths:
    """Where one branch-and-fold run reads and writes (the DVC stage's deps and outs)."""

    table: Path
    best: Path
    checkpoint: Path
    metrics: Path
    features: Path
    live_dir: Path

    @classmethod
    def default(cls, modality: str, fold: int) -> BranchPaths:
        run = f"{modality}/fold{fold}"
        return cls(
            table=Path(f"data/features/{modality}.h5"),
            best=Path(f"models/{run}/best.pt"),
            checkpoint=Path(f"models/{run}/checkpoint.pt"),
            metrics=Path(f"metrics/train/{modality}-fold{fold}.json"),
            features=Path(f"data/features/fold{fold}/fc_{modality}.h5"),
            live_dir=Path(f"dvclive/{modality}-fold{fold}"),
        )


def n_classes_of(params: dict[str, Any], meta: dict[str, np.ndarray]) -> int:
    """The number of emotion classes: ``data.classes``, or every label in the table."""
    classes = params.get("data", {}).get("classes")
    return len(classes) if classes else int(meta["label"].max()) + 1


def build_branch(params: dict[str, Any], modality: str, n_classes: int, table: Path) -> BranchCNN:
    """The branch network for ``base.profile``, sized to the table's tensors."""
    if modality not in MODALITIES:
        raise BadInputError(f"modality must be one of {MODALITIES}, not {modality!r}")
    spec = branch_spec(params, modality)
    init = (params.get("train", {}).get("init_weights") or {}).get(modality)
    with h5py.File(table, "r") as handle:
        item_shape = handle["x"].shape[1:]
    if modality == "audio":
        return build_audio_cnn(n_classes, spec, input_size=tuple(item_shape[:2]), init_weights=init)
    return build_video_cnn(
        n_classes,
        spec,
        input_size=int(item_shape[1]),
        n_frames=int(item_shape[0]),
        init_weights=init,
    )


def train_branch(
    params: dict[str, Any],
    modality: str,
    fold: int,
    paths: BranchPaths,
    log_epoch: Callable[[dict[str, float]], None] | None = None,
) -> dict[str, Any]:
    """Train one branch on fold ``fold``'s training rows; returns the metrics it wrote."""
    base = params["base"]
    train = dict(params.get("train", {}))
    train.update((train.get("by_modality") or {}).get(modality) or {})
    settings = TrainSettings.from_params(train, seed=int(base.get("seed", 42)))
    torch.set_num_threads(settings.threads)
    meta = load_table_meta(paths.table)
    if len(meta["label"]) == 0:
        raise BadInputError(f"no {modality} segments to train on", paths.table)
    rows = fold_rows(meta, fold, settings.validation_fraction, settings.validate_by, settings.seed)
    torch.manual_seed(settings.seed)
    model = build_branch(params, modality, n_classes_of(params, meta), paths.table)
    digest = settings_digest(
        modality,
        fold,
        settings,
        branch_spec(params, modality),
        read_attrs(paths.table).get("params"),
    )
    outcome = fit(
        model,
        SegmentDataset(paths.table, rows.train, meta["label"][rows.train]),
        SegmentDataset(paths.table, rows.validation, meta["label"][rows.validation]),
        settings,
        paths.checkpoint,
        paths.best,
        digest,
        log_epoch=log_epoch,
        device=resolve_device(base.get("device", "auto")),
    )
    metrics = {
        **outcome_json(outcome),
        "modality": modality,
        "fold": fold,
        "profile": base.get("profile", "cpu"),
        "n_train_rows": len(rows.train),
        "n_validation_rows": len(rows.validation),
        "n_test_rows": len(rows.test),
    }
    paths.metrics.parent.mkdir(parents=True, exist_ok=True)
    paths.metrics.write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics


def extract_branch_features(
    params: dict[str, Any], modality: str, paths: BranchPaths, batch_size: int = 64
) -> int:
    """Write the best model's FC features and class probabilities for every row of the
    table (all folds, augmented rows marked), in batches; returns the row count."""
    if not paths.best.is_file():
        raise BadInputError("trained model not found; run the train_cnn stage first", paths.best)
    meta = load_table_meta(paths.table)
    model = build_branch(params, modality, n_classes_of(params, meta), paths.table)
    model.load_state_dict(torch.load(paths.best, map_location="cpu", weights_only=True))
    device = resolve_device(params["base"].get("device", "auto"))
    model.to(device)
    attrs = {"source": str(paths.table), "model": str(paths.best), "modality": modality}
    with SegmentWriter(
        paths.features,
        (model.feature_dim,),
        attrs=attrs,
        extra_shapes={"probs": (model.n_classes,)},
    ) as writer:
        for start, features, probs in predict_batches(model, paths.table, batch_size, device):
            stop = start + len(features)
            rows = {column: meta[column][start:stop] for column in META_COLUMNS}
            writer.append(features, rows, extras={"probs": probs})
    return writer.n_rows
