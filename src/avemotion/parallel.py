"""Run one function over many clips on ``base.n_jobs`` processes, with a progress bar.

Results come back in input order, so that the HDF5 files the front-ends write do not
depend on scheduling, and they come back one at a time, so that a stage writes each
clip as it finishes instead of holding them all. :func:`map_clips` calls the function
once per clip; :func:`map_clip_batches` once per few clips, for work with a fixed cost
per call (the audio front-end).
"""

from __future__ import annotations

import collections
import itertools
import multiprocessing
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

import cv2
from threadpoolctl import threadpool_limits
from tqdm import tqdm

#: Tasks each worker may have queued or finished but not yet taken by the consumer.
IN_FLIGHT_PER_JOB = 2

T = TypeVar("T")
R = TypeVar("R")


def _single_threaded_worker() -> None:
    """Each worker process uses one core for BLAS/OpenMP/OpenCV: the parallelism is across
    clips. The thread pools are already loaded when the worker forks, so environment
    variables would come too late; threadpoolctl resizes them in place."""
    threadpool_limits(1)
    cv2.setNumThreads(1)
    if "torch" in sys.modules:  # only where the parent imported it: torch is slow to import
        sys.modules["torch"].set_num_threads(1)


def map_clips(
    function: Callable[[T], R],
    items: Iterable[T],
    n_jobs: int = 1,
    desc: str = "clips",
    total: int | None = None,
    quiet: bool = False,
) -> Iterator[R]:
    """Yield ``function(item)`` for every item, in order, on ``n_jobs`` processes.

    ``function`` must be picklable (a module-level function or ``functools.partial`` of
    one). With ``n_jobs == 1`` everything runs in this process, which keeps tests and
    debugging simple. ``quiet`` hides the progress bar.
    """
    items = list(items)
    total = len(items) if total is None else total
    with tqdm(total=total, desc=desc, unit="clip", dynamic_ncols=True, disable=quiet) as progress:
        for result in _ordered_map(function, items, n_jobs):
            yield result
            progress.update()


def map_clip_batches(
    function: Callable[[list[T]], list[R]],
    items: Iterable[T],
    batch_size: int,
    n_jobs: int = 1,
    desc: str = "clips",
) -> Iterator[R]:
    """:func:`map_clips` for work that is cheaper a few clips at a time.

    ``function`` takes a list of up to ``batch_size`` consecutive items and returns one
    result per item. Results still come one per item, in input order, and the progress
    bar counts items. Batching pays a stage's fixed costs per call once per batch and
    lets the decoder run several clips in a row while its code and tables are in cache.
    """
    items = list(items)
    batches = [items[i : i + batch_size] for i in range(0, len(items), max(1, batch_size))]
    with tqdm(total=len(items), desc=desc, unit="clip", dynamic_ncols=True) as progress:
        for batch, results in zip(batches, _ordered_map(function, batches, n_jobs), strict=True):
            if len(results) != len(batch):
                raise ValueError(f"{desc}: {len(results)} results for a batch of {len(batch)}")
            yield from results
            progress.update(len(batch))


def _ordered_map(function: Callable[[T], R], items: list[T], n_jobs: int) -> Iterator[R]:
    """``function`` over ``items`` in order: here when ``n_jobs <= 1``, else on a pool."""
    if n_jobs <= 1 or len(items) <= 1:
        yield from map(function, items)
        return
    # A process that ran multi-threaded OpenCV and then forks leaves its children a
    # thread pool without threads, and their cv2.setNumThreads waits forever: hold
    # this process to one OpenCV thread while the workers are forked and run.
    opencv_threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        context = multiprocessing.get_context("fork")
        with context.Pool(n_jobs, initializer=_single_threaded_worker) as pool:
            # a bounded window of tasks in flight, not pool.imap: imap lets the workers
            # run ahead of a slower consumer (a stage writing HDF5), and every result
            # they finish waits in memory until it is taken
            waiting: collections.deque = collections.deque()
            pending = iter(items)
            for item in itertools.islice(pending, IN_FLIGHT_PER_JOB * n_jobs):
                waiting.append(pool.apply_async(function, (item,)))
            while waiting:
                result = waiting.popleft().get()
                for item in itertools.islice(pending, 1):
                    waiting.append(pool.apply_async(function, (item,)))
                yield result
    finally:
        cv2.setNumThreads(opencv_threads)
