"""Training a CNN branch on a segment table, streamed from HDF5 (paper section 3.2).

The paper trains both branches with SGD (batch 100, learning rate 0.001, momentum 0.9,
weight decay 5e-5), dropout 0.5 on the last two FC layers and the class layer drawn from
N(0, 0.01), for 50 epochs. Here those are the ``paper`` preset's values; every one of
them is a ``train:`` param.

What this module adds around the paper's recipe, because a reproducible tool needs it:

- a validation part carved from the training speakers (never from the test fold) that
  picks the best epoch;
- rows read one at a time from the HDF5 file, opened once per DataLoader worker, so
  memory does not grow with the dataset;
- a checkpoint after every epoch, so that a run killed part-way resumes from its last
  finished epoch when run again with the same params;
- seeding of every random source, so that the same params give the same weights on CPU;
- optional recipes beyond the paper's (input standardisation, AdamW, learning-rate
  schedules, label smoothing, mixup, SpecAugment masks, class-balanced sampling, weight
  averaging over the last epochs, overlapping training windows), each off by default and
  described in :mod:`avemotion.recipes`;
- data-parallel training in several processes (``train.distributed``, see
  :mod:`avemotion.distributed`), where one process trains exactly as it always has.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel, update_bn
from torch.utils.data import DataLoader, Dataset

from avemotion import distributed
from avemotion.atomic import atomic_path
from avemotion.errors import BadInputError
from avemotion.h5store import read_meta
from avemotion.launch import World
from avemotion.models import BranchCNN, channels_first
from avemotion.params.schema import TrainParams
from avemotion.recipes import (
    balanced_sampler,
    channel_statistics,
    make_optimiser,
    make_scheduler,
    mask_spectrograms,
    mixup,
)
from avemotion.splits import FINAL, test_rows, train_rows, validation_rows

#: Bytes of decoded rows each :class:`SegmentDataset` keeps in memory. Training reads
#: every row once an epoch; the video tensors are lzf-compressed, and decompressing each
#: row again every epoch (2.8 ms for a 786 KB row) was 17 % of the demo's video training.
#: A table up to this size is decompressed once per run; past it, the rows read first
#: stay and the rest stream from the file each epoch, so memory stays bounded.
ROW_CACHE_BYTES = 256 * 2**20


class SegmentDataset(Dataset):
    """Selected rows of a segment table as ``(tensor, label)`` pairs, channels first;
    then, with ``windows``, the training windows that straddle two of its rows.

    Example ``i < len(rows)`` is row ``rows[i]``. Example ``len(rows) + j`` is window
    ``windows[j] = (first, next, offset)`` (:func:`avemotion.recipes.straddling_windows`):
    row ``first`` from step ``offset`` of its ``time_axis`` on, followed by row ``next``'s
    first ``offset`` steps, labelled ``window_labels[j]``. ``labels`` holds both parts'.

    The HDF5 file is opened lazily in whichever process reads first, so every DataLoader
    worker has its own handle (h5py handles must not cross a fork), and its own cache of
    decoded rows (up to :data:`ROW_CACHE_BYTES`).
    """

    def __init__(
        self,
        path: str | Path,
        rows: np.ndarray,
        labels: np.ndarray,
        windows: np.ndarray | None = None,
        window_labels: np.ndarray | None = None,
        time_axis: int = 0,
    ):
        self.path = str(path)
        self.rows = np.asarray(rows, dtype=np.int64)
        self.windows = np.zeros((0, 3), np.int64) if windows is None else np.asarray(windows)
        extra = np.zeros(0) if window_labels is None else np.asarray(window_labels)
        if len(extra) != len(self.windows):
            raise ValueError(f"{len(self.windows)} windows but {len(extra)} window labels")
        self.labels = np.concatenate([np.asarray(labels), extra]).astype(np.int64)
        self.time_axis = time_axis
        self._table: h5py.Dataset | None = None
        self._decoded: dict[int, np.ndarray] = {}
        self._decoded_bytes = 0

    def __len__(self) -> int:
        return len(self.rows) + len(self.windows)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        if i < len(self.rows):
            x = self._row(int(self.rows[i]))
        else:
            first, following, offset = (int(v) for v in self.windows[i - len(self.rows)])
            head = [slice(None)] * self.time_axis
            x = np.concatenate(
                [
                    self._row(first)[(*head, slice(offset, None))],
                    self._row(following)[(*head, slice(None, offset))],
                ],
                axis=self.time_axis,
            )
        return channels_first(x[None])[0], int(self.labels[i])

    def _row(self, row: int) -> np.ndarray:
        """Row ``row`` of the table, decoded once while the cache has room."""
        x = self._decoded.get(row)
        if x is None:
            if self._table is None:
                self._table = h5py.File(self.path, "r")["x"]
            x = self._table[row]
            if self._decoded_bytes + x.nbytes <= ROW_CACHE_BYTES:
                self._decoded[row] = x
                self._decoded_bytes += x.nbytes
        return x

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.update(_table=None, _decoded={}, _decoded_bytes=0)
        return state


@dataclass(frozen=True)
class FoldRows:
    """Row indices of one fold's parts in a segment table."""

    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray


def fold_rows(
    meta: dict[str, np.ndarray],
    test_fold: int,
    validation_fraction: float,
    validate_by: str,
    seed: int,
) -> FoldRows:
    """Split a table's rows for ``test_fold``: training, validation (carved from training
    groups) and test (the fold's original rows).

    ``validate_by`` is ``"speaker"`` (whole training speakers go to validation: the
    honest choice, and the default) or ``"clip"`` (for protocols that mix speakers
    anyway). Validation keeps only original rows; every row of a validation group,
    augmented copies included, leaves the training part, so nothing leaks.
    """
    train_mask = train_rows(meta["fold"], test_fold)
    test = np.flatnonzero(test_rows(meta["fold"], meta["augmented"], test_fold))
    candidates = np.flatnonzero(train_mask)
    if len(test) == 0 and test_fold != FINAL:
        present = sorted(int(f) for f in np.unique(meta["fold"]) if f >= 0)
        raise BadInputError(
            f"split.folds names fold {test_fold}, but this split has folds {present}"
        )
    if len(candidates) == 0:
        raise BadInputError(f"fold {test_fold} has no training rows")
    held = validation_rows(meta, test_fold, validation_fraction, validate_by, seed)
    validation = np.flatnonzero(held & ~meta["augmented"])
    return FoldRows(np.flatnonzero(train_mask & ~held), validation, test)


@dataclass
class TrainOutcome:
    """What a training run ends with; written to the stage's metrics JSON.

    ``weights`` says what went to ``best.pt``: ``"best_epoch"`` (the epoch with the best
    validation accuracy) or ``"averaged"`` (the mean weights of the last
    ``averaged_epochs`` epochs, ``train.average_last``); ``written_val_accuracy`` is the
    validation accuracy of exactly those weights.
    """

    epochs_run: int
    best_epoch: int
    best_val_accuracy: float | None
    train_samples_per_s: float
    resumed_from_epoch: int
    weights: str = "best_epoch"
    averaged_epochs: int = 0
    written_val_accuracy: float | None = None
    history: list[dict[str, float]] = field(default_factory=list)


def settings_digest(*parts: Any) -> str:
    """A short hash of everything that defines a run, to tell a resumable checkpoint from
    a stale one."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def fit(
    model: BranchCNN,
    train_set: SegmentDataset,
    validation_set: SegmentDataset | None,
    settings: TrainParams,
    seed: int,
    checkpoint_path: str | Path,
    best_path: str | Path,
    digest: str,
    log_epoch: Callable[[dict[str, float]], None] | None = None,
    device: torch.device | str = "cpu",
    spec_augment: bool = False,
) -> TrainOutcome:
    """Train ``model``, keep the best epoch by validation accuracy (or the mean of the last
    epochs), resume if asked.

    ``settings`` are the branch's ``train:`` params (:meth:`TrainParams.for_branch`);
    ``seed`` (``base.seed``) seeds the weights, the shuffling and every recipe's draws
    (:mod:`avemotion.recipes`). ``spec_augment`` says the inputs are spectrograms
    (N, 3, n_mels, n_frames), so ``train.time_masks``/``freq_masks`` apply: the audio
    branch only; other inputs are never masked. With ``train.standardise_inputs`` the
    model first gets its input statistics from ``train_set``'s rows.

    After every epoch the model, optimiser, schedule, random states and history go to
    ``checkpoint_path``; if that file exists with the same ``digest`` the run resumes
    after its last finished epoch (``log_epoch`` is replayed for the finished epochs so
    the curves stay whole). A finished run removes its checkpoint, so the file exists
    only while a run is incomplete (DVC does not track it). The written weights go to
    ``best_path`` as a state dict: the best epoch's, or with ``train.average_last`` N > 1
    the mean of the last N epochs' with BatchNorm statistics recomputed on ``train_set``.

    In a process group of N > 1 (:func:`avemotion.distributed.process_group`) every
    process trains a :class:`DistributedDataParallel` copy on its 1/N share of every
    epoch's rows, in batches of ``batch_size / N`` (the global batch is the paper's), with
    dropout and recipe draws of its own; gradients are averaged, BatchNorm statistics are
    rank 0's after every epoch, and the validation rows are split among the processes, so
    every process takes the same best-epoch decisions. Rank 0 alone writes files
    (``log_epoch`` is the caller's to give rank 0 only); the checkpoint holds every
    rank's random states, so all ranks resume from it. One process takes none of these
    steps: it trains exactly as without a group.
    """
    device = torch.device(device)
    world = World.current()
    torch.manual_seed(seed)
    if settings.standardise_inputs:
        model.set_input_statistics(*channel_statistics(train_set.path, train_set.rows))
    model.to(device)
    net: nn.Module = model
    if world.size > 1:
        net = DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)
        torch.manual_seed(distributed.rank_seed(seed, world))  # dropout of its own
    optimiser = make_optimiser(model.parameters(), settings)
    shuffle = torch.Generator().manual_seed(seed)
    loader = _train_loader(train_set, settings, seed, shuffle, world)
    scheduler = make_scheduler(optimiser, settings, len(loader))
    streams = (seed,) if world.size == 1 else (seed, world.rank)
    mask_rng, mixup_rng = np.random.default_rng((*streams, 1)), np.random.default_rng((*streams, 2))
    average_from = max(1, settings.epochs - settings.average_last + 1)
    averaged = AveragedModel(model) if settings.average_last > 1 else None
    history: list[dict[str, float]] = []
    best_epoch, best_accuracy, start = 0, -1.0, 0
    checkpoint_path, best_path = Path(checkpoint_path), Path(best_path)
    if checkpoint_path.is_file():
        state = torch.load(checkpoint_path, map_location=device, weights_only=False)
        if state.get("digest") == digest:
            model.load_state_dict(state["model"])
            optimiser.load_state_dict(state["optimiser"])
            if scheduler is not None:
                scheduler.load_state_dict(state["scheduler"])
            if averaged is not None:
                averaged.load_state_dict(state["averaged"])
            shuffle.set_state(state["shuffle_state"])
            own = state if world.size == 1 else state["ranks"][world.rank]
            torch.set_rng_state(own["torch_rng"])
            mask_rng.bit_generator.state = own["mask_rng"]
            mixup_rng.bit_generator.state = own["mixup_rng"]
            history, best_epoch, best_accuracy = (
                state["history"],
                state["best_epoch"],
                state["best"],
            )
            start = state["epoch"]
    resumed_from = start
    for past in history:
        if log_epoch:
            log_epoch(past)
    criterion = nn.CrossEntropyLoss(label_smoothing=settings.label_smoothing)
    fill = model.input_mean if model.standardises else None
    train_seconds, train_samples = 0.0, 0
    for epoch in range(start + 1, settings.epochs + 1):
        if world.size > 1:
            loader.sampler.set_epoch(epoch)  # type: ignore[attr-defined]
        model.train()
        began = time.perf_counter()
        total_loss, correct, seen = 0.0, 0, 0
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            targets = y
            if spec_augment:
                x = mask_spectrograms(x, settings, mask_rng, fill)
            if settings.mixup_alpha > 0:
                x, targets, _ = mixup(x, y, model.n_classes, settings.mixup_alpha, mixup_rng)
            optimiser.zero_grad(set_to_none=True)
            logits = net(x)
            loss = criterion(logits, targets)
            loss.backward()
            optimiser.step()
            if scheduler is not None:
                scheduler.step()
            dominant = targets.argmax(1) if targets.dim() == 2 else y  # mixup: the larger share
            total_loss += loss.item() * len(y)
            correct += int((logits.argmax(1) == dominant).sum())
            seen += len(y)
        train_seconds += time.perf_counter() - began
        if world.size > 1:  # every rank's samples
            total_loss, correct, seen = distributed.sum_over_ranks(total_loss, correct, seen)
            distributed.share_buffers(model)
        train_samples += seen
        record = {"epoch": epoch, "train_loss": total_loss / seen, "train_accuracy": correct / seen}
        if scheduler is not None:
            record["train_lr"] = optimiser.param_groups[0]["lr"]
        if validation_set is not None and len(validation_set):
            val_loss, val_accuracy = _validate(
                model, validation_set, settings.batch_size, device, world
            )
            record.update(val_loss=val_loss, val_accuracy=val_accuracy)
        score = record.get("val_accuracy", record["train_accuracy"])
        if score > best_accuracy:
            best_epoch, best_accuracy = epoch, score
            if averaged is None and world.is_main:
                _atomic_save(model.state_dict(), best_path)
        if averaged is not None and epoch >= average_from:
            averaged.update_parameters(model)
        history.append(record)
        random_states = {
            "torch_rng": torch.get_rng_state(),
            "mask_rng": mask_rng.bit_generator.state,
            "mixup_rng": mixup_rng.bit_generator.state,
        }
        checkpoint = {
            "digest": digest,
            "epoch": epoch,
            "model": model.state_dict(),
            "optimiser": optimiser.state_dict(),
            "scheduler": None if scheduler is None else scheduler.state_dict(),
            "averaged": None if averaged is None else averaged.state_dict(),
            "shuffle_state": shuffle.get_state(),
            **random_states,
            "history": history,
            "best_epoch": best_epoch,
            "best": best_accuracy,
        }
        if world.size > 1:
            checkpoint["ranks"] = distributed.gather(random_states)
        if world.is_main:
            _atomic_save(checkpoint, checkpoint_path)
        if world.size > 1:
            distributed.barrier()  # no rank runs ahead of the checkpoint it would resume from
        if log_epoch:
            log_epoch(record)
    has_validation = validation_set is not None and len(validation_set) > 0
    written_accuracy = best_accuracy if has_validation else None
    if averaged is not None:
        written = averaged.module
        if world.is_main:
            update_bn(DataLoader(train_set, batch_size=settings.batch_size), written, device)
            _atomic_save(written.state_dict(), best_path)
            if has_validation:
                assert validation_set is not None
                written_accuracy = evaluate(written, validation_set, settings.batch_size, device)[1]
        if world.size > 1:
            written_accuracy = distributed.from_main(written_accuracy)
    if world.is_main:
        checkpoint_path.unlink(missing_ok=True)  # only an unfinished run leaves one behind
    if world.size > 1:
        train_seconds = distributed.max_over_ranks(train_seconds)
    return TrainOutcome(
        epochs_run=len(history),
        best_epoch=best_epoch,
        best_val_accuracy=best_accuracy if has_validation else None,
        train_samples_per_s=train_samples / train_seconds if train_seconds else float("nan"),
        resumed_from_epoch=resumed_from,
        weights="best_epoch" if averaged is None else "averaged",
        averaged_epochs=0 if averaged is None else settings.epochs - average_from + 1,
        written_val_accuracy=written_accuracy,
        history=history,
    )


def _train_loader(
    train_set: SegmentDataset,
    settings: TrainParams,
    seed: int,
    shuffle: torch.Generator,
    world: World,
) -> DataLoader:
    """Batches of the training rows: shuffled by ``shuffle`` (or class-balanced) in one
    process; with N processes, this rank's share in batches of ``batch_size / N``."""
    if world.size == 1:
        sampler = (
            balanced_sampler(train_set.labels, shuffle) if settings.balanced_sampling else None
        )
        batch_size = settings.batch_size
    else:
        sampler = distributed.distributed_sampler(
            train_set.labels, settings.balanced_sampling, world, seed
        )
        batch_size = distributed.per_process_batch(settings.batch_size, world)
    return DataLoader(
        train_set,
        batch_size=batch_size,
        shuffle=sampler is None,
        sampler=sampler,
        generator=shuffle,
        num_workers=settings.num_workers,
        persistent_workers=settings.num_workers > 0,
    )


def _validate(
    model: nn.Module,
    dataset: SegmentDataset,
    batch_size: int,
    device: torch.device,
    world: World,
) -> tuple[float, float]:
    """:func:`evaluate`; with N processes, each evaluates the same model on every N-th row
    and all get the whole set's mean cross-entropy and accuracy."""
    if world.size == 1:
        return evaluate(model, dataset, batch_size, device)
    mine = slice(world.rank, None, world.size)
    share = SegmentDataset(dataset.path, dataset.rows[mine], dataset.labels[mine])
    loss, correct = _evaluate_totals(model, share, batch_size, device)
    loss, correct, n = distributed.sum_over_ranks(loss, correct, len(share))
    return loss / n, correct / n


@torch.no_grad()
def evaluate(
    model: nn.Module, dataset: SegmentDataset, batch_size: int, device: torch.device | str = "cpu"
) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` on ``dataset`` (eval mode, no dropout)."""
    total_loss, correct = _evaluate_totals(model, dataset, batch_size, device)
    return total_loss / len(dataset), correct / len(dataset)


@torch.no_grad()
def _evaluate_totals(
    model: nn.Module, dataset: SegmentDataset, batch_size: int, device: torch.device | str
) -> tuple[float, int]:
    """Summed cross-entropy and the count of correct rows (0, 0 for no rows)."""
    model.eval()
    total_loss, correct = 0.0, 0
    for x, y in DataLoader(dataset, batch_size=batch_size):
        logits = model(x.to(device))
        y = y.to(device)
        total_loss += float(nn.functional.cross_entropy(logits, y, reduction="sum"))
        correct += int((logits.argmax(1) == y).sum())
    return total_loss, correct


@torch.no_grad()
def predict_batches(
    model: nn.Module, path: str | Path, batch_size: int, device: torch.device | str = "cpu"
):
    """Yield ``(start_row, fc_features, probabilities)`` for consecutive batches of every
    row of a segment table, reading one batch at a time."""
    model.eval()
    with h5py.File(path, "r") as handle:
        x = handle["x"]
        for start in range(0, len(x), batch_size):
            batch = channels_first(x[start : start + batch_size]).to(device)
            features = model.features(batch)
            logits = model[-1](features) if isinstance(model, nn.Sequential) else model(batch)
            yield start, features.cpu().numpy(), torch.softmax(logits, 1).cpu().numpy()


def _atomic_save(obj: Any, path: Path) -> None:
    with atomic_path(path) as partial:
        torch.save(obj, partial)


def resolve_device(device: str) -> torch.device:
    """``base.device``: ``auto`` takes CUDA where present, else the CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise BadInputError("base.device is cuda but no CUDA device is available")
    return torch.device(device)


def outcome_json(outcome: TrainOutcome) -> dict[str, Any]:
    """The metrics a training stage writes (history left to dvclive's curves)."""
    summary = asdict(outcome)
    summary.pop("history")
    return summary


def load_table_meta(path: str | Path) -> dict[str, np.ndarray]:
    """The meta columns of a segment table, with a clear error if the file is missing."""
    if not Path(path).is_file():
        raise BadInputError("segment table not found; run the front-end stage first", path)
    return read_meta(path)
