"""Reading ``params.yaml``: the one file that holds every knob of the pipeline."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from avemotion.errors import BadInputError

DEFAULT_PARAMS = Path("params.yaml")


def load_params(path: str | Path = DEFAULT_PARAMS) -> dict[str, Any]:
    """Return the whole params file as nested dicts."""
    path = Path(path)
    if not path.is_file():
        raise BadInputError("params file not found; run from the project root", path)
    with path.open() as handle:
        params = yaml.safe_load(handle) or {}
    if not isinstance(params, dict):
        raise BadInputError("params file must hold a mapping of sections", path)
    return params


def section(params: dict[str, Any], name: str) -> dict[str, Any]:
    """Return one section (``base``, ``data``, ...) with a clear error when it is missing."""
    if name not in params or not isinstance(params[name], dict):
        raise BadInputError(f"params has no '{name}:' section")
    return params[name]


def resolve_n_jobs(n_jobs: int | None) -> int:
    """``base.n_jobs``: a positive count, or -1 / None for every core this process may use."""
    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if n_jobs is None or n_jobs < 1:
        return max(1, available or 1)
    return int(n_jobs)
