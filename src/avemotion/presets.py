"""Named sets of params (``params/<name>.yaml``), turned into ``dvc exp run -S`` arguments.

A preset holds only what it changes. ``dvc exp run $(python -m avemotion.presets paper)``
runs the experiment with the paper's values on top of ``params.yaml``, and
``dvc exp show`` lists it beside the defaults.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

from avemotion.errors import BadInputError, run_stage

PRESET_DIR = Path("params")


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists stay values."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def load_preset(name: str, directory: Path = PRESET_DIR) -> dict[str, Any]:
    """The dotted keys and values of ``params/<name>.yaml`` (``extends:`` another preset)."""
    path = directory / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in directory.glob("*.yaml"))
        raise BadInputError(f"no preset {name!r}; presets: {known}", path)
    tree = yaml.safe_load(path.read_text()) or {}
    parent = tree.pop("extends", None)
    return {**(load_preset(parent, directory) if parent else {}), **flatten(tree)}


def set_arguments(preset: dict[str, Any]) -> list[str]:
    """``-S key=value`` pairs, values in YAML flow style without spaces (safe to word-split)."""
    arguments = []
    for key, value in preset.items():
        text = yaml.safe_dump(value, default_flow_style=True, width=10**6).strip()
        text = text.removesuffix("...").strip().replace(" ", "")
        arguments += ["-S", f"{key}={text}"]
    return arguments


def main() -> None:
    if len(sys.argv) != 2:
        raise BadInputError("usage: python -m avemotion.presets <name>")
    print(" ".join(set_arguments(load_preset(sys.argv[1]))))


if __name__ == "__main__":
    run_stage(main)
