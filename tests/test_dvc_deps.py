"""Each stage in dvc.yaml lists, as deps, exactly the avemotion modules its script runs.

DVC reruns a stage only when one of its deps changes. A module the script imports,
directly or through another module, but that its entry does not list, could change the
stage's outputs without a rerun: `dvc repro` would then report "up to date" on stale
results. A listed module the script never imports reruns the stage for nothing. The
script's import closure is found by walking the source (``ast``), so nothing is run.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml
from conftest import REPO

PACKAGE = "avemotion"
SOURCE = REPO / "src"
SCRIPT = re.compile(r"\bpython (stages/\S+\.py)\b")


def module_file(name: str) -> Path | None:
    """The file that defines module ``name`` (a package's ``__init__.py``), if it is ours."""
    if name != PACKAGE and not name.startswith(PACKAGE + "."):
        return None
    base = SOURCE.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def package_of(path: Path) -> str:
    """The dotted name of the package ``path`` is in: the anchor of its relative imports."""
    return ".".join(path.relative_to(SOURCE).parts[:-1])


def imported_names(path: Path) -> set[str]:
    """Every module name ``path`` imports, anywhere in the file, made absolute.

    ``from x import y`` names both ``x`` and ``x.y`` (``y`` may be a submodule; a name
    that is no module of ours is dropped by :func:`module_file`).
    """
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = package_of(path).split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def import_closure(script: Path) -> set[Path]:
    """The avemotion source files that running ``script`` executes.

    Importing ``a.b.c`` runs ``a/__init__.py`` and ``a/b/__init__.py`` first, so the
    parents' files are in the closure too.
    """
    seen: set[Path] = set()
    todo = [script]
    while todo:
        for name in imported_names(todo.pop()):
            parts = name.split(".")
            for depth in range(1, len(parts) + 1):
                found = module_file(".".join(parts[:depth]))
                if found is not None and found not in seen:
                    seen.add(found)
                    todo.append(found)
    return seen


def stage_entries() -> dict[str, dict]:
    """Each stage's ``cmd`` and ``deps`` (the ``do:`` body of a ``foreach``)."""
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    return {name: entry.get("do", entry) for name, entry in stages.items()}


def module_deps(entry: dict) -> set[Path]:
    """The deps under ``src/`` (files or folders), as absolute paths."""
    return {REPO / dep for dep in entry["deps"] if dep.startswith("src/")}


def covered(path: Path, deps: set[Path]) -> bool:
    return any(path == dep or dep in path.parents for dep in deps)


STAGES = stage_entries()


def test_package_of_names_relative_import_anchors():
    assert package_of(SOURCE / "avemotion" / "fusion" / "stages.py") == "avemotion.fusion"
    assert package_of(SOURCE / "avemotion" / "fusion" / "__init__.py") == "avemotion.fusion"
    assert package_of(SOURCE / "avemotion" / "elm.py") == "avemotion"


def test_the_closure_follows_imports_through_modules_and_packages():
    """train_cnn imports avemotion.branch, which imports avemotion.training: both are
    in its closure, with the package's __init__; a module it never reaches is not."""
    closure = import_closure(REPO / "stages" / "train_cnn.py")
    package = SOURCE / "avemotion"
    assert {package / "__init__.py", package / "training.py", package / "models.py"} <= closure
    assert package / "demo.py" not in closure


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_a_stage_lists_every_module_its_script_imports_and_no_other(stage):
    entry = STAGES[stage]
    scripts = set(SCRIPT.findall(entry["cmd"]))
    assert len(scripts) == 1, f"{stage}: expected one `python stages/X.py` in {entry['cmd']!r}"
    script = REPO / scripts.pop()
    assert f"{script.relative_to(REPO)}" in entry["deps"], f"{stage}: its script is no dep"
    closure = import_closure(script)
    deps = module_deps(entry)
    missing = sorted(str(p.relative_to(REPO)) for p in closure if not covered(p, deps))
    unused = sorted(
        str(dep.relative_to(REPO)) for dep in deps if not any(covered(p, {dep}) for p in closure)
    )
    assert not missing, f"{stage}: imports modules its deps do not list: {missing}"
    assert not unused, f"{stage}: lists modules its script never imports: {unused}"
