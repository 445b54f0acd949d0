"""Training recipes beyond the paper's SGD (issue 12), each off by default.

The paper trains both branches with plain SGD at a constant learning rate on raw inputs.
These are the common additions a branch may turn on through ``train:`` (or
``train.by_modality.<branch>``), kept here so that :func:`avemotion.training.fit` stays a
readable loop:

- input standardisation: per-channel statistics of the training rows
  (:func:`channel_statistics`), kept in the network (:meth:`BranchCNN.set_input_statistics`);
- AdamW and cosine / one-cycle schedules (:func:`make_optimiser`, :func:`make_scheduler`);
- SpecAugment time and frequency masks on spectrograms (:func:`spec_augment_mask`);
- mixup of inputs and targets (:func:`mixup`);
- class-balanced sampling of training rows (:func:`balanced_sampler`);
- overlapping training segments: windows that straddle two consecutive segments of a
  clip (:func:`straddling_windows`), read by :class:`avemotion.training.SegmentDataset`.

Every random draw comes from a generator seeded from ``base.seed`` and separate from the
ones the paper's recipe already uses (weights, dropout, shuffling), so a recipe that is
off changes nothing, and one that is on gives the same numbers for the same params.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from torch.optim.lr_scheduler import CosineAnnealingLR, LRScheduler, OneCycleLR
from torch.utils.data import WeightedRandomSampler

from avemotion.params.schema import TrainParams

STATISTICS_CHUNK_BYTES = 64 * 2**20  # rows read at once when summing a table's channels


def channel_statistics(
    path: str | Path, rows: np.ndarray, chunk_bytes: int = STATISTICS_CHUNK_BYTES
) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (population) standard deviation of each input channel over ``rows`` of a
    segment table's ``x``, both float32 of shape (C,).

    ``x`` is stored channels last ((N, n_mels, n_frames, 3) audio, (N, 16, H, W, 3)
    video); it is read in contiguous blocks of about ``chunk_bytes``, so a table of any
    size streams through memory, and only the given rows count (pass the training rows:
    validation and test rows must not leak into the inputs' scaling). Blocks are merged
    with Chan's pairwise update in float64, which is exact enough for millions of rows.
    A constant channel gets std 1, so standardising it only centres it.
    """
    with h5py.File(path, "r") as handle:
        x = handle["x"]
        n_channels = x.shape[-1]
        wanted = np.zeros(len(x), dtype=bool)
        wanted[np.asarray(rows, dtype=np.int64)] = True
        if not wanted.any():
            raise ValueError(f"{path}: no rows to compute input statistics from")
        row_bytes = max(1, int(np.prod(x.shape[1:])) * x.dtype.itemsize)
        step = max(1, chunk_bytes // row_bytes)
        count, mean, m2 = 0, np.zeros(n_channels), np.zeros(n_channels)
        for start in range(0, len(x), step):
            keep = wanted[start : start + step]
            if not keep.any():
                continue
            values = x[start : start + step][keep].reshape(-1, n_channels).astype(np.float64)
            n_block, block_mean = len(values), values.mean(0)
            block_m2 = ((values - block_mean) ** 2).sum(0)
            delta, total = block_mean - mean, count + n_block
            mean = mean + delta * n_block / total
            m2 = m2 + block_m2 + delta**2 * count * n_block / total
            count = total
    std = np.sqrt(m2 / count)
    std[std == 0] = 1.0
    return mean.astype(np.float32), std.astype(np.float32)


def make_optimiser(parameters: Any, settings: TrainParams) -> torch.optim.Optimizer:
    """``train.optimizer``: SGD with momentum (the paper) or AdamW, both with
    ``train.lr`` and ``train.weight_decay`` (AdamW's decoupled decay)."""
    if settings.optimizer == "adamw":
        return torch.optim.AdamW(parameters, lr=settings.lr, weight_decay=settings.weight_decay)
    return torch.optim.SGD(
        parameters, lr=settings.lr, momentum=settings.momentum, weight_decay=settings.weight_decay
    )


def make_scheduler(
    optimiser: torch.optim.Optimizer, settings: TrainParams, steps_per_epoch: int
) -> LRScheduler | None:
    """``train.schedule``, stepped after every batch: ``None`` for ``constant`` (the
    paper), cosine annealing from ``lr`` to 0 over all the run's steps, or the one-cycle
    policy peaking at ``lr`` (momentum cycled too, where the optimiser has any)."""
    total = settings.epochs * max(1, steps_per_epoch)
    if settings.schedule == "cosine":
        return CosineAnnealingLR(optimiser, T_max=total)
    if settings.schedule == "onecycle":
        cycle_momentum = settings.optimizer == "adamw" or settings.momentum > 0
        return OneCycleLR(
            optimiser, max_lr=settings.lr, total_steps=total, cycle_momentum=cycle_momentum
        )
    return None


def spec_augment_mask(
    n: int,
    n_bands: int,
    n_frames: int,
    settings: TrainParams,
    rng: np.random.Generator,
) -> np.ndarray | None:
    """SpecAugment masks (Park et al. 2019) for ``n`` spectrograms of ``n_bands`` Mel bands
    x ``n_frames`` frames: bool (n, n_bands, n_frames), True where masked, or ``None``
    when ``train.time_masks`` and ``train.freq_masks`` are both 0 (no draw is made).

    Each spectrogram gets its own ``time_masks`` masks of 0..``time_mask_frames`` whole
    frames and ``freq_masks`` masks of 0..``freq_mask_bands`` whole bands, placed
    uniformly; masks may overlap.
    """
    if settings.time_masks == 0 and settings.freq_masks == 0:
        return None
    frames = _stripes(n, n_frames, settings.time_masks, settings.time_mask_frames, rng)
    bands = _stripes(n, n_bands, settings.freq_masks, settings.freq_mask_bands, rng)
    return bands[:, :, None] | frames[:, None, :]


def _stripes(n: int, length: int, count: int, widest: int, rng: np.random.Generator) -> np.ndarray:
    """(n, length) bool: ``count`` random stripes of 0..``widest`` per row."""
    if count == 0:
        return np.zeros((n, length), dtype=bool)
    widths = rng.integers(0, min(widest, length) + 1, size=(n, count))
    starts = rng.integers(0, length - widths + 1)
    position = np.arange(length)[None, None, :]
    inside = (position >= starts[..., None]) & (position < (starts + widths)[..., None])
    return inside.any(1)


def apply_mask(x: torch.Tensor, mask: np.ndarray, fill: torch.Tensor | None) -> torch.Tensor:
    """``x`` (N, C, n_bands, n_frames) with the masked cells of every channel set to
    ``fill`` (C,), the channel means the network subtracts, so that a masked cell is
    exactly 0 after standardisation (0 when ``fill`` is ``None``: no standardisation)."""
    where = torch.from_numpy(mask).to(x.device)[:, None]
    value = torch.zeros((), device=x.device) if fill is None else fill.view(1, -1, 1, 1)
    return torch.where(where, value.to(x.dtype), x)


def mask_spectrograms(
    x: torch.Tensor, settings: TrainParams, rng: np.random.Generator, fill: torch.Tensor | None
) -> torch.Tensor:
    """A training batch of spectrograms (N, C, n_bands, n_frames) with SpecAugment masks
    (:func:`spec_augment_mask`) applied to every channel; ``x`` itself when masks are off."""
    mask = spec_augment_mask(len(x), x.shape[-2], x.shape[-1], settings, rng)
    return x if mask is None else apply_mask(x, mask, fill)


def mixup(
    x: torch.Tensor, y: torch.Tensor, n_classes: int, alpha: float, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Mixup (Zhang et al. 2018): one ``lam`` ~ Beta(alpha, alpha) for the batch and a
    random partner for every row; returns ``lam * x + (1 - lam) * x[partner]``, the same
    mix of the one-hot targets (N, n_classes), and ``lam``. Label smoothing, if any, is
    applied by the loss on top of these targets."""
    lam = float(rng.beta(alpha, alpha))
    partner = torch.from_numpy(rng.permutation(len(y))).to(x.device)
    one_hot = torch.nn.functional.one_hot(y, n_classes).to(x.dtype)
    mixed = lam * x + (1.0 - lam) * x[partner]
    targets = lam * one_hot + (1.0 - lam) * one_hot[partner]
    return mixed, targets, lam


def balanced_weights(labels: np.ndarray) -> torch.Tensor:
    """Each row's draw weight, 1 / (its class's row count), so every class is drawn about
    equally often; float64, one per row."""
    labels = np.asarray(labels, dtype=np.int64)
    return torch.as_tensor(1.0 / np.bincount(labels)[labels], dtype=torch.float64)


def balanced_sampler(labels: np.ndarray, generator: torch.Generator) -> WeightedRandomSampler:
    """Draw as many rows per epoch as there are, with replacement, weighted by
    :func:`balanced_weights`."""
    weights = balanced_weights(labels)
    return WeightedRandomSampler(weights, len(weights), replacement=True, generator=generator)


def window_offsets(hop_s: float, segment_s: float, steps: int) -> list[int]:
    """Where, in time steps of a segment, the windows every ``hop_s`` seconds start.

    A window at offset ``k * hop_s`` (``0 < k * hop_s < segment_s``) is the segment from
    that offset on, followed by the next segment's first ``offset`` steps: with 2 s
    segments of 100 frames, ``hop_s`` 1.0 gives ``[50]``, 0.5 gives ``[25, 50, 75]``;
    with 16 keyframes, 1.0 gives ``[8]``. Offsets that round to 0 or ``steps`` (a hop
    finer than one step) are left out, and equal ones are kept once.
    """
    if not 0 < hop_s < segment_s:
        raise ValueError(f"hop_s={hop_s} must lie between 0 and segment_s={segment_s}")
    n_hops = int(np.ceil(segment_s / hop_s - 1e-9))
    offsets = {round(k * hop_s / segment_s * steps) for k in range(1, n_hops)}
    return sorted(offset for offset in offsets if 0 < offset < steps)


def straddling_windows(
    meta: dict[str, np.ndarray],
    rows: np.ndarray,
    hop_s: float | None,
    segment_s: float,
    steps: int,
) -> np.ndarray:
    """Extra training examples: the windows every ``hop_s`` s across consecutive segments.

    The front-ends cut each clip into back-to-back segments (``base.hop_s`` =
    ``base.segment_s``), so a network trains on one view of each moment. A segment hop
    shorter than the segment, for training only, gives it the views in between: for a
    row ``r`` of ``rows`` and the row ``n`` of the same clip and the same augmentation
    that starts ``segment_s`` later (also in ``rows``, so a window never reaches into a
    validation or test row), one window per :func:`window_offsets` offset. Test and
    validation rows stay the table's own segments. Each window is built from the stored
    rows, not cut from the signal again: the delta channels at the seam were computed
    with each segment's own edges, and a video window's keyframes were chosen within
    each segment; both differ slightly from a segment cut at that offset.

    Returns int64 of shape (n_windows, 3): the first row, the next row, the offset in
    time steps (``steps`` per segment: frames or keyframes); (0, 3) when ``hop_s`` is
    None (the recipe off).
    """
    if hop_s is None:
        return np.zeros((0, 3), dtype=np.int64)
    offsets = window_offsets(hop_s, segment_s, steps)
    rows = np.sort(np.asarray(rows, dtype=np.int64))
    keys = [
        (str(meta["clip_id"][r]), str(meta["augmentation"][r]), int(meta["segment"][r]))
        for r in rows
    ]
    row_of = dict(zip(keys, rows.tolist(), strict=True))
    windows = []
    for r, (clip, augmentation, segment) in zip(rows.tolist(), keys, strict=True):
        n = row_of.get((clip, augmentation, segment + 1))
        if n is None or abs(meta["start_s"][n] - meta["start_s"][r] - segment_s) > 1e-6:
            continue
        windows.extend((r, n, offset) for offset in offsets)
    return np.asarray(windows, dtype=np.int64).reshape(-1, 3)
