"""Which rows train and which test, for one fold of the index's protocol.

The index stores, per clip, the fold whose test part holds it (-1: never tested). For
fold ``f`` the training rows are every row outside fold ``f`` (augmented copies
included) and the test rows are fold ``f``'s original rows, never augmented ones.

scikit-learn is imported by the two functions that split, not with this module: a
stage that only names its fold (a training launcher, see :mod:`avemotion.launch`) would
pay about 3 s on a 2-core machine for it.
"""

from __future__ import annotations

from typing import get_args

import numpy as np

from avemotion.errors import BadInputError
from avemotion.params.schema import Protocol, TrainParams

#: The ``fold`` of the final model (``stages/*.py final``): no clip has it, so every row
#: trains (validation speakers still carved out) and none tests. What ``avemotion
#: predict`` runs is trained so, on every labelled speaker of the run.
FINAL = -2


def fold_argument(text: str) -> int:
    """A stage's ``fold`` argument: a test fold's number, or ``final`` (:data:`FINAL`)."""
    if text == "final":
        return FINAL
    fold = int(text)
    if fold < 0:
        raise ValueError(f"a fold is a number >= 0 or 'final', not {text!r}")
    return fold


def fold_name(fold: int) -> str:
    """How paths and messages name ``fold``: ``fold0``, ..., or ``final``."""
    return "final" if fold == FINAL else f"fold{fold}"


def augment_mask(fold: np.ndarray) -> np.ndarray:
    """True for clips on the training side of at least one fold: the ones to augment.

    In a k-fold protocol every clip trains in some fold, so every clip gets augmented
    copies, which are only ever used by the folds that train on that clip. In a single
    split (``random``, ``fixed``) only the training clips (fold -1) do.
    """
    fold = np.asarray(fold)
    n_test_folds = len(np.unique(fold[fold >= 0]))
    return (fold < 0) | (n_test_folds > 1)


def train_rows(fold: np.ndarray, test_fold: int) -> np.ndarray:
    """Boolean mask of the rows that train for ``test_fold`` (augmented rows included)."""
    return np.asarray(fold) != test_fold


def test_rows(fold: np.ndarray, augmented: np.ndarray, test_fold: int) -> np.ndarray:
    """Boolean mask of the rows that test ``test_fold``: its clips, never augmented copies."""
    return (np.asarray(fold) == test_fold) & ~np.asarray(augmented, dtype=bool)


test_rows.__test__ = False  # a library function, not a pytest test, wherever it is imported


def validation_groups(groups: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """The groups (speakers, or clips) held out for validation from one fold's training
    groups: ``GroupShuffleSplit(test_size=fraction, random_state=seed)`` over the sorted
    distinct groups, so every table of the run (spectrograms, FC features, functionals)
    holds out the same speakers whatever its rows. Empty when ``fraction`` is 0 or there
    are fewer than 2 groups."""
    from sklearn.model_selection import GroupShuffleSplit  # see the module's docstring

    distinct = np.unique(np.asarray(groups))
    if fraction <= 0 or len(distinct) < 2:
        return distinct[:0]
    splitter = GroupShuffleSplit(n_splits=1, test_size=fraction, random_state=seed)
    _, held = next(splitter.split(distinct, groups=distinct))
    return distinct[held]


def validation_rows(
    meta: dict[str, np.ndarray], test_fold: int, fraction: float, by: str, seed: int
) -> np.ndarray:
    """Boolean mask of the training rows of ``test_fold`` whose group (``by``: ``speaker``
    or ``clip``) is held out for validation, augmented copies included (whoever fits on
    the rest must drop them all; whoever scores validation keeps the originals)."""
    train = train_rows(meta["fold"], test_fold)
    column = np.asarray(meta["speaker" if by == "speaker" else "clip_id"]).astype(str)
    held = validation_groups(column[train], fraction, seed)
    return train & np.isin(column, held)


PROTOCOLS: tuple[str, ...] = get_args(Protocol)


def assign_folds(
    labels: np.ndarray,
    speakers: np.ndarray,
    protocol: str = "speaker",
    n_folds: int = 4,
    test_size: float = 0.3,
    test_speakers: list[str] | None = None,
    seed: int = 42,
    given_folds: np.ndarray | None = None,
) -> np.ndarray:
    """The fold whose test part holds each clip (-1: training side of a single split).

    All protocols are stratified by emotion and come from ``sklearn.model_selection``:

    - ``speaker`` (default): ``StratifiedGroupKFold`` by speaker; no speaker is on both
      sides of any fold. The honest protocol.
    - ``loso``: ``LeaveOneGroupOut``; fold ``i`` tests the ``i``-th speaker (sorted).
    - ``fixed``: the speakers in ``test_speakers`` are fold 0, everyone else trains; with
      no list, the manifest's own ``fold`` column (``given_folds``) is used as it is.
    - ``kfold``: ``StratifiedKFold`` over clips (the paper's 4-fold on eNTERFACE'05);
      speakers are mixed between train and test.
    - ``random``: ``train_test_split`` with ``test_size`` (the paper's 70/30); speakers
      are mixed between train and test.

    Raises :class:`~avemotion.errors.BadInputError` when the data cannot be split so.
    """
    from sklearn.model_selection import (  # see the module's docstring
        LeaveOneGroupOut,
        StratifiedGroupKFold,
        StratifiedKFold,
        train_test_split,
    )

    labels = np.asarray(labels)
    speakers = np.asarray(speakers, dtype=str)
    n_speakers = len(np.unique(speakers))
    folds = np.full(len(labels), -1, dtype=np.int64)
    indices = np.arange(len(labels))
    try:
        if protocol == "speaker":
            if n_speakers < n_folds:
                raise BadInputError(
                    f"split.protocol speaker needs at least n_folds={n_folds} speakers, "
                    f"found {n_speakers}"
                )
            splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
            for fold, (_, test) in enumerate(splitter.split(indices, labels, groups=speakers)):
                folds[test] = fold
        elif protocol == "loso":
            if n_speakers < 2:
                raise BadInputError("split.protocol loso needs at least 2 speakers")
            for fold, (_, test) in enumerate(
                LeaveOneGroupOut().split(indices, labels, groups=speakers)
            ):
                folds[test] = fold
        elif protocol == "fixed":
            folds = _fixed_folds(speakers, test_speakers or [], given_folds)
        elif protocol == "kfold":
            splitter = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
            for fold, (_, test) in enumerate(splitter.split(indices, labels)):
                folds[test] = fold
        elif protocol == "random":
            _, test = train_test_split(
                indices, test_size=test_size, stratify=labels, random_state=seed
            )
            folds[test] = 0
        else:
            raise BadInputError(
                f"unknown split.protocol {protocol!r}; choose one of {list(PROTOCOLS)}"
            )
    except ValueError as error:
        raise BadInputError(f"split.protocol {protocol} cannot split this data: {error}") from None
    return folds


def _fixed_folds(
    speakers: np.ndarray, test_speakers: list[str], given_folds: np.ndarray | None
) -> np.ndarray:
    if test_speakers:
        test_speakers = [str(s) for s in test_speakers]
        unknown = sorted(set(test_speakers) - set(speakers))
        if unknown:
            raise BadInputError(f"split.test_speakers {unknown} are not speakers of this dataset")
        return np.where(np.isin(speakers, test_speakers), 0, -1).astype(np.int64)
    if given_folds is None or np.any(given_folds < -1):
        raise BadInputError(
            "split.protocol fixed needs split.test_speakers or a 'fold' column in the manifest"
        )
    return np.asarray(given_folds, dtype=np.int64)


def held_and_fitting(
    meta: dict[str, np.ndarray], test_fold: int, train: TrainParams, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Masks of ``test_fold``'s validation rows (:func:`validation_rows` with
    ``train.validation_fraction`` and ``train.validate_by``, copies included) and its
    fitting rows (the rest of its training rows): what every system of the run holds out
    and fits on to score the validation speakers."""
    held = validation_rows(meta, test_fold, train.validation_fraction, train.validate_by, seed)
    return held, train_rows(meta["fold"], test_fold) & ~held
