"""The three images of a keyframe (paper section 2.1): mean-normalised gray, LBP and IDP.

All functions take a gray image ``(H, W)`` or a stack ``(..., H, W)`` of them and work on
the last two axes at once, so the 16 keyframes of a segment go through in one call.

- **Mean-normalised gray**: ``(g - mean(g)) / 255`` per image. Subtracting the image's own
  mean removes the brightness offset between clips; dividing by the fixed 255 (not by the
  image's standard deviation) keeps contrast differences between expressions and puts the
  channel in ``[-1, 1]``, the same scale as the two code channels.
- **LBP** (Ojala et al. 2002): 8 neighbours on a circle of radius 1, bit ``i`` set when the
  neighbour at angle ``i * 45`` degrees (counter-clockwise from the right, diagonals
  bilinearly interpolated, outside the image = 0) is >= the centre. Identical, value for
  value, to ``skimage.feature.local_binary_pattern(image, P=8, R=1, method="default")``.
- **IDP**: interlaced derivative patterns, see :func:`idp_codes`.

Codes are scaled by 1/255 when stacked, so all three channels span comparable ranges.
"""

from __future__ import annotations

import numpy as np

#: LBP neighbour offsets (row, col) exactly as scikit-image computes them for P=8, R=1:
#: ``-sin`` and ``cos`` of ``2*pi*i/8``, rounded to 5 decimals.
_LBP_ANGLES = 2 * np.pi * np.arange(8, dtype=np.float64) / 8
_LBP_ROWS = np.round(-1.0 * np.sin(_LBP_ANGLES), 5)
_LBP_COLS = np.round(1.0 * np.cos(_LBP_ANGLES), 5)

#: The 8 neighbours Z1..Z8 of Z0 in a 3x3 neighbourhood, clockwise from the top-left, as
#: (row, col) offsets (the numbering of Zhang et al. 2010 that IDP inherits).
IDP_NEIGHBOURS: tuple[tuple[int, int], ...] = (
    (-1, -1),
    (-1, 0),
    (-1, 1),
    (0, 1),
    (1, 1),
    (1, 0),
    (1, -1),
    (0, -1),
)
#: The four derivative directions (degrees) and the neighbour each one differences with:
#: I'_0(Z) = I(Z) - I(right), I'_45 = I(Z) - I(top-right), I'_90 = I(Z) - I(top),
#: I'_135 = I(Z) - I(top-left).
IDP_DIRECTIONS: dict[int, tuple[int, int]] = {0: (0, 1), 45: (-1, 1), 90: (-1, 0), 135: (-1, -1)}


def mean_normalised(gray: np.ndarray) -> np.ndarray:
    """``(g - mean(g)) / 255`` per image over the last two axes, as float32 in [-1, 1]."""
    gray = np.asarray(gray, dtype=np.float32)
    return (gray - gray.mean(axis=(-2, -1), keepdims=True)) / np.float32(255.0)


def lbp_image(gray: np.ndarray) -> np.ndarray:
    """LBP codes (P=8, R=1, ``default``) of ``(..., H, W)`` images, as uint8 of the same shape.

    Reproduces scikit-image's arithmetic step for step (same neighbour offsets, same
    bilinear interpolation order, constant 0 outside the image), so the codes are equal to
    ``skimage.feature.local_binary_pattern(image, 8, 1)`` for any input, vectorised.
    """
    image = np.asarray(gray, dtype=np.float64)
    height, width = image.shape[-2:]
    padded = np.pad(image, [(0, 0)] * (image.ndim - 2) + [(1, 1), (1, 1)])
    rows = np.arange(height, dtype=np.float64)[:, None]
    cols = np.arange(width, dtype=np.float64)[None, :]
    codes = np.zeros(image.shape, dtype=np.uint8)
    for bit, (row_offset, col_offset) in enumerate(zip(_LBP_ROWS, _LBP_COLS, strict=True)):
        r = rows + row_offset
        c = cols + col_offset
        min_r, max_r = np.floor(r), np.ceil(r)
        min_c, max_c = np.floor(c), np.ceil(c)
        dr, dc = r - min_r, c - min_c
        # +1: indices into the zero-padded image; neighbours are at most one pixel away.
        r0, r1 = min_r.astype(np.intp) + 1, max_r.astype(np.intp) + 1
        c0, c1 = min_c.astype(np.intp) + 1, max_c.astype(np.intp) + 1
        top = (1 - dc) * padded[..., r0, c0] + dc * padded[..., r0, c1]
        bottom = (1 - dc) * padded[..., r1, c0] + dc * padded[..., r1, c1]
        texture = (1 - dr) * top + dr * bottom
        codes |= ((texture - image) >= 0).astype(np.uint8) << bit
    return codes


def idp_codes(gray: np.ndarray) -> np.ndarray:
    """Interlaced derivative pattern codes in the four directions: ``(..., 4, H, W)`` uint8.

    IDP (Shobeirinejad and Gao, "Gender classification using interlaced derivative
    patterns", ICPR 2010, doi:10.1109/ICPR.2010.1118; used for emotion recognition by
    Muhammad and Alhamid 2017 and Hossain and Muhammad 2019) encodes how the first-order
    directional derivative of the image changes around a pixel, building on the local
    derivative pattern of Zhang, Gao, Zhao and Liu (IEEE TIP 19(2), 2010). For a direction
    ``a`` in 0, 45, 90, 135 degrees the first-order derivative is

        I'_a(Z) = I(Z) - I(Z + u_a),   u_0 = right, u_45 = top-right, u_90 = top, u_135 = top-left,

    and the code of pixel Z0 in direction ``a`` has one bit per neighbour Z1..Z8 (clockwise
    from the top-left, bit ``i - 1`` for Zi):

        bit_i = 1 if I'_a(Z0) * I'_a(Zi) <= 0 else 0,

    i.e. 1 where the derivative turns (changes sign, or vanishes) between the centre and
    that neighbour. Pixels outside the image take the value of the nearest border pixel.
    (The primary text was not retrievable in this project's reference search; this is
    the derivative-sign formulation that IDP and LDP share, as cited above.)
    """
    image = np.asarray(gray, dtype=np.int32)
    height, width = image.shape[-2:]
    lead = [(0, 0)] * (image.ndim - 2)
    # 2 pixels of edge padding: 1 for the neighbours Zi, 1 for the derivative's own step.
    padded = np.pad(image, [*lead, (2, 2), (2, 2)], mode="edge")
    out = np.zeros((*image.shape[:-2], 4, height, width), dtype=np.uint8)
    for d, (du_r, du_c) in enumerate(IDP_DIRECTIONS.values()):
        # derivative on the (H + 2, W + 2) ring that holds Z0 and all its neighbours
        inner = padded[..., 1 : height + 3, 1 : width + 3]
        shifted = padded[..., 1 + du_r : height + 3 + du_r, 1 + du_c : width + 3 + du_c]
        derivative = inner - shifted
        centre = derivative[..., 1 : height + 1, 1 : width + 1]
        for bit, (n_r, n_c) in enumerate(IDP_NEIGHBOURS):
            neighbour = derivative[..., 1 + n_r : height + 1 + n_r, 1 + n_c : width + 1 + n_c]
            out[..., d, :, :] |= ((centre * neighbour) <= 0).astype(np.uint8) << bit
    return out


def idp_image(gray: np.ndarray, combine: str = "vote") -> np.ndarray:
    """One IDP image per input image, ``(..., H, W)`` uint8, from the four directional codes.

    The paper feeds one IDP image per keyframe, IDP gives four. ``combine``:

    - ``"vote"`` (default): bit ``i`` is set when the derivative turns between Z0 and Zi in
      at least two of the four directions. The result is still an 8-bit pattern over the
      same 8 neighbours, so the channel reads like the LBP channel beside it.
    - ``"mean"``: the rounded mean of the four code values.
    """
    codes = idp_codes(gray)
    if combine == "mean":
        return np.rint(codes.mean(axis=-3)).astype(np.uint8)
    if combine != "vote":
        raise ValueError(f"idp combine must be 'vote' or 'mean', not {combine!r}")
    bits = np.unpackbits(codes[..., None], axis=-1, bitorder="little")  # (..., 4, H, W, 8)
    votes = bits.sum(axis=-4) >= 2  # (..., H, W, 8)
    return np.packbits(votes, axis=-1, bitorder="little")[..., 0]


def visual_channels(gray: np.ndarray, idp_combine: str = "vote") -> np.ndarray:
    """Stack ``[gray, LBP, IDP]`` of ``(..., H, W)`` uint8 images into ``(..., H, W, 3)`` float32.

    Gray is mean-normalised (in [-1, 1]); the LBP and IDP codes are divided by 255 (in [0, 1]).
    """
    gray = np.asarray(gray, dtype=np.uint8)
    return np.stack(
        [
            mean_normalised(gray),
            lbp_image(gray).astype(np.float32) / np.float32(255.0),
            idp_image(gray, idp_combine).astype(np.float32) / np.float32(255.0),
        ],
        axis=-1,
    )
