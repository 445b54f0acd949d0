"""Data-parallel CNN training (``train.distributed``): processes, their group, their shares.

A CNN branch trains in one process (the paper's recipe, and the default), or in N
processes that each take 1/N of every batch and average their gradients
(:class:`~torch.nn.parallel.DistributedDataParallel`). The processes come from one of two
launchers:

- :func:`avemotion.launch.relaunch`: a stage run with ``train.distributed.nproc: N > 1``
  starts N copies of its own command line on this machine (see :mod:`avemotion.launch`).
  With ``nproc: 1`` nothing is started: no launcher's start-up cost, and the very code
  path of single-process training.
- ``torchrun``, started by the user (several machines, a cluster scheduler): its
  ``RANK``/``LOCAL_RANK``/``WORLD_SIZE``/``MASTER_ADDR`` say where each process stands and
  meet through its store (``env://``); ``nproc`` is then not used.

:func:`process_group` joins the group either way; the rest are the few collective steps
:func:`avemotion.training.fit` takes when there is more than one process.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DistributedSampler, Sampler

from avemotion.errors import BadInputError
from avemotion.launch import INIT_ENV, World
from avemotion.recipes import balanced_weights


def resolve_backend(backend: str, device: torch.device) -> str:
    """``train.distributed.backend``: ``auto`` is NCCL on CUDA, else Gloo."""
    if backend == "auto":
        return "nccl" if device.type == "cuda" else "gloo"
    if backend == "nccl" and device.type != "cuda":
        raise BadInputError(
            "train.distributed.backend is nccl, which needs CUDA, but training runs on the "
            "CPU: use backend gloo (or auto), or base.device cuda"
        )
    return backend


@contextmanager
def process_group(backend: str, device: torch.device) -> Iterator[tuple[World, torch.device]]:
    """Join the launcher's process group for the block, and the device this rank uses
    (``cuda:<local_rank>`` on CUDA); with one process, no group and ``device`` itself."""
    world = World.from_env()
    if world.size == 1:
        yield world, device
        return
    if device.type == "cuda":
        if world.local_rank >= torch.cuda.device_count():
            raise BadInputError(
                f"{world.size} training processes on this machine, but it has "
                f"{torch.cuda.device_count()} CUDA device(s): one process per GPU. Set the "
                "branch's train.distributed.nproc (or train.by_modality.<branch>.distributed) "
                "to the number of GPUs, or base.device: cpu"
            )
        device = torch.device("cuda", world.local_rank)
        torch.cuda.set_device(device)
    init = os.environ.get(INIT_ENV)
    backend = resolve_backend(backend, device)
    if init:  # started by relaunch: meet through its store file
        dist.init_process_group(backend, init_method=init, rank=world.rank, world_size=world.size)
    else:  # torchrun's env://
        dist.init_process_group(backend)
    try:
        yield World.current(), device
    finally:
        dist.destroy_process_group()


def per_process_batch(batch_size: int, world: World) -> int:
    """``train.batch_size`` is the global batch (the paper's): each of the ``world.size``
    processes takes an equal share of it, so it must divide evenly."""
    if batch_size % world.size:
        raise BadInputError(
            f"train.batch_size {batch_size} is the batch of all {world.size} processes "
            "together and must divide evenly among them: choose a multiple of "
            f"{world.size}, or another process count"
        )
    return batch_size // world.size


def rank_seed(seed: int, world: World) -> int:
    """A seed of this rank's own for dropout and recipe draws, from ``base.seed``."""
    return int(np.random.SeedSequence((seed, world.rank)).generate_state(1)[0])


class BalancedDistributedSampler(Sampler[int]):
    """Class-balanced sampling (:func:`avemotion.recipes.balanced_sampler`) shared by the
    processes: every rank draws the same epoch's rows (seeded by ``seed`` and the epoch,
    as :class:`~torch.utils.data.DistributedSampler` shuffles) and keeps every
    ``world.size``-th from its rank on, so the shares are disjoint and equal in length."""

    def __init__(self, labels: np.ndarray, world: World, seed: int):
        self.weights = balanced_weights(labels)
        self.world, self.seed, self.epoch = world, seed, 0
        self.n_per_rank = -(-len(labels) // world.size)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        total = self.n_per_rank * self.world.size
        drawn = torch.multinomial(self.weights, total, replacement=True, generator=generator)
        return iter(drawn[self.world.rank :: self.world.size].tolist())

    def __len__(self) -> int:
        return self.n_per_rank


def distributed_sampler(
    labels: np.ndarray, balanced: bool, world: World, seed: int
) -> DistributedSampler | BalancedDistributedSampler:
    """This rank's share of the training rows, reshuffled by ``set_epoch`` every epoch."""
    if balanced:
        return BalancedDistributedSampler(labels, world, seed)
    return DistributedSampler(
        range(len(labels)), num_replicas=world.size, rank=world.rank, shuffle=True, seed=seed
    )


def sum_over_ranks(*values: float) -> list[float]:
    """Each value summed over all processes (float64)."""
    total = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(total)
    return total.tolist()


def max_over_ranks(value: float) -> float:
    """The largest of every process's ``value``."""
    largest = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(largest, op=dist.ReduceOp.MAX)
    return float(largest)


def share_buffers(model: nn.Module) -> None:
    """Rank 0's buffers (BatchNorm running statistics) on every rank, so that all of them
    evaluate, and would resume, the same model (DDP keeps parameters equal, but every
    rank's last batch updates its own statistics)."""
    for buffer in model.buffers():
        dist.broadcast(buffer, 0)


def gather(value: Any) -> list[Any]:
    """Every rank's ``value`` (picklable), in rank order, on every rank."""
    values: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(values, value)
    return values


def from_main(value: Any) -> Any:
    """Rank 0's ``value`` (picklable) on every rank."""
    box = [value]
    dist.broadcast_object_list(box, 0)
    return box[0]


def barrier() -> None:
    """Wait until every process gets here."""
    dist.barrier()
