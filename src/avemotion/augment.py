"""The paper's data augmentation: rotated faces and noisy voices (section 3.3).

Augmented copies are made only for clips on the training side of at least one fold
(:func:`avemotion.splits.augment_mask`), and :func:`avemotion.splits.test_rows` never
selects an augmented row, so no test segment is ever augmented.
"""

from __future__ import annotations

import zlib

import cv2
import numpy as np


def rotate_image(image: np.ndarray, angle_deg: float) -> np.ndarray:
    """Rotate an image (H, W) or (H, W, C) about its centre by ``angle_deg`` (counter-clockwise).

    The corners uncovered by the rotation are filled by reflecting the border, so that a
    rotated face crop has no black wedges for the LBP and IDP images to latch onto.
    Rotation by 0 returns an identical copy.
    """
    if angle_deg % 360 == 0:
        return image.copy()
    height, width = image.shape[:2]
    matrix = cv2.getRotationMatrix2D(((width - 1) / 2.0, (height - 1) / 2.0), angle_deg, 1.0)
    return cv2.warpAffine(
        image, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101
    )


def add_white_noise(signal: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """Add white Gaussian noise so that ``signal``'s power over the noise's is ``snr_db``.

    The noise is rescaled to the exact target power after drawing, so the measured SNR of
    the result equals ``snr_db`` (up to float rounding), not just in expectation. A silent
    signal has no power to scale to and is returned unchanged.
    """
    signal = np.asarray(signal, dtype=np.float64)
    signal_power = float(np.mean(signal**2))
    if signal_power == 0.0:
        return signal.copy()
    noise = rng.standard_normal(signal.shape)
    noise *= np.sqrt(signal_power / 10 ** (snr_db / 10) / np.mean(noise**2))
    return signal + noise


def clip_rng(seed: int, clip_id: str, purpose: str) -> np.random.Generator:
    """A random generator fixed by the seed, the clip and what it is for.

    Clips are processed in parallel in any order; deriving each clip's generator from its
    id keeps the output the same whatever the scheduling.
    """
    return np.random.default_rng([seed, zlib.crc32(f"{purpose}:{clip_id}".encode())])
