"""Write-to-partial-then-rename: an output exists whole, or not at all.

A stage killed half-way (Ctrl-C, out of memory) must not leave a file that looks done:
DVC would cache it and the next stage would read it. Every output is therefore written
to ``<name>.partial`` beside its final path and renamed onto it (an atomic
``os.replace`` on one file system) only when writing finished without an error.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def partial_path(path: str | Path) -> Path:
    """``<path>.partial``: where ``path`` is written before it is renamed into place."""
    path = Path(path)
    return path.with_name(path.name + ".partial")


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield the partial path to write; rename it onto ``path`` when the block succeeds.

    The parent folder is created. On an exception the partial file is removed and the
    exception propagates; a stale ``path`` from an earlier run is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = partial_path(path)
    try:
        yield partial
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    os.replace(partial, path)


def write_json(path: str | Path, record: Any) -> None:
    """``record`` as indented JSON, written atomically."""
    with atomic_path(path) as partial:
        partial.write_text(json.dumps(record, indent=2) + "\n")


def file_digest(path: str | Path, algorithm: str = "sha256") -> str:
    """The hex digest of a file's bytes, read 1 MiB at a time."""
    digest = hashlib.new(algorithm)
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
