"""Keyframe selection: the documented rule against brute force, and its counts."""

from __future__ import annotations

import math

import numpy as np
import pytest

from avemotion.video.keyframes import (
    chi_square,
    frame_differences,
    gray_histograms,
    select_keyframes,
    window_starts,
)

RNG = np.random.default_rng(7)


def _brute_force(
    images: list[np.ndarray], n_keyframes: int, k: int, step: int, bins: int
) -> list[int]:
    """The rule of avemotion.video.keyframes, written out with loops and np.histogram."""
    hists = []
    for image in images:
        counts, _ = np.histogram(image, bins=bins, range=(0, 256))
        hists.append(counts / counts.sum())

    def chi2(x, y):
        return 0.5 * sum((a - b) ** 2 / (a + b) for a, b in zip(x, y, strict=True) if a + b > 0)

    n = len(images)
    diff = [chi2(hists[j], hists[j + 1]) for j in range(n - 1)]
    diff.append(diff[-1] if diff else 0.0)
    half = min(k, (n - 1) // 2)
    width = 2 * half + 1
    span = n - width
    spacing = min(step, span / (n_keyframes - 1))
    offset = (span - spacing * (n_keyframes - 1)) / 2
    chosen = []
    for m in range(n_keyframes):
        start = math.floor(offset + spacing * m + 0.5)
        best = start
        for j in range(start, start + width):
            if diff[j] < diff[best]:
                best = j
        chosen.append(best)
    return chosen


@pytest.mark.parametrize("n_frames", [1, 2, 5, 7, 8, 23, 50, 60, 75, 130])
def test_selection_matches_brute_force_on_a_synthetic_sequence(n_frames):
    # a face-like sequence: a drifting gradient with noise and a few abrupt changes
    base = np.linspace(0, 200, 24 * 24).reshape(24, 24)
    images = []
    for j in range(n_frames):
        jump = 40 * (j % 13 == 0)
        noisy = base + 3 * j % 17 + jump + RNG.normal(0, 6, base.shape)
        images.append(np.clip(noisy, 0, 255).astype(np.uint8))
    differences = frame_differences(gray_histograms(np.stack(images), bins=32))
    chosen = select_keyframes(differences, n_keyframes=16, k=3, step=4)
    assert chosen.tolist() == _brute_force(images, 16, 3, 4, bins=32)


@pytest.mark.parametrize("fps", [25, 30, 29.97, 15])
def test_a_full_segment_always_gives_n_keyframes_covering_it(fps):
    n = int(2.0 * fps)
    chosen = select_keyframes(RNG.random(n), n_keyframes=16, k=3, step=4)
    assert len(chosen) == 16
    assert np.all(np.diff(chosen) >= 0)
    starts = window_starts(n, 16, 3, 4)
    assert starts[0] == 0 and starts[-1] == n - 7  # windows reach both ends of the segment


def test_with_many_frames_the_window_moves_on_step_frames_as_in_the_paper():
    starts = window_starts(120, 16, 3, 4)  # 60 fps
    assert np.all(np.diff(starts) == 4)
    assert starts[0] == (120 - 7 - 15 * 4) // 2 or starts[0] == (120 - 7 - 15 * 4 + 1) // 2


def test_each_keyframe_is_the_minimum_of_its_window():
    differences = RNG.random(50)
    chosen = select_keyframes(differences, 16, 3, 4)
    for start, index in zip(window_starts(50, 16, 3, 4), chosen, strict=True):
        assert start <= index < start + 7
        assert differences[index] == differences[start : start + 7].min()


def test_chi_square_forms():
    x = np.array([0.5, 0.5, 0.0, 0.0])
    y = np.array([0.25, 0.25, 0.5, 0.0])
    standard = 0.5 * (0.25**2 / 0.75 * 2 + 0.25 / 0.5)
    paper = 0.5 * (0.25**2 / 0.75**2 * 2 + 0.25 / 0.25)
    assert chi_square(x, y) == pytest.approx(standard)
    assert chi_square(x, y, "paper") == pytest.approx(paper)
    assert chi_square(x, x) == 0
    with pytest.raises(ValueError):
        chi_square(x, y, "other")


def test_gray_histograms_are_normalised_counts():
    crops = RNG.integers(0, 256, (3, 10, 10), dtype=np.uint8)
    hists = gray_histograms(crops, bins=16)
    assert hists.shape == (3, 16)
    assert np.allclose(hists.sum(axis=1), 1)
    assert np.allclose(hists[1], np.histogram(crops[1], bins=16, range=(0, 256))[0] / 100)
