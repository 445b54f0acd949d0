"""Speaker normalisation: each feature z-scored within one speaker's segments.

A voice's own range (pitch, loudness, timbre) moves most acoustic features more than an
emotion does, so a model that meets an unseen speaker sees features shifted away from
anything it was trained on. Standardising every column within each speaker ("speaker
normalisation": Schuller et al. 2010, cross-corpus SER; Busso et al. 2013) removes that
offset and scale. It is transductive: a test speaker's statistics come from that
speaker's own unlabelled segments, so it assumes a speaker's recordings arrive together
(``base.speaker_norm``; ``avemotion predict`` takes each call's clips as one speaker's).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

#: A column whose spread within a speaker is below this is centred, not scaled.
MIN_STD = 1e-8


def statistics(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each column's mean and scale over the rows of ``x`` (n_rows, dim); the scale is
    the standard deviation, or 1 where that is below :data:`MIN_STD`."""
    x = np.asarray(x, dtype=np.float64)
    std = x.std(axis=0)
    return x.mean(axis=0), np.where(std > MIN_STD, std, 1.0)


def standardise_by_speaker(
    x: np.ndarray, speakers: np.ndarray, reference: np.ndarray | None = None
) -> np.ndarray:
    """``x`` (n_rows, dim) with every column z-scored within each speaker's rows.

    ``speakers`` (n_rows,) names each row's speaker. The mean and standard deviation of a
    speaker come from its ``reference`` rows (a boolean mask, e.g. the original segments
    without their augmented copies; default: all its rows) and are applied to all its
    rows. A speaker without reference rows is refused. Returns float32; the statistics
    are computed in float64 one speaker at a time."""
    x = np.asarray(x)
    speakers = np.asarray(speakers).astype(str)
    if len(speakers) != len(x):
        raise ValueError(f"{len(speakers)} speaker names for {len(x)} rows")
    reference = np.ones(len(x), dtype=bool) if reference is None else np.asarray(reference)
    out = np.empty(x.shape, dtype=np.float32)
    for speaker in np.unique(speakers):
        rows = speakers == speaker
        basis = x[rows & reference]
        if len(basis) == 0:
            raise ValueError(f"speaker {str(speaker)!r} has no reference rows to standardise by")
        mean, scale = statistics(basis)
        out[rows] = (x[rows] - mean) / scale
    return out


def standardise_segments(x: np.ndarray, meta: Mapping[str, np.ndarray]) -> np.ndarray:
    """The rows of a segment table (``meta``: its ``speaker`` and ``augmented`` columns)
    z-scored within each speaker by the statistics of the speaker's original segments,
    so that an augmented copy is scaled like its original and its added noise stays."""
    original = ~np.asarray(meta["augmented"], dtype=bool)
    return standardise_by_speaker(x, meta["speaker"], original)
