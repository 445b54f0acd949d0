"""Errors a user can act on, and the one place that turns them into one-line messages.

Every problem with a user's file or params is raised as :class:`BadInputError` with the
file and what is wrong; the stage entry points wrap ``main`` in :func:`run_stage`, which
prints that one line instead of a traceback and exits with status 1.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path


class BadInputError(Exception):
    """A user's file, folder or parameter cannot be used.

    The message names the path (when there is one) and what is wrong, so that it can be
    shown as a single line: ``path: what is wrong``.
    """

    def __init__(self, message: str, path: str | Path | None = None):
        self.path = None if path is None else str(path)
        self.reason = message
        super().__init__(message if path is None else f"{path}: {message}")


def run_stage(main: Callable[[], object]) -> None:
    """Run a stage's ``main`` and turn a :class:`BadInputError` into one line on stderr."""
    try:
        main()
    except BadInputError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(1) from None
