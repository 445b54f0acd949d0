"""Keyframe selection within a 2 s segment (paper section 2.1, eq. 1).

The paper: gray-level histograms of the face crops; the chi-square distance between the
histograms of consecutive frames; in a window of 2k+1 frames (k = 3) the frame with the
smallest difference is the keyframe; the window moves on 4 frames; 16 keyframes per 2 s.

Those numbers do not add up at 25-30 fps: 50-60 frames hold only 11-14 windows of 7 frames
moved by 4. The rule implemented here keeps the paper's selection (the minimum of a
(2k+1)-frame window) and always returns ``n_keyframes`` (N) keyframes, deterministically:

1. Each face frame ``j`` of the segment gets the chi-square distance between its histogram
   and the next face frame's (the last frame: to the previous one); frames without a face
   were already skipped, as the paper says.
2. N windows of ``2k + 1`` frames are placed with starts ``offset + round(m * spacing)``,
   ``m = 0..N-1``, where ``spacing = min(step, (n - 2k - 1) / (N - 1))`` for ``n`` face
   frames, and ``offset`` centres the windows in the segment. With enough frames (e.g. 60
   fps) the window moves on exactly ``step`` frames, as in the paper; with fewer (25-30 fps)
   the spacing shrinks just enough for N windows to cover the segment from its first
   frame to its last.
3. The keyframe of each window is its frame with the smallest distance (the earliest on
   a tie). At 25-30 fps the N windows overlap (they move on fewer than 4 frames), so two
   windows often share their minimum: taken independently (``rule="paper"``), the 16
   keyframes of a full 30 fps RAVDESS segment held only 10-12 distinct frames. The default
   ``rule="distinct"`` visits the windows in order and takes each window's minimum among
   the frames not chosen yet; a window whose frames are all taken gets the free frame
   nearest its centre (the later one on a tie: the windows move forward in time). A
   segment of at least N face frames thus always gives N distinct keyframes, returned in
   time order.

A segment with fewer than N face frames cannot give N distinct keyframes and keeps the
paper rule under both rules. With fewer than ``2k + 1`` face frames (a padded last
segment, a face lost for a while) it uses the widest odd window that fits,
``2 * floor((n - 1) / 2) + 1``; the windows then repeat frames, in time order, so the
segment is padded by repetition to N keyframes.
"""

from __future__ import annotations

from typing import get_args

import numpy as np

from avemotion.params.schema import ChiSquare, KeyframeRule

CHI_SQUARE_FORMS: tuple[str, ...] = get_args(ChiSquare)
KEYFRAME_RULES: tuple[str, ...] = get_args(KeyframeRule)


def gray_histograms(crops: np.ndarray, bins: int = 64) -> np.ndarray:
    """Normalised gray-level histograms of ``(n, H, W)`` uint8 crops: ``(n, bins)`` float64."""
    crops = np.asarray(crops, dtype=np.uint8)
    n = crops.shape[0]
    levels = (crops.reshape(n, -1).astype(np.int64) * bins) // 256
    flat = levels + (np.arange(n, dtype=np.int64) * bins)[:, None]
    counts = np.bincount(flat.ravel(), minlength=n * bins).reshape(n, bins).astype(np.float64)
    return counts / np.maximum(counts.sum(axis=1, keepdims=True), 1.0)


def chi_square(x: np.ndarray, y: np.ndarray, form: str = "standard") -> np.ndarray:
    """Chi-square distance between histograms along the last axis.

    ``form="standard"``: ``1/2 * sum((x - y)^2 / (x + y))``, the usual histogram distance.
    ``form="paper"``: ``1/2 * sum((x - y)^2 / (x + y)^2)`` as eq. 1 is printed. The squared
    denominator bounds every bin's term by 1 whatever its mass, so bins holding a handful
    of pixels weigh as much as the bulk of the face; the standard form weighs each bin by
    its mass and is the default. Bins empty in both histograms count 0.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    total = x + y
    if form == "standard":
        denominator = total
    elif form == "paper":
        denominator = total**2
    else:
        raise ValueError(f"chi_square form must be one of {CHI_SQUARE_FORMS}, not {form!r}")
    terms = np.divide((x - y) ** 2, denominator, out=np.zeros_like(total), where=total > 0)
    return 0.5 * terms.sum(axis=-1)


def frame_differences(histograms: np.ndarray, form: str = "standard") -> np.ndarray:
    """Each frame's histogram distance to the next frame (the last frame: to the previous).

    ``histograms`` is ``(n, bins)``; returns ``(n,)``; a single frame has difference 0.
    """
    n = len(histograms)
    if n < 2:
        return np.zeros(n)
    forward = chi_square(histograms[:-1], histograms[1:], form)
    return np.append(forward, forward[-1])


def window_starts(n_frames: int, n_keyframes: int = 16, k: int = 3, step: int = 4) -> np.ndarray:
    """Start indices ``(n_keyframes,)`` of the windows over ``n_frames`` frames (rule step 2).

    The windows are :func:`window_width` frames wide; starts never decrease.
    """
    if n_frames < 1:
        raise ValueError("a segment needs at least one face frame")
    width = window_width(n_frames, k)
    span = n_frames - width  # the last possible start
    if n_keyframes == 1:
        return np.array([span // 2])
    spacing = min(float(step), span / (n_keyframes - 1))
    offset = (span - spacing * (n_keyframes - 1)) / 2.0
    return np.floor(offset + spacing * np.arange(n_keyframes) + 0.5).astype(int)


def window_width(n_frames: int, k: int = 3) -> int:
    """``2k + 1``, or the widest odd width that fits ``n_frames`` frames."""
    return 2 * min(k, (n_frames - 1) // 2) + 1


def select_keyframes(
    differences: np.ndarray,
    n_keyframes: int = 16,
    k: int = 3,
    step: int = 4,
    rule: str = "distinct",
) -> np.ndarray:
    """Indices (into the segment's face frames) of its ``n_keyframes`` keyframes, in order.

    ``differences`` is :func:`frame_differences` of the segment's ``n`` face frames, shape
    ``(n,)``; returns ``(n_keyframes,)`` int64, non-decreasing. ``rule`` (one of
    :data:`KEYFRAME_RULES`, rule step 3 of the module docstring): ``"paper"`` takes each
    window's minimum on its own, so overlapping windows may repeat a frame;
    ``"distinct"`` never repeats a frame when ``n >= n_keyframes``.
    """
    if rule not in KEYFRAME_RULES:
        raise ValueError(f"keyframe rule must be one of {KEYFRAME_RULES}, not {rule!r}")
    differences = np.asarray(differences, dtype=np.float64)
    n = len(differences)
    starts = window_starts(n, n_keyframes, k, step)
    width = window_width(n, k)
    if rule == "paper" or n < n_keyframes:
        windows = np.lib.stride_tricks.sliding_window_view(differences, width)[starts]
        return starts + np.argmin(windows, axis=1)
    return np.sort(_distinct_minima(differences, starts, width))


def _distinct_minima(differences: np.ndarray, starts: np.ndarray, width: int) -> np.ndarray:
    """One frame per window, in window order, never one chosen before: ``(len(starts),)``.

    Each window takes its free frame with the smallest difference (the earliest on a tie);
    a window with no free frame takes the free frame nearest its centre (the later on a
    tie). Needs at least ``len(starts)`` frames.
    """
    taken = np.zeros(len(differences), dtype=bool)
    picks = np.empty(len(starts), dtype=np.int64)
    for m, start in enumerate(starts):
        free = start + np.flatnonzero(~taken[start : start + width])
        if free.size:
            pick = free[np.argmin(differences[free])]
        else:
            free = np.flatnonzero(~taken)[::-1]  # latest first: argmin keeps the later on a tie
            pick = free[np.argmin(np.abs(free - (start + width // 2)))]
        taken[pick] = True
        picks[m] = pick
    return picks
