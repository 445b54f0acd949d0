"""Reading ``params.yaml``: one loader, every key checked, errors in one line.

:func:`load_params` validates the whole file against :class:`~avemotion.params.schema.Params`
and turns every problem into one :class:`BadInputError` line that names the key: an
unknown key with the closest valid one (``did you mean train.epochs?``), a bad value with
what is allowed.

:func:`stage_params` is what a DVC stage reads through: the same validated params, seen
through the keys that the stage declares under ``params:`` in ``dvc.yaml``. Reading an
undeclared key raises :class:`UndeclaredParamError`, so a stage cannot depend on a
value DVC does not track (DVC would then not rerun it when that value changes). With
``AVEMOTION_PARAMS_TRACE=DIR`` set, each stage writes the keys it read to
``DIR/<stage>-<pid>.json`` at exit; a test compares them with ``dvc.yaml``.
"""

from __future__ import annotations

import atexit
import difflib
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from avemotion.errors import BadInputError
from avemotion.params.schema import Params

DEFAULT_PARAMS = Path("params.yaml")
DEFAULT_PIPELINE = Path("dvc.yaml")
TRACE_ENV = "AVEMOTION_PARAMS_TRACE"


def read_yaml_mapping(path: str | Path) -> dict[str, Any]:
    """A YAML file that must hold a mapping (``params.yaml``, a preset, ``dvc.yaml``)."""
    path = Path(path)
    if not path.is_file():
        raise BadInputError("not found; run from the project root", path)
    try:
        tree = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise BadInputError(f"not valid YAML: {' '.join(str(error).split())}", path) from None
    if not isinstance(tree, dict):
        raise BadInputError("must hold a mapping of sections", path)
    return tree


def load_params(path: str | Path = DEFAULT_PARAMS) -> Params:
    """The whole params file, validated; a :class:`BadInputError` line for any problem."""
    return validate_params(read_yaml_mapping(path), path)


def validate_params(tree: dict[str, Any], where: str | Path = DEFAULT_PARAMS) -> Params:
    """``tree`` (nested dicts, as YAML gives them) as :class:`Params`, or one error line."""
    try:
        return Params.model_validate(tree)
    except ValidationError as error:
        raise BadInputError(describe(error, tree), where) from None


def describe(error: ValidationError, tree: dict[str, Any]) -> str:
    """A pydantic error as ``key: what is wrong`` clauses, in the params file's terms.

    A union's alternatives (``svm_gamma``: scale, auto or a number) fail one by one; they
    are joined into one clause per key.
    """
    clauses: dict[str, list[str]] = {}
    for problem in error.errors():
        key = _user_key(problem["loc"], tree)
        if problem["type"] == "extra_forbidden":
            guess = closest_key(key)
            clauses[f"unknown key `{key}`"] = [f"did you mean `{guess}`?" if guess else ""]
            continue
        if problem["type"] == "missing":
            clauses.setdefault(f"`{key}` is missing", [])
            continue
        value = problem.get("input")
        shown = "" if isinstance(value, dict | list) else f" = {value!r}"
        head = f"`{key}`{shown}" if key else ""
        message = problem["msg"].removeprefix("Value error, ")
        if message.startswith("Input should be "):
            message = "should be " + message.removeprefix("Input should be ")
        clauses.setdefault(head, []).append(message)
    parts = []
    for head, messages in clauses.items():
        said = [m for m in dict.fromkeys(messages) if m]
        if head.startswith("unknown key"):
            parts.append(f"{head}; {said[0]}" if said else head)
        elif not said:
            parts.append(head)
        else:
            allowed = " or ".join(m.removeprefix("should be ") for m in said)
            if not all(m.startswith("should be ") for m in said):
                parts.append(f"{head}: {'; '.join(said)}" if head else "; ".join(said))
                continue
            typed = allowed.startswith("a valid")
            constraint = _constraints(head.split("`")[1]) if typed and head else ""
            parts.append(f"{head}: should be {allowed}{constraint}" if head else allowed)
    return "; ".join(parts)


def _user_key(loc: tuple[Any, ...], tree: dict[str, Any]) -> str:
    """The dotted key of a pydantic error location, without the type names it adds."""
    keys: list[str] = []
    node: Any = tree
    for part in loc:
        if isinstance(node, dict) and str(part) in node:
            node = node[str(part)]
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        elif not isinstance(node, dict):
            continue  # a union member's or validator's name, not a key
        else:
            keys.append(str(part))  # a key that is missing from the user's tree
            break
        keys.append(str(part))
    return ".".join(keys)


def _constraints(key: str) -> str:
    """`` (allowed: >= 2)`` for a field with range constraints, else ``""``."""
    model: Any = Params
    info = None
    for part in key.split("."):
        fields = getattr(model, "model_fields", {})
        if part not in fields:
            return ""
        info = fields[part]
        model = info.annotation
    words = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<", "multiple_of": "a multiple of"}
    found = []
    for item in [] if info is None else info.metadata:
        for name, word in words.items():
            bound = getattr(item, name, None)
            if bound is not None:
                found.append(f"{word} {bound}")
    return f" (allowed: {', '.join(found)})" if found else ""


def all_keys(model: BaseModel, prefix: str = "") -> list[str]:
    """Every dotted key of a params model, sections and leaves (``train``, ``train.lr``)."""
    keys = []
    for name in type(model).model_fields:
        dotted = f"{prefix}{name}"
        keys.append(dotted)
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            keys.extend(all_keys(value, dotted + "."))
        elif isinstance(value, dict):  # train.by_modality.<branch>.<key>
            for entry, item in value.items():
                if isinstance(item, BaseModel):
                    keys.append(f"{dotted}.{entry}")
                    keys.extend(all_keys(item, f"{dotted}.{entry}."))
    return keys


_KNOWN_KEYS = all_keys(Params())


def closest_key(key: str) -> str | None:
    """The valid key nearest to a misspelled ``key`` (same section first), or None."""
    section = key.rpartition(".")[0]
    same_level = [k for k in _KNOWN_KEYS if k.rpartition(".")[0] == section]
    for candidates in (same_level, _KNOWN_KEYS):
        lowered = {k.lower(): k for k in candidates}
        if key.lower() in lowered:  # `fusion.svm_c` -> `fusion.svm_C`
            return lowered[key.lower()]
        found = difflib.get_close_matches(key, candidates, n=1, cutoff=0.6)
        if found:
            return found[0]
    return None


def resolve_n_jobs(n_jobs: int | None) -> int:
    """``base.n_jobs``: a positive count, or -1 / None for every core this process may use."""
    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if n_jobs is None or n_jobs < 1:
        return max(1, available or 1)
    return int(n_jobs)


# --------------------------------------------------------------------------- per stage


#: Keys any stage may read without declaring them: they change how fast a stage runs (and
#: where: local processes or a Dask cluster), never what it writes, so DVC must not rerun
#: anything when they change.
UNTRACKED = frozenset({"base.n_jobs", "base.backend", "base.dask_scheduler"})


class UndeclaredParamError(RuntimeError):
    """A stage read a params key that its ``dvc.yaml`` entry does not list."""


def declared_params(stage: str, pipeline: str | Path = DEFAULT_PIPELINE) -> tuple[str, ...]:
    """The ``params:`` entries of ``stage`` in ``dvc.yaml`` (``foreach``/``matrix`` too)."""
    stages = read_yaml_mapping(pipeline).get("stages") or {}
    if stage not in stages:
        raise BadInputError(f"has no stage {stage!r}", pipeline)
    entry = stages[stage]
    listed = entry.get("params", entry.get("do", {}).get("params", [])) or []
    return tuple(item for item in listed if isinstance(item, str))


class StageParams:
    """:class:`Params` as one stage may read them: only the keys it declares.

    ``view.video`` gives the section itself when the stage declares ``video``; when it
    declares single keys (``base.seed``), it gives a :class:`_KeysView` that hands out
    those keys only. Every read is recorded in :attr:`read`.
    """

    def __init__(self, params: Params, declared: Iterable[str], stage: str):
        self._params = params
        self._declared = frozenset(declared)
        self.stage = stage
        self.read: set[str] = set()

    def __getattr__(self, section: str) -> Any:
        if section.startswith("_") or section not in Params.model_fields:
            raise AttributeError(section)
        value = getattr(self._params, section)
        if section in self._declared:
            self.read.add(section)
            return value
        keys = {k for k in self._declared | UNTRACKED if k.startswith(section + ".")}
        if not keys:
            raise UndeclaredParamError(
                f"stage {self.stage} reads params section `{section}`, which its dvc.yaml "
                "entry does not list under params:"
            )
        return _KeysView(value, section, keys, self)


class _KeysView:
    """One section of :class:`StageParams` restricted to the keys a stage declares."""

    def __init__(self, section: BaseModel, name: str, keys: set[str], owner: StageParams):
        self._section, self._name, self._keys, self._owner = section, name, keys, owner

    def __getattr__(self, key: str) -> Any:
        if key.startswith("_"):
            raise AttributeError(key)
        dotted = f"{self._name}.{key}"
        if dotted not in self._keys:
            raise UndeclaredParamError(
                f"stage {self._owner.stage} reads `{dotted}`, which its dvc.yaml entry "
                "does not list under params:"
            )
        if dotted not in UNTRACKED:
            self._owner.read.add(dotted)
        return getattr(self._section, key)


def stage_params(
    stage: str, path: str | Path = DEFAULT_PARAMS, pipeline: str | Path = DEFAULT_PIPELINE
) -> StageParams:
    """The validated params of the run, as stage ``stage`` may read them."""
    view = StageParams(load_params(path), declared_params(stage, pipeline), stage)
    folder = os.environ.get(TRACE_ENV)
    if folder:
        atexit.register(_write_trace, Path(folder), view)
    return view


def _write_trace(folder: Path, view: StageParams) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    record = {"stage": view.stage, "read": sorted(view.read)}
    (folder / f"{view.stage}-{os.getpid()}.json").write_text(json.dumps(record) + "\n")
