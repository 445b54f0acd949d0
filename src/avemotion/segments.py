"""The 2 s analysis segments that both branches share.

Segment ``i`` of a clip spans ``[i * hop_s, i * hop_s + segment_s)`` in the clip's own
time, in the audio branch and in the video branch alike, so that the fusion stage can
pair rows by ``(clip_id, segment)``. Both branches compute the spans from the clip
duration recorded in ``data/index.csv`` with :func:`segment_starts`, never from their
own stream's length, so they cannot disagree.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

LastSegment = Literal["pad", "drop"]


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
