"""Starting a stage as N local processes, without importing PyTorch.

A stage with ``train.distributed.nproc: N > 1`` calls :func:`relaunch` before anything
else: it starts N copies of its own command line on this machine and waits for them.
They meet through a file (a :class:`~torch.distributed.FileStore` in a temporary folder,
named by :data:`INIT_ENV`) and talk over the loopback interface, so no port is opened to
the network; a failed copy stops the rest. This module imports no PyTorch, so the
launching process only waits: on a 2-core machine importing torch, scikit-learn and
the training code costs it about 5 s that the copies pay again. The process group the
copies then join is :mod:`avemotion.distributed`'s.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Set by :func:`relaunch` for its processes: the ``file://`` store they meet through.
INIT_ENV = "AVEMOTION_DIST_INIT"
#: Seconds between a failed process and the others being killed (they may be blocked in a
#: collective step, waiting for the failed one).
TERMINATE_GRACE_S = 5.0


@dataclass(frozen=True)
class World:
    """Where this process stands: its ``rank`` among ``size`` processes (0 is the one that
    writes files), ``local_rank`` among this machine's ``local_size`` (its GPU, on CUDA)."""

    rank: int = 0
    local_rank: int = 0
    size: int = 1
    local_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls) -> World:
        """The launcher's ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE`` and ``LOCAL_WORLD_SIZE``
        (torchrun and :func:`relaunch` set them all); one process without."""
        env = os.environ
        return cls(
            int(env.get("RANK", 0)),
            int(env.get("LOCAL_RANK", 0)),
            int(env.get("WORLD_SIZE", 1)),
            int(env.get("LOCAL_WORLD_SIZE", 1)),
        )

    @classmethod
    def current(cls) -> World:
        """The initialised process group, or one process when there is none."""
        import torch.distributed as dist  # here: the launcher itself never imports torch

        if not (dist.is_available() and dist.is_initialized()):
            return cls()
        local = World.from_env()
        return cls(dist.get_rank(), local.local_rank, dist.get_world_size(), local.local_size)


def launched() -> bool:
    """Whether a launcher (torchrun, :func:`relaunch`) started this process."""
    return "WORLD_SIZE" in os.environ or "LOCAL_RANK" in os.environ


def relaunch(nproc: int) -> None:
    """Run this process's command line as ``nproc`` processes, then exit with their status.

    Returns at once (doing nothing) when ``nproc`` is 1 or a launcher started this
    process, so a stage calls it first thing and carries on as one of the processes.
    """
    if nproc > 1 and not launched():
        raise SystemExit(launch_local(nproc, [sys.executable, *sys.orig_argv[1:]]))


def launch_local(nproc: int, command: Sequence[str], timeout_s: float | None = None) -> int:
    """Start ``command`` as ranks 0..nproc-1 of one group on this machine; wait for all.

    Each process gets ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE`` and :data:`INIT_ENV` (a
    fresh store file) and, unless already set, ``GLOO_SOCKET_IFNAME`` = the loopback
    interface. Returns 0 when all succeed, else the first failure's exit status, after
    stopping the others (which would wait in a collective step for ever). SIGTERM or
    Ctrl-C stops them all too.
    """
    folder = Path(tempfile.mkdtemp(prefix="avemotion-ddp-"))
    env = {
        **os.environ,
        "WORLD_SIZE": str(nproc),
        "LOCAL_WORLD_SIZE": str(nproc),
        INIT_ENV: (folder / "store").as_uri(),
    }
    loopback = loopback_interface()
    if loopback and "GLOO_SOCKET_IFNAME" not in env:
        env["GLOO_SOCKET_IFNAME"] = loopback
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _exit_on_signal) if in_main_thread else None
    workers: list[subprocess.Popen] = []
    try:
        for rank in range(nproc):
            ranked = {**env, "RANK": str(rank), "LOCAL_RANK": str(rank)}
            workers.append(subprocess.Popen(list(command), env=ranked))
        return _wait_for(workers, timeout_s)
    finally:
        _stop(workers)
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)
        shutil.rmtree(folder, ignore_errors=True)


def _wait_for(workers: list[subprocess.Popen], timeout_s: float | None) -> int:
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        codes = [worker.poll() for worker in workers]
        failed = [code for code in codes if code not in (None, 0)]
        if failed:
            return failed[0]
        if all(code == 0 for code in codes):
            return 0
        if deadline is not None and time.monotonic() > deadline:
            return 124
        time.sleep(0.05)


def _stop(workers: list[subprocess.Popen]) -> None:
    running = [worker for worker in workers if worker.poll() is None]
    for worker in running:
        worker.terminate()
    for worker in running:
        try:
            worker.wait(TERMINATE_GRACE_S)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()


def _exit_on_signal(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)


def loopback_interface() -> str | None:
    """The loopback interface's name (``lo`` on Linux, ``lo0`` on macOS), if found."""
    try:
        names = [name for _, name in socket.if_nameindex()]
    except (AttributeError, OSError):
        return None
    return next((name for name in names if name.startswith("lo")), None)
