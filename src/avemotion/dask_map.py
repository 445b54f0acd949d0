"""Per-clip work on a Dask cluster (``base.backend: dask``), results in input order.

:func:`dask_ordered_map` is what :mod:`avemotion.parallel` runs in place of its fork pool
when a :class:`~avemotion.parallel.Workers` says ``backend="dask"``. The cluster is a
``dask.distributed`` LocalCluster of ``n_jobs`` single-threaded worker processes on
127.0.0.1, started for the one map and closed after, or the running cluster behind
``base.dask_scheduler``. It keeps the pool's contract:

- results come back in input order, one at a time, so a stage writes the same HDF5
  rows in the same order as with the pool;
- at most ``IN_FLIGHT_PER_JOB`` tasks per worker thread are submitted and not yet taken,
  so a slow consumer (a stage writing HDF5) holds the same few results in memory;
- an exception ``function`` raises comes back as that exception (a clip's
  :class:`~avemotion.errors.BadInputError` is caught inside the front-ends' functions and
  becomes a reject there, as with the pool);
- numeric libraries run on one thread in each worker, and the LocalCluster's workers
  allocate memory as the pool's do (:data:`LOCAL_CLUSTER_CONFIG`).

Dask adds what a pool lacks: a worker process that dies mid-task is restarted by its
nanny and the scheduler runs its tasks again, up to
``distributed.scheduler.allowed-failures`` (3) deaths per task before the map fails.

Workers on other machines import avemotion and open each clip by the path in the index:
they need the same package version and the media under the same path.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, TypeVar

from avemotion.errors import BadInputError
from avemotion.parallel import (
    IN_FLIGHT_PER_JOB,
    Workers,
    _single_threaded_worker,
    in_order_window,
)

if TYPE_CHECKING:
    from distributed import Client

#: Seconds to reach ``base.dask_scheduler``, and then for its first worker to join.
CONNECT_TIMEOUT_S = 30
WORKERS_TIMEOUT_S = 120
#: Dask config for the LocalCluster. Dask's nannies start workers with
#: MALLOC_TRIM_THRESHOLD_=65536, so that freed memory goes back to the OS; in glibc that
#: also pins the mmap threshold at 128 KiB, so every image-sized numpy temporary is a fresh
#: mmap whose pages fault in one by one, and the visual tensors ran 3-4x slower than on
#: the pool (30x the page faults). These workers keep glibc's defaults, as the pool's do.
LOCAL_CLUSTER_CONFIG = {"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}

T = TypeVar("T")
R = TypeVar("R")


def dask_ordered_map(function: Callable[[T], R], items: list[T], workers: Workers) -> Iterator[R]:
    """Yield ``function(item)`` for every item, in order, computed on a Dask cluster.

    ``function`` and the items must be picklable. Tasks still outstanding when the
    consumer stops early (an error while writing) are cancelled.
    """
    with _client(workers) as (client, slots):
        yield from in_order_window(
            lambda item: client.submit(_on_one_thread, function, item, pure=False),
            lambda future: future.result(),
            items,
            IN_FLIGHT_PER_JOB * slots,
            cancel=client.cancel,
        )


def _on_one_thread(function: Callable[[T], R], item: T) -> R:
    """``function(item)`` with BLAS/OpenMP/OpenCV/torch held to one thread: the
    parallelism is across worker processes. Done per task (about 1 ms), not once per
    worker, because a task may load a library (torch, a BLAS) the worker had not."""
    _single_threaded_worker()
    return function(item)


@contextlib.contextmanager
def _client(workers: Workers) -> Iterator[tuple[Client, int]]:
    """A client of the cluster ``workers`` names, and how many tasks it runs at once."""
    import dask
    from distributed import Client, LocalCluster

    if workers.scheduler is None:
        with (
            _environ_restored(),
            dask.config.set(LOCAL_CLUSTER_CONFIG),
            LocalCluster(
                n_workers=workers.n_jobs,
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                dashboard_address=None,
                # no dashboard, and the scheduler's small HTTP server (health, metrics)
                # on a free port here rather than 8787, which another cluster may hold
                scheduler_kwargs={"dashboard": False, "dashboard_address": "127.0.0.1:0"},
            ) as cluster,
            Client(cluster) as client,
        ):
            yield client, workers.n_jobs
        return
    try:
        client = Client(workers.scheduler, timeout=CONNECT_TIMEOUT_S)
    except OSError as error:
        raise BadInputError(
            f"base.dask_scheduler: no Dask scheduler answered at {workers.scheduler} in "
            f"{CONNECT_TIMEOUT_S} s ({error}); start one with `dask scheduler`, or set "
            "dask_scheduler: null for a local cluster"
        ) from None
    with client:
        try:
            client.wait_for_workers(1, timeout=WORKERS_TIMEOUT_S)
        except TimeoutError:
            raise BadInputError(
                f"base.dask_scheduler: no worker joined {workers.scheduler} in "
                f"{WORKERS_TIMEOUT_S} s; start some with `dask worker {workers.scheduler}`"
            ) from None
        yield client, max(1, sum(client.nthreads().values()))


@contextlib.contextmanager
def _environ_restored() -> Iterator[None]:
    """This process's environment as it was before: the nannies set their workers'
    variables (OMP_NUM_THREADS=1, PYTHONHASHSEED, ...) here before spawning them, and
    the stage, or a test session, goes on after the cluster is closed."""
    before = dict(os.environ)
    try:
        yield
    finally:
        for key in set(os.environ) - set(before):
            del os.environ[key]
        os.environ.update(before)
