"""What ``avemotion predict`` says about one input: :class:`ClipPrediction`.

The engine (:mod:`avemotion.predict.engine`) fills these; the writers
(:mod:`avemotion.predict.report`) turn them into the terminal table, CSV, JSON and
timeline pictures. Probabilities are ordered as the bundle's ``classes``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

OK = "ok"
ERROR = "error"


@dataclass(frozen=True)
class SegmentPrediction:
    """One analysis segment: ``[start_s, end_s)`` of the clip and its class probabilities
    ``(n_classes,)``; ``label`` is the most probable class."""

    start_s: float
    end_s: float
    label: str
    probabilities: np.ndarray


@dataclass
class ClipPrediction:
    """One input's outcome.

    ``status`` is :data:`OK` (then ``label``, ``probabilities`` (n_classes,), the
    ``modalities`` the prediction used and the ``segments`` are set) or :data:`ERROR`
    (then ``error`` holds the one-line reason). ``warnings`` are notes on a prediction
    that went through, e.g. "no face found: predicted from audio alone".
    """

    file: str
    status: str
    classes: tuple[str, ...]
    label: str | None = None
    probabilities: np.ndarray | None = None
    modalities: tuple[str, ...] = ()
    segments: list[SegmentPrediction] = field(default_factory=list)
    error: str | None = None
    warnings: list[str] = field(default_factory=list)
    duration_s: float | None = None

    @classmethod
    def failed(cls, file: str, classes: tuple[str, ...], reason: str) -> ClipPrediction:
        """An input that could not be predicted, with the reason."""
        return cls(file=file, status=ERROR, classes=classes, error=reason)
