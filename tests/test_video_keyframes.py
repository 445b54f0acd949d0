"""Keyframe selection: hand-worked examples from the paper's text, and properties.

Paper, section 2.1: in a window of 2k + 1 frames (k = 3) the frame with the smallest
chi-square difference to the next frame is the keyframe; the window then moves on 4
frames; 16 keyframes per 2 s segment. The windows' starts are placed as the module
docstring says: ``spacing = min(step, (n - width) / (N - 1))``, centred in the segment,
each start rounded half up. The expected values below are worked out by hand in the
comments, never computed with the implementation.
"""

from __future__ import annotations

import numpy as np
import pytest

from avemotion.video.keyframes import (
    KEYFRAME_RULES,
    chi_square,
    frame_differences,
    gray_histograms,
    select_keyframes,
    window_starts,
    window_width,
)

RNG = np.random.default_rng(7)


def test_the_rules_are_named():
    assert KEYFRAME_RULES == ("distinct", "paper")
    with pytest.raises(ValueError, match="'distinct', 'paper'"):
        select_keyframes(np.zeros(20), 4, rule="other")


# 22 frames, N = 4 keyframes, k = 3 (width 7), step 4. The last possible start is
# 22 - 7 = 15; spacing = min(4, 15 / 3 = 5) = 4, as in the paper; offset = (15 - 3 * 4) / 2
# = 1.5; starts = floor(1.5 + 4m + 0.5) = 2, 6, 10, 14. Frames 0, 1 and 21 are in no window
# (their difference 0 is never seen).
#   frame  0  1  2  3  4  5  6  7  8  9 10 11 12 13 14 15 16 17 18 19 20 21
DIFF_22 = [0, 0, 5, 4, 6, 7, 2, 1, 2, 8, 9, 6, 5, 7, 4, 2, 3, 8, 6, 5, 9, 0]
# window 0, frames 2..8:   5 4 6 7 2 1 2 -> min 1 at frame 7
# window 1, frames 6..12:  2 1 2 8 9 6 5 -> min 1 at frame 7 again (paper: a duplicate);
#                          without 7: 2 at frames 6 and 8, the earliest -> 6 (distinct)
# window 2, frames 10..16: 9 6 5 7 4 2 3 -> min 2 at frame 15
# window 3, frames 14..20: 4 2 3 8 6 5 9 -> min 2 at frame 15 again (paper);
#                          without 15: 3 at frame 16 (distinct)
# distinct visits 7, 6, 15, 16 and returns them in time order.


def test_22_frames_by_hand():
    assert window_starts(22, 4, 3, 4).tolist() == [2, 6, 10, 14]
    assert select_keyframes(DIFF_22, 4, 3, 4, rule="paper").tolist() == [7, 7, 15, 15]
    assert select_keyframes(DIFF_22, 4, 3, 4, rule="distinct").tolist() == [6, 7, 15, 16]
    assert select_keyframes(DIFF_22, 4, 3, 4).tolist() == [6, 7, 15, 16]  # the default


# 16 frames, N = 4, k = 3: too few frames to move on 4 (that needs 7 + 3 * 4 = 19). The last
# start is 16 - 7 = 9; spacing = min(4, 9 / 3) = 3; offset 0; starts 0, 3, 6, 9: the windows
# overlap by 4 frames, as they do at 25-30 fps, and reach both ends of the segment.
#   frame  0  1  2  3  4  5  6  7  8  9 10 11 12 13 14 15
DIFF_16 = [9, 8, 7, 6, 5, 4, 0, 4, 5, 6, 7, 8, 9, 3, 9, 9]
# window 0, frames 0..6:   9 8 7 6 5 4 0 -> frame 6
# window 1, frames 3..9:   6 5 4 0 4 5 6 -> frame 6 (paper); without 6: 4 at frames 5 and 7,
#                          the earliest -> 5 (distinct)
# window 2, frames 6..12:  0 4 5 6 7 8 9 -> frame 6 (paper); without 6: 4 at 7 (distinct)
# window 3, frames 9..15:  6 7 8 9 3 9 9 -> frame 13


def test_16_frames_with_overlapping_windows_by_hand():
    assert window_starts(16, 4, 3, 4).tolist() == [0, 3, 6, 9]
    assert select_keyframes(DIFF_16, 4, 3, 4, rule="paper").tolist() == [6, 6, 6, 13]
    assert select_keyframes(DIFF_16, 4, 3, 4, rule="distinct").tolist() == [5, 6, 7, 13]


# 7 frames, N = 7, k = 1 (width 3): every frame must be a keyframe. The last start is 4;
# spacing = 4 / 6 = 2/3; starts = floor(0.5 + 2m/3) = floor(0.5, 1.17, 1.83, 2.5, 3.17, 3.83,
# 4.5) = 0, 1, 1, 2, 3, 3, 4.
#   frame  0  1  2  3  4  5  6
DIFF_7 = [0, 1, 9, 2, 3, 4, 9]
# paper:    [0,1,2] -> 0; [1,2,3] -> 1; [1,2,3] -> 1; [2,3,4] -> 3; [3,4,5] -> 3; [3,4,5] -> 3;
#           [4,5,6] -> 4.
# distinct: [0,1,2] -> 0; [1,2,3] -> 1; [1,2,3] free 2 (9), 3 (2) -> 3; [2,3,4] free 2 (9),
#           4 (3) -> 4; [3,4,5] free 5 -> 5; [3,4,5] all taken: the free frames 2 and 6 are
#           both 2 from the centre 4, the later -> 6; [4,5,6] all taken: the free frame
#           2 -> 2. In time order: 0..6.


def test_windows_whose_frames_are_all_taken_by_hand():
    assert window_starts(7, 7, 1, 4).tolist() == [0, 1, 1, 2, 3, 3, 4]
    assert select_keyframes(DIFF_7, 7, 1, 4, rule="paper").tolist() == [0, 1, 1, 3, 3, 3, 4]
    assert select_keyframes(DIFF_7, 7, 1, 4, rule="distinct").tolist() == [0, 1, 2, 3, 4, 5, 6]


# 60 frames (2 s at 30 fps), N = 16, k = 3. 16 windows moved by 4 would need 7 + 15 * 4 = 67
# frames; the last start is 60 - 7 = 53, spacing = 53 / 15 = 3.533, offset 0, and the
# starts floor(0.5 + 3.533m) are
#   m      0    1    2     3     4     5     6     7     8     9    10    11    12    13    14    15
#   +0.5 0.5 4.03 7.57 11.10 14.63 18.17 21.70 25.23 28.77 32.30 35.83 39.37 42.90 46.43 49.97 53.5
#   start  0    4    7    11    14    18    21    25    28    32    35    39    42    46    49    53
STARTS_60 = [0, 4, 7, 11, 14, 18, 21, 25, 28, 32, 35, 39, 42, 46, 49, 53]
# Differences: 0 at every 7th frame (6, 13, 20, ..., 55), frame j + 1 elsewhere. Every
# 7-frame window holds exactly one 0, so the paper picks the 0 of each window:
#   windows 0..6 and 4..10 -> 6; 7..13 and 11..17 -> 13; 14..20 and 18..24 -> 20; ...;
#   49..55 and 53..59 -> 55: 8 distinct frames out of 16, as on real 30 fps clips.
# distinct: the first window of each pair takes its 0; the second finds it taken and takes
# its free frame with the smallest j + 1, its first frame: 4, 11, 18, 25, 32, 39, 46, 53.
PAPER_60 = [6, 6, 13, 13, 20, 20, 27, 27, 34, 34, 41, 41, 48, 48, 55, 55]
DISTINCT_60 = [4, 6, 11, 13, 18, 20, 25, 27, 32, 34, 39, 41, 46, 48, 53, 55]


def test_60_frames_the_paper_rule_repeats_frames_and_distinct_does_not():
    frames = np.arange(60)
    differences = np.where(frames % 7 == 6, 0.0, frames + 1.0)
    assert window_starts(60, 16, 3, 4).tolist() == STARTS_60
    assert select_keyframes(differences, rule="paper").tolist() == PAPER_60
    assert select_keyframes(differences, rule="distinct").tolist() == DISTINCT_60


# 120 frames (2 s at 60 fps): enough for the paper's step. The last start is 113; spacing =
# min(4, 113 / 15) = 4; offset = (113 - 60) / 2 = 26.5; starts = floor(27 + 4m) = 27, 31, ...,
# 87: the window moves on exactly 4 frames and the 16 windows sit in the middle.
STARTS_120 = [27, 31, 35, 39, 43, 47, 51, 55, 59, 63, 67, 71, 75, 79, 83, 87]


@pytest.mark.parametrize("rule", KEYFRAME_RULES)
def test_120_frames_the_window_moves_on_step_frames_as_in_the_paper(rule):
    assert window_starts(120, 16, 3, 4).tolist() == STARTS_120
    # falling differences: each window's smallest is its last frame, start + 6
    chosen = select_keyframes(120.0 - np.arange(120), rule=rule)
    assert chosen.tolist() == [33, 37, 41, 45, 49, 53, 57, 61, 65, 69, 73, 77, 81, 85, 89, 93]


# Fewer face frames than keyframes: duplicates cannot be avoided and both rules keep the
# paper's windows, which repeat frames in time order. 3 frames, k = 3: the widest odd
# window that fits is 3, the last start 0, so all 4 windows are frames 0..2, whose smallest
# difference (1) is frame 1. 10 frames, N = 16: width 7, last start 3, spacing = 3 / 15 =
# 0.2, starts = floor(0.5 + 0.2m) for m = 0..15 = 0 0 0 1 1 1 1 1 2 2 2 2 2 3 3 3.
#   frame  0  1  2  3  4  5  6  7  8  9
DIFF_10 = [5, 6, 7, 4, 8, 9, 6, 3, 2, 7]
# windows 0..6 -> 3 (4); 1..7 -> 7 (3); 2..8 -> 8 (2); 3..9 -> 8 (2).


@pytest.mark.parametrize("rule", KEYFRAME_RULES)
def test_short_segments_repeat_frames_in_time_order(rule):
    assert select_keyframes([2.0, 1.0, 3.0], 4, 3, 4, rule=rule).tolist() == [1, 1, 1, 1]
    assert select_keyframes([0.5], 4, 3, 4, rule=rule).tolist() == [0, 0, 0, 0]
    starts = [0, 0, 0, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 3, 3, 3]
    assert window_starts(10, 16, 3, 4).tolist() == starts
    chosen = [3, 3, 3, 7, 7, 7, 7, 7, 8, 8, 8, 8, 8, 8, 8, 8]
    assert select_keyframes(DIFF_10, 16, 3, 4, rule=rule).tolist() == chosen


@pytest.mark.parametrize("n_frames", range(16, 81))
def test_properties_on_random_differences(n_frames):
    width = window_width(n_frames, 3)
    assert width == 7
    starts = window_starts(n_frames, 16, 3, 4)
    assert np.all(np.diff(starts) >= 0) and np.all(np.diff(starts) <= 4)
    assert starts[0] >= 0 and starts[-1] + width <= n_frames
    if n_frames <= 7 + 15 * 4:  # too few frames to move on 4: the windows reach both ends
        assert starts[0] == 0 and starts[-1] == n_frames - width
    for differences in (RNG.random(n_frames), RNG.integers(0, 3, n_frames).astype(float)):
        paper = select_keyframes(differences, 16, 3, 4, rule="paper")
        for start, index in zip(starts, paper, strict=True):
            window = differences[start : start + width].tolist()
            assert index == start + window.index(min(window))  # the earliest smallest
        distinct = select_keyframes(differences, 16, 3, 4, rule="distinct")
        assert np.all(np.diff(distinct) > 0)  # 16 distinct indices in time order
        # the i-th keyframe lies in the i-th window
        assert np.all(distinct >= starts) and np.all(distinct < starts + width)
        # a window's own minimum is either free when the window is visited, and taken, or
        # already taken: every frame the paper rule picks is also picked by distinct
        assert set(paper.tolist()) <= set(distinct.tolist())
        if len(set(paper.tolist())) == 16:  # nothing to resolve: the rules agree
            assert distinct.tolist() == paper.tolist()


def test_a_real_30_fps_like_sequence_keeps_16_distinct_keyframes():
    # a face-like sequence of 60 frames: a drifting gradient with noise and abrupt changes
    rng = np.random.default_rng(11)
    base = np.linspace(0, 200, 24 * 24).reshape(24, 24)
    images = []
    for j in range(60):
        noisy = base + 3 * j % 17 + 40 * (j % 13 == 0) + rng.normal(0, 6, base.shape)
        images.append(np.clip(noisy, 0, 255).astype(np.uint8))
    differences = frame_differences(gray_histograms(np.stack(images), bins=32))
    paper = select_keyframes(differences, rule="paper")
    distinct = select_keyframes(differences, rule="distinct")
    assert len(np.unique(paper)) < 16
    assert len(np.unique(distinct)) == 16


def test_frame_differences_by_hand():
    hists = np.array([[1.0, 0.0], [0.5, 0.5], [0.5, 0.5]])
    # frame 0 -> 1: 1/2 * (0.5^2 / 1.5 + 0.5^2 / 0.5) = 1/2 * (1/6 + 1/2) = 1/3; frame 1 -> 2: 0;
    # the last frame repeats the difference before it
    assert frame_differences(hists) == pytest.approx([1 / 3, 0.0, 0.0])
    assert frame_differences(hists[:1]).tolist() == [0.0]


def test_chi_square_forms():
    x = np.array([0.5, 0.5, 0.0, 0.0])
    y = np.array([0.25, 0.25, 0.5, 0.0])
    # standard: 1/2 * (2 * 0.25^2 / 0.75 + 0.5^2 / 0.5) = 1/2 * (1/6 + 1/2) = 1/3
    # paper:    1/2 * (2 * 0.25^2 / 0.75^2 + 0.5^2 / 0.5^2) = 1/2 * (2/9 + 1) = 11/18
    assert chi_square(x, y) == pytest.approx(1 / 3)
    assert chi_square(x, y, "paper") == pytest.approx(11 / 18)
    assert chi_square(x, x) == 0
    with pytest.raises(ValueError):
        chi_square(x, y, "other")


def test_gray_histograms_are_normalised_counts():
    crops = RNG.integers(0, 256, (3, 10, 10), dtype=np.uint8)
    hists = gray_histograms(crops, bins=16)
    assert hists.shape == (3, 16)
    assert np.allclose(hists.sum(axis=1), 1)
    assert np.allclose(hists[1], np.histogram(crops[1], bins=16, range=(0, 256))[0] / 100)
