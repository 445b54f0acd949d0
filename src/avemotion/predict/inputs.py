"""What ``avemotion predict`` was asked to read: files, folders and glob patterns, as targets.

Every argument gives at least one target, so nothing a user named is skipped in silence:
a path that cannot be read becomes a target with an ``error`` (reported as a failed clip
beside the others) instead of stopping the whole run. A file named explicitly is taken
whatever its extension (a non-media file then fails with the decoder's reason); inside a
folder only names ending in :data:`~avemotion.media.MEDIA_EXTENSIONS` are kept.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from avemotion.media import MEDIA_EXTENSIONS

NOT_FOUND = "file not found"
NO_MATCH = "no file matches this pattern"
DIRECTORY = "a directory, not a media file"
EMPTY_FOLDER = "no media files in this folder"
GLOB_CHARS = "*?["


@dataclass(frozen=True)
class Target:
    """One input to predict: ``path`` as the user will recognise it (not resolved), and
    ``error``, the one-line reason it cannot be read, or ``None`` when it is to be tried."""

    path: str
    error: str | None = None


def discover(arguments: Sequence[str]) -> list[Target]:
    """Expand command-line paths into targets, in argument order, each file once.

    A file is kept as given; a folder is walked recursively (following symbolic links)
    for media files, sorted; an argument that is not an existing path but holds one of
    ``*?[`` is a recursive glob pattern whose matches are expanded the same way. Two
    arguments reaching the same file (by resolved path) give it once, where first seen.
    """
    targets: list[Target] = []
    seen: set[str] = set()
    for argument in arguments:
        for target in _expand_argument(argument):
            key = _identity(target)
            if key not in seen:
                seen.add(key)
                targets.append(target)
    return targets


def _expand_argument(argument: str) -> Iterator[Target]:
    if os.path.lexists(argument) or not any(c in argument for c in GLOB_CHARS):
        yield from _expand_path(argument)
        return
    matches = sorted(glob.glob(argument, recursive=True))
    if not matches:
        yield Target(argument, NO_MATCH)
    for match in matches:
        yield from _expand_path(match)


def _expand_path(path: str) -> Iterator[Target]:
    """A named path: the file itself, a folder's media files, or why it cannot be read."""
    if os.path.isdir(path):
        if _has_media_suffix(path):
            yield Target(path, DIRECTORY)
        else:
            yield from _walk(path)
    elif os.path.exists(path):
        yield Target(path)
    elif os.path.islink(path):
        yield Target(path, _broken_link(path))
    else:
        yield Target(path, NOT_FOUND)


def _walk(folder: str) -> Iterator[Target]:
    """Media files under ``folder``, sorted by path. Symbolic links to folders are followed
    (once per real folder, so a link loop ends); a folder or a broken link whose name looks
    like media is reported rather than passed over."""
    found: list[Target] = []
    visited: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        visited.add(os.path.realpath(dirpath))
        kept = []
        for name in sorted(dirnames):
            path = os.path.join(dirpath, name)
            if _has_media_suffix(name):
                found.append(Target(path, DIRECTORY))
            elif os.path.realpath(path) not in visited:
                kept.append(name)
        dirnames[:] = kept
        for name in filenames:
            if not _has_media_suffix(name):
                continue
            path = os.path.join(dirpath, name)
            if os.path.isfile(path):
                found.append(Target(path))
            elif os.path.islink(path) and not os.path.exists(path):
                found.append(Target(path, _broken_link(path)))
    if not found:
        yield Target(folder, EMPTY_FOLDER)
    yield from sorted(found, key=lambda t: Path(t.path).parts)


def _has_media_suffix(name: str) -> bool:
    return Path(name).suffix.lower() in MEDIA_EXTENSIONS


def _broken_link(path: str) -> str:
    return f"broken symbolic link (to {os.readlink(path)})"


def _identity(target: Target) -> str:
    """What makes two targets the same input: the resolved path of a file or folder that
    exists, the name as given of one that does not (two missing names are two problems)."""
    if target.error in (None, DIRECTORY):
        return f"{target.error}\0{os.path.realpath(target.path)}"
    return f"{target.error}\0{os.path.abspath(target.path)}"
