"""LBP against scikit-image, IDP against a loop-by-loop reading of its formula."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from skimage.feature import local_binary_pattern

from avemotion.video.texture import (
    IDP_DIRECTIONS,
    IDP_NEIGHBOURS,
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


def _idp_loops(image: np.ndarray) -> np.ndarray:
    """IDP codes as the formula reads, one pixel and one bit at a time: (4, H, W)."""
    height, width = image.shape

    def value(r: int, c: int) -> int:  # nearest border pixel outside the image
        return int(image[min(max(r, 0), height - 1), min(max(c, 0), width - 1)])

    def derivative(direction: int, r: int, c: int) -> int:
        dr, dc = IDP_DIRECTIONS[direction]
        return value(r, c) - value(r + dr, c + dc)

    codes = np.zeros((4, height, width), dtype=np.uint8)
    for d, direction in enumerate((0, 45, 90, 135)):
        for r in range(height):
            for c in range(width):
                centre = derivative(direction, r, c)
                code = 0
                for i, (nr, nc) in enumerate(IDP_NEIGHBOURS):
                    if centre * derivative(direction, r + nr, c + nc) <= 0:
                        code += 2**i
                codes[d, r, c] = code
    return codes


@pytest.mark.parametrize(
    "shape,levels", [((9, 11), 256), ((6, 5), 4), ((1, 4), 256), ((12, 12), 2)]
)
def test_idp_matches_loop_implementation_on_random_images(shape, levels):
    image = RNG.integers(0, levels, shape, dtype=np.uint8)
    expected = _idp_loops(image)
    assert np.array_equal(idp_codes(image), expected)
    # the combined image: a neighbour's bit is set when it turns in >= 2 of the 4 directions
    bits = (expected[..., None] >> np.arange(8)) & 1  # (4, H, W, 8)
    vote = ((bits.sum(axis=0) >= 2) * (2 ** np.arange(8))).sum(axis=-1)
    assert np.array_equal(idp_image(image, "vote"), vote)
    assert np.array_equal(idp_image(image, "mean"), np.rint(expected.mean(axis=0)))


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
