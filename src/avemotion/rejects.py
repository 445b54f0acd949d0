"""The rejects report: every file a stage did not take, with the reason, never a silent drop."""

from __future__ import annotations

import csv
from dataclasses import asdict, dataclass
from pathlib import Path

from avemotion.atomic import atomic_path

REJECT_COLUMNS = ("path", "clip_id", "stage", "reason")


@dataclass(frozen=True)
class Reject:
    """One file (or clip) that a stage left out, and why, in words a user can act on."""

    path: str
    clip_id: str
    stage: str
    reason: str


def write_rejects(path: str | Path, rejects: list[Reject]) -> None:
    """Write the report as CSV (header only when nothing was rejected), atomically."""
    with atomic_path(path) as partial, partial.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=REJECT_COLUMNS)
        writer.writeheader()
        for reject in rejects:
            writer.writerow(asdict(reject))


def read_rejects(path: str | Path) -> list[Reject]:
    """Read a report written by :func:`write_rejects`."""
    with Path(path).open(newline="") as handle:
        return [Reject(**row) for row in csv.DictReader(handle)]
