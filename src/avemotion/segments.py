"""The 2 s analysis segments that both branches share.

Segment ``i`` of a clip spans ``[i * hop_s, i * hop_s + segment_s)`` in the clip's own
time, in the audio branch and in the video branch alike, so that the fusion stage can
pair rows by ``(clip_id, segment)``. Both branches compute the spans from the clip
duration recorded in ``data/index.csv`` with :func:`segment_starts`, never from their
own stream's length, so they cannot disagree. :class:`SegmentParams` reads the ``base:``
keys that set the spans, once for every branch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from avemotion.params import Params
from avemotion.params.schema import LastSegment


def segment_starts(
    duration_s: float,
    segment_s: float = 2.0,
    hop_s: float = 2.0,
    last_segment: LastSegment = "pad",
    min_segment_s: float = 1.0,
) -> np.ndarray:
    """Start times (s) of the analysis segments of a clip of ``duration_s`` seconds.

    Full segments always count. What remains after the last full one (and a whole clip
    shorter than one segment) is a *partial* segment: with ``last_segment="pad"`` it is
    kept, and padded by the front-ends, when it lasts at least ``min_segment_s``; with
    ``"drop"`` it is dropped. A clip may therefore have no segment at all; the
    front-ends reject such a clip with that reason.

    Returns a float array of shape (n_segments,).
    """
    if segment_s <= 0 or hop_s <= 0:
        raise ValueError("segment_s and hop_s must be positive")
    if last_segment not in ("pad", "drop"):
        raise ValueError(f"last_segment must be 'pad' or 'drop', not {last_segment!r}")
    eps = 1e-6
    n_full = (
        int(np.floor((duration_s - segment_s) / hop_s + eps)) + 1
        if duration_s + eps >= segment_s
        else 0
    )
    starts = [i * hop_s for i in range(max(n_full, 0))]
    next_start = n_full * hop_s
    covered_until = starts[-1] + segment_s if starts else 0.0
    remaining = duration_s - next_start
    if (
        last_segment == "pad"
        and duration_s - covered_until > eps
        and remaining + eps >= min_segment_s
    ):
        starts.append(next_start)
    return np.asarray(starts, dtype=np.float64)


@dataclass(frozen=True)
class SegmentParams:
    """The segment keys of ``base:``, read in this one place for every branch.

    The audio and video front-ends and the MFCC baseline all cut their clips with these
    values, so a row ``(clip_id, segment)`` means the same span of time in each file.
    """

    segment_s: float = 2.0
    hop_s: float = 2.0
    last_segment: LastSegment = "pad"
    min_segment_s: float = 1.0

    @classmethod
    def from_params(cls, params: Params) -> SegmentParams:
        """Read ``base.{segment_s,hop_s,last_segment,min_segment_s}`` (checked by the schema)."""
        base = params.base
        return cls(base.segment_s, base.hop_s, base.last_segment, base.min_segment_s)

    def starts(self, duration_s: float) -> np.ndarray:
        """:func:`segment_starts` of a clip of ``duration_s`` seconds with these params."""
        return segment_starts(
            duration_s, self.segment_s, self.hop_s, self.last_segment, self.min_segment_s
        )

    def no_segment_reason(self, duration_s: float) -> str:
        """Why :meth:`starts` gives a clip no segment, in the params' own words."""
        if self.last_segment == "drop":
            return (
                f"no analysis segment: {duration_s:.2f} s is shorter than base.segment_s="
                f"{self.segment_s:g} and base.last_segment is drop"
            )
        return (
            f"no analysis segment: {duration_s:.2f} s is shorter than base.min_segment_s="
            f"{self.min_segment_s:g}"
        )

    def padding_rule(self) -> str:
        """What happens to a partial last segment, in words for an HDF5 file's attrs."""
        if self.last_segment == "pad":
            return (
                f"a partial last segment (and a clip shorter than {self.segment_s} s) of at "
                f"least {self.min_segment_s} s is zero-padded to {self.segment_s} s"
            )
        return "a partial last segment (and a clip shorter than a segment) is dropped"
