"""LBP against scikit-image, LBP and IDP of a patch worked out by hand."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from skimage.feature import local_binary_pattern

from avemotion.video.texture import (
    idp_codes,
    idp_image,
    lbp_image,
    mean_normalised,
    visual_channels,
)

RNG = np.random.default_rng(20240601)


@pytest.mark.parametrize("shape", [(1, 1), (2, 3), (7, 9), (33, 20), (64, 64)])
@pytest.mark.parametrize("levels", [256, 3])  # 3 levels: many ties and zeros
def test_lbp_matches_skimage_on_random_images(shape, levels):
    image = RNG.integers(0, levels, shape, dtype=np.uint8)
    expected = local_binary_pattern(image, P=8, R=1, method="default")
    assert np.array_equal(lbp_image(image), expected)


def test_lbp_matches_skimage_on_float_images_and_batches():
    images = RNG.random((3, 17, 23)) * 255
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # skimage warns about float input
        expected = np.stack([local_binary_pattern(im, 8, 1) for im in images])
    assert np.array_equal(lbp_image(images), expected)


# A 5x5 patch whose centre pixel's codes are worked out by hand. The inner 3x3 (rows and
# cols 1..3) is linear, I(r, c) = 100 + 10 (c - 2) + 20 (r - 2), so bilinear sampling there
# is exact; the outer ring breaks the linearity so that the derivatives turn.
PATCH = np.array(
    [
        [60, 75, 80, 85, 95],
        [95, 70, 80, 90, 90],
        [110, 90, 100, 110, 100],
        [0, 110, 120, 130, 140],  # (3, 0) and row 4 are used by neither of the centre's codes
        [255, 255, 255, 255, 255],
    ],
    dtype=np.uint8,
)

# LBP at the centre (2, 2), value 100. Neighbour i at angle 45i degrees, row offset -sin,
# col offset +cos (0.70711 on the diagonals); bit i set where neighbour >= 100.
#   i=0 (0, +1):   I(2,3) = 110 >= 100 -> 1
#   i=1 (-.707, +.707): sample (1.29289, 2.70711), cell rows 1-2, cols 2-3, dr = 0.29289,
#       dc = 0.70711: row 1 = 0.29289*80 + 0.70711*90 = 87.071, row 2 = 0.29289*100 +
#       0.70711*110 = 107.071, value = 0.70711*87.071 + 0.29289*107.071 = 92.929 -> 0
#   i=2 (-1, 0):   I(1,2) = 80 -> 0
#   i=3 (-.707, -.707): sample (1.29289, 1.29289), rows 1-2, cols 1-2, dr = dc = 0.29289:
#       row 1 = 0.70711*70 + 0.29289*80 = 72.929, row 2 = 0.70711*90 + 0.29289*100 =
#       92.929, value = 0.70711*72.929 + 0.29289*92.929 = 78.787 -> 0
#   i=4 (0, -1):   I(2,1) = 90 -> 0
#   i=5 (+.707, -.707): sample (2.70711, 1.29289), rows 2-3, cols 1-2, dr = 0.70711,
#       dc = 0.29289: row 2 = 92.929, row 3 = 0.70711*110 + 0.29289*120 = 112.929,
#       value = 0.29289*92.929 + 0.70711*112.929 = 107.071 -> 1
#   i=6 (+1, 0):   I(3,2) = 120 -> 1
#   i=7 (+.707, +.707): sample (2.70711, 2.70711), rows 2-3, cols 2-3, dr = dc = 0.70711:
#       row 2 = 0.29289*100 + 0.70711*110 = 107.071, row 3 = 0.29289*120 + 0.70711*130 =
#       127.071, value = 0.29289*107.071 + 0.70711*127.071 = 121.213 -> 1
# code = 1 + 32 + 64 + 128 = 225
LBP_CENTRE = 225

# IDP at the centre. I'_a(Z) = I(Z) - I(Z + u_a), u_0 = right, u_45 = top-right, u_90 = top,
# u_135 = top-left; neighbours Z1..Z8 clockwise from the top-left, bit i-1 for Zi:
#   Z1 (1,1)  Z2 (1,2)  Z3 (1,3)
#   Z8 (2,1)  Z0 (2,2)  Z4 (2,3)
#   Z7 (3,1)  Z6 (3,2)  Z5 (3,3)
# bit set where I'_a(Z0) * I'_a(Zi) <= 0. On the inner 3x3 the derivatives are -10 (0 deg),
# +10 (45), +20 (90), +30 (135); they differ where Z + u_a falls on the outer ring.
#  0 deg, I'_0(Z0) = 100 - 110 = -10. Only Z3, Z4, Z5 step out (to column 4):
#    Z3: 90 - I(1,4)=90 = 0 -> 1;  Z4: 110 - I(2,4)=100 = +10 -> 1;  Z5: 130 - 140 = -10 -> 0
#    others -10 -> 0.                                          code = 4 + 8 = 12
#  45 deg, I'_45(Z0) = 100 - I(1,3)=90 = +10:
#    Z1: 70 - I(0,2)=80 = -10 -> 1;  Z2: 80 - I(0,3)=85 = -5 -> 1;  Z3: 90 - I(0,4)=95 = -5 -> 1
#    Z4: 110 - I(1,4)=90 = +20 -> 0;  Z5: 130 - I(2,4)=100 = +30 -> 0
#    Z6, Z7, Z8 inner, +10 -> 0.                               code = 1 + 2 + 4 = 7
#  90 deg, I'_90(Z0) = 100 - I(1,2)=80 = +20:
#    Z1: 70 - I(0,1)=75 = -5 -> 1;  Z2: 80 - I(0,2)=80 = 0 -> 1;  Z3: 90 - I(0,3)=85 = +5 -> 0
#    Z4..Z8 inner, +20 -> 0.                                   code = 1 + 2 = 3
#  135 deg, I'_135(Z0) = 100 - I(1,1)=70 = +30:
#    Z1: 70 - I(0,0)=60 = +10 -> 0;  Z2: 80 - I(0,1)=75 = +5 -> 0;  Z3: 90 - I(0,2)=80 = +10 -> 0
#    Z8: 90 - I(1,0)=95 = -5 -> 1;  Z7: 110 - I(2,0)=110 = 0 -> 1
#    Z4, Z5, Z6 inner, +30 -> 0.                               code = 64 + 128 = 192
IDP_CENTRE = [12, 7, 3, 192]
# vote (a bit in >= 2 of the 4 codes): bit 0 in 45 and 90 -> 1; bit 1 in 45 and 90 -> 1;
# bit 2 in 0 and 45 -> 1; bit 3 only in 0, bits 6 and 7 only in 135 -> 0. code = 1 + 2 + 4 = 7
IDP_VOTE_CENTRE = 7
# mean: (12 + 7 + 3 + 192) / 4 = 53.5, rounded -> 54
IDP_MEAN_CENTRE = 54


def test_lbp_of_the_centre_by_hand():
    assert lbp_image(PATCH)[2, 2] == LBP_CENTRE
    assert local_binary_pattern(PATCH, P=8, R=1, method="default")[2, 2] == LBP_CENTRE


def test_idp_of_the_centre_by_hand():
    assert idp_codes(PATCH)[:, 2, 2].tolist() == IDP_CENTRE
    assert idp_image(PATCH, "vote")[2, 2] == IDP_VOTE_CENTRE
    assert idp_image(PATCH, "mean")[2, 2] == IDP_MEAN_CENTRE
    # the centre's codes read nothing outside the patch, nor the unused pixels
    changed = PATCH.copy()
    changed[3, 0] = 77
    changed[4] = 0
    assert idp_codes(changed)[:, 2, 2].tolist() == IDP_CENTRE
    padded = np.pad(PATCH, 3, constant_values=200)
    assert idp_codes(padded)[:, 5, 5].tolist() == IDP_CENTRE


def test_idp_image_combines_the_four_codes_bit_by_bit():
    image = RNG.integers(0, 4, (6, 7), dtype=np.uint8)  # 4 levels: many turns
    codes = idp_codes(image)
    vote = idp_image(image, "vote")
    mean = idp_image(image, "mean")
    for r in range(6):
        for c in range(7):
            four = [int(code) for code in codes[:, r, c]]
            bits = [sum((code >> i) & 1 for code in four) >= 2 for i in range(8)]
            assert vote[r, c] == sum(2**i for i, bit in enumerate(bits) if bit)
            assert mean[r, c] == round(sum(four) / 4)  # Python rounds half to even, as rint


def test_idp_image_rejects_an_unknown_combination():
    with pytest.raises(ValueError, match="vote"):
        idp_image(PATCH, "median")


def test_idp_works_on_batches():
    images = RNG.integers(0, 256, (2, 3, 8, 10), dtype=np.uint8)
    batch = idp_codes(images)
    assert batch.shape == (2, 3, 4, 8, 10)
    assert np.array_equal(batch[1, 2], idp_codes(images[1, 2]))


def test_idp_of_a_flat_image_turns_everywhere():
    # a zero derivative counts as a turn (product <= 0): every bit set
    assert np.all(idp_codes(np.full((5, 5), 7, dtype=np.uint8)) == 255)


def test_mean_normalised_is_zero_mean_and_scaled_by_255():
    image = RNG.integers(0, 256, (2, 16, 16), dtype=np.uint8)
    out = mean_normalised(image)
    assert out.dtype == np.float32
    assert np.allclose(out.mean(axis=(1, 2)), 0, atol=1e-6)
    expected = (image[0] - image[0].mean()) / 255
    assert np.allclose(out[0], expected, atol=1e-6)


def test_visual_channels_stack_gray_lbp_idp():
    images = RNG.integers(0, 256, (4, 12, 12), dtype=np.uint8)
    out = visual_channels(images)
    assert out.shape == (4, 12, 12, 3) and out.dtype == np.float32
    assert np.allclose(out[..., 1] * 255, lbp_image(images))
    assert np.allclose(out[..., 2] * 255, idp_image(images))
    assert out[..., 0].min() >= -1 and out[..., 1:].max() <= 1
