"""Run one function over many clips on ``base.n_jobs`` processes, with a progress bar.

Results come back in input order, so that the HDF5 files the front-ends write do not
depend on scheduling, and they come back one at a time, so that a stage writes each
clip as it finishes instead of holding them all. :func:`map_clips` calls the function
once per clip; :func:`map_clip_batches` once per few clips, for work with a fixed cost
per call (the audio front-end).

Where the work runs is a :class:`Workers`: a fork pool of ``n_jobs`` processes here
(``base.backend: processes``, or a plain int), or a Dask cluster (``base.backend: dask``,
:mod:`avemotion.dask_map`). Either way the results, and so the files, are the same.
"""

from __future__ import annotations

import collections
import itertools
import multiprocessing
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import cv2
from threadpoolctl import threadpool_limits
from tqdm import tqdm

from avemotion.params.loader import resolve_n_jobs
from avemotion.params.schema import ParallelBackend

#: Tasks each worker may have queued or finished but not yet taken by the consumer.
IN_FLIGHT_PER_JOB = 2

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class Workers:
    """Where per-clip work runs: ``base.n_jobs``, ``base.backend``, ``base.dask_scheduler``.

    ``n_jobs`` is the number of local processes, or of LocalCluster workers with
    ``backend="dask"`` and no ``scheduler`` (started for each map: a few seconds, so one
    job or one item runs here, as with processes); with a ``scheduler`` address the
    cluster's own workers run the tasks and ``n_jobs`` is not used. A plain int given
    where a ``Workers`` is expected means ``Workers(n_jobs)``: local processes, which is
    what callers without params (the demo renderer, ``avemotion predict``) pass.
    """

    n_jobs: int = 1
    backend: ParallelBackend = "processes"
    scheduler: str | None = None

    def __post_init__(self) -> None:
        if self.n_jobs < 1:
            raise ValueError(f"n_jobs={self.n_jobs}: resolve -1 with resolve_n_jobs first")
        if self.scheduler is not None and self.backend != "dask":
            raise ValueError(f"a scheduler ({self.scheduler}) needs backend='dask'")

    @classmethod
    def from_params(cls, base: Any, n_jobs: int | None = None) -> Workers:
        """What ``base`` (``params.base``, or a stage's view of it) asks for; ``n_jobs`` (a
        count, or -1 for every core) overrides its ``n_jobs``."""
        count = resolve_n_jobs(base.n_jobs if n_jobs is None else n_jobs)
        return cls(count, base.backend, base.dask_scheduler)

    @classmethod
    def of(cls, workers: int | Workers) -> Workers:
        """``workers`` itself, or an int as that many local processes."""
        return workers if isinstance(workers, Workers) else cls(max(1, int(workers)))

    @property
    def is_dask(self) -> bool:
        return self.backend == "dask"


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
    n_jobs: int | Workers = 1,
    desc: str = "clips",
    total: int | None = None,
    quiet: bool = False,
) -> Iterator[R]:
    """Yield ``function(item)`` for every item, in order, on ``n_jobs`` processes (an int)
    or where a :class:`Workers` says.

    ``function`` must be picklable (a module-level function or ``functools.partial`` of
    one). With one local process everything runs in this process, which keeps tests and
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
    n_jobs: int | Workers = 1,
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


def in_order_window(
    start: Callable[[T], Any],
    finish: Callable[[Any], R],
    items: Iterable[T],
    size: int,
    cancel: Callable[[list[Any]], Any] | None = None,
) -> Iterator[R]:
    """Yield ``finish(start(item))`` for every item, in order, with at most ``size``
    tasks started and not yet taken: a slow consumer holds that many results at most.

    ``start`` submits an item to some executor and returns its handle (a pool's
    ``AsyncResult``, a Dask future); ``finish`` waits for a handle's result. Tasks still
    waiting when the consumer stops early go to ``cancel``, when given.
    """
    window: collections.deque = collections.deque()
    pending = iter(items)
    try:
        for item in itertools.islice(pending, size):
            window.append(start(item))
        while window:
            result = finish(window.popleft())
            for item in itertools.islice(pending, 1):
                window.append(start(item))
            yield result
    finally:
        if window and cancel is not None:
            cancel(list(window))


def _ordered_map(function: Callable[[T], R], items: list[T], workers: int | Workers) -> Iterator[R]:
    """``function`` over ``items`` in order: on a Dask cluster when ``workers`` says so;
    else here for one process or item, and on a fork pool for more."""
    workers = Workers.of(workers)
    if workers.is_dask and items and (workers.scheduler or min(workers.n_jobs, len(items)) > 1):
        from avemotion.dask_map import dask_ordered_map  # distributed is slow to import

        yield from dask_ordered_map(function, items, workers)
        return
    n_jobs = workers.n_jobs
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
            yield from in_order_window(
                lambda item: pool.apply_async(function, (item,)),
                lambda task: task.get(),
                items,
                IN_FLIGHT_PER_JOB * n_jobs,
            )
    finally:
        cv2.setNumThreads(opencv_threads)
