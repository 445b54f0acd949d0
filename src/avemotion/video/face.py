"""Finding, smoothing and cropping the face (paper section 2.1, Viola-Jones).

The OpenCV Haar frontal-face cascade runs on the frame downscaled to ``detect_width``
pixels: detection cost grows with the image area, and the faces of the emotion corpora
fill a large part of the frame, so a 160 px wide frame still finds them (about 5 ms a
frame on one core, against about 13 ms at 320 px and 16 ms at 640 px). The box is mapped
back to full resolution and the crop is taken from the full-resolution frame.

With ``detect_every`` > 1 the detector runs on every Nth frame only, and the face is
followed in between by template matching of the last face patch (normalised
cross-correlation in a search area around the last box), which costs a fraction of a
millisecond. The boxes are smoothed over time (exponential smoothing of centre and size),
so that the crops do not jitter with the detector's few-pixel noise.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from avemotion.video.decode import GrayFrame

CASCADE = "haarcascade_frontalface_default.xml"


@dataclass(frozen=True)
class Box:
    """A square face box in full-frame pixels: centre (``cx``, ``cy``) and side ``size``."""

    cx: float
    cy: float
    size: float

    def scaled(self, factor: float) -> Box:
        return Box(self.cx * factor, self.cy * factor, self.size * factor)


@lru_cache(maxsize=4)
def _cascade(name: str) -> cv2.CascadeClassifier:
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + name)
    if cascade.empty():  # pragma: no cover - the file ships with opencv-python
        raise RuntimeError(f"OpenCV Haar cascade {name} not found in {cv2.data.haarcascades}")
    return cascade


class FaceDetector:
    """Viola-Jones frontal-face detector returning the largest face, on a downscaled frame."""

    def __init__(
        self,
        detect_width: int = 160,
        min_face_size: float = 0.1,
        scale_factor: float = 1.1,
        min_neighbors: int = 5,
    ):
        self.detect_width = detect_width
        self.min_face_size = min_face_size
        self.scale_factor = scale_factor
        self.min_neighbors = min_neighbors

    def downscale(self, gray: np.ndarray) -> tuple[np.ndarray, float]:
        """The frame at ``detect_width`` (never upscaled), and the factor small/full."""
        height, width = gray.shape
        factor = min(1.0, self.detect_width / width)
        if factor == 1.0:
            return gray, 1.0
        size = (self.detect_width, max(1, round(height * factor)))
        return cv2.resize(gray, size, interpolation=cv2.INTER_AREA), factor

    def detect_small(self, small: np.ndarray, near: Box | None = None) -> Box | None:
        """The largest face in an already downscaled frame, in that frame's pixels.

        With ``near`` (the last face, same pixels) the cascade first searches a window of
        twice that face's side around it, for faces of 0.7 to 1.4 times its size: a few
        scales over a small area instead of the whole pyramid over the whole frame. Only
        when that finds nothing is the whole frame searched.
        """
        if near is not None:
            found = self._search_near(small, near)
            if found is not None:
                return found
        side = max(1, int(self.min_face_size * small.shape[1]))
        return self._largest(small, (side, side), (0, 0), 0.0, 0.0)

    def _search_near(self, small: np.ndarray, near: Box) -> Box | None:
        x0, y0 = max(0, int(near.cx - near.size)), max(0, int(near.cy - near.size))
        x1 = min(small.shape[1], int(near.cx + near.size) + 1)
        y1 = min(small.shape[0], int(near.cy + near.size) + 1)
        smallest = max(1, int(0.7 * near.size))
        largest = int(1.4 * near.size) + 1
        if x1 - x0 < smallest or y1 - y0 < smallest:
            return None
        return self._largest(small[y0:y1, x0:x1], (smallest, smallest), (largest, largest), x0, y0)

    def _largest(self, image, min_size, max_size, dx: float, dy: float) -> Box | None:
        faces = _cascade(CASCADE).detectMultiScale(
            image,
            scaleFactor=self.scale_factor,
            minNeighbors=self.min_neighbors,
            minSize=min_size,
            maxSize=max_size,
        )
        if len(faces) == 0:
            return None
        x, y, w, h = max(faces, key=lambda f: int(f[2]) * int(f[3]))
        return Box(dx + x + w / 2.0, dy + y + h / 2.0, float(np.sqrt(w * h)))

    def detect(self, gray: np.ndarray) -> Box | None:
        """The largest face of a full-resolution frame, in full-resolution pixels."""
        small, factor = self.downscale(gray)
        box = self.detect_small(small)
        return None if box is None else box.scaled(1.0 / factor)


def track(small: np.ndarray, template: np.ndarray, box: Box, min_score: float = 0.6) -> Box | None:
    """Follow a face patch into the next (downscaled) frame by template matching.

    Searches a window of twice the box side around the last box; returns the box at the
    best match, or None when the best normalised correlation is below ``min_score``.
    """
    t_h, t_w = template.shape
    x0 = int(max(0, round(box.cx - box.size)))
    y0 = int(max(0, round(box.cy - box.size)))
    x1 = int(min(small.shape[1], round(box.cx + box.size)))
    y1 = int(min(small.shape[0], round(box.cy + box.size)))
    area = small[y0:y1, x0:x1]
    if area.shape[0] < t_h or area.shape[1] < t_w:
        return None
    scores = cv2.matchTemplate(area, template, cv2.TM_CCOEFF_NORMED)
    _, best, _, (bx, by) = cv2.minMaxLoc(scores)
    if not np.isfinite(best) or best < min_score:
        return None
    return Box(x0 + bx + t_w / 2.0, y0 + by + t_h / 2.0, box.size)


class BoxSmoother:
    """Exponential smoothing of box centre and size: ``s = a * s_prev + (1 - a) * observed``.

    ``weight`` is ``a`` (0 = no smoothing). A box whose centre jumps by more than half the
    face size (another face, a cut) restarts the smoothing instead of gliding to it.
    """

    def __init__(self, weight: float = 0.6):
        self.weight = weight
        self.state: Box | None = None

    def update(self, box: Box) -> Box:
        prev = self.state
        if prev is None or np.hypot(box.cx - prev.cx, box.cy - prev.cy) > 0.5 * prev.size:
            self.state = box
        else:
            a = self.weight
            self.state = Box(
                a * prev.cx + (1 - a) * box.cx,
                a * prev.cy + (1 - a) * box.cy,
                a * prev.size + (1 - a) * box.size,
            )
        return self.state


def face_boxes(
    frames: Iterable[GrayFrame],
    detector: FaceDetector,
    detect_every: int = 1,
    smoothing: float = 0.6,
    search_near_last: bool = True,
) -> Iterator[tuple[GrayFrame, Box | None]]:
    """Pair each frame with its smoothed face box (full-frame pixels), or None if no face.

    The detector runs on frames 0, N, 2N, ... (``N = detect_every``) and on any frame after
    the face was lost; frames in between are tracked from the previous frame. With
    ``search_near_last`` the detector looks near the previous frame's face first.
    """
    smoother = BoxSmoother(smoothing)
    template: np.ndarray | None = None
    last_small: Box | None = None
    for i, frame in enumerate(frames):
        small, factor = detector.downscale(frame.image)
        if template is not None and last_small is not None and i % detect_every != 0:
            found = track(small, template, last_small)
        else:
            found = detector.detect_small(small, last_small if search_near_last else None)
        if found is None:
            template, last_small = None, None
            yield frame, None
            continue
        last_small = found
        if detect_every > 1:
            template = _patch(small, found)
        yield frame, smoother.update(found.scaled(1.0 / factor))


def _patch(image: np.ndarray, box: Box) -> np.ndarray | None:
    half = box.size / 2.0
    x0, y0 = int(max(0, round(box.cx - half))), int(max(0, round(box.cy - half)))
    x1 = int(min(image.shape[1], round(box.cx + half)))
    y1 = int(min(image.shape[0], round(box.cy + half)))
    patch = image[y0:y1, x0:x1]
    return patch.copy() if patch.size and min(patch.shape) >= 4 else None


def crop_face(gray: np.ndarray, box: Box, margin: float, size: int) -> np.ndarray:
    """Square crop around ``box`` widened by ``margin`` (fraction of the side, each side),
    resized to ``size`` x ``size`` uint8. Parts outside the frame repeat the border pixels."""
    side = max(2.0, box.size * (1.0 + 2.0 * margin))
    x0 = round(box.cx - side / 2.0)
    y0 = round(box.cy - side / 2.0)
    n = round(side)
    height, width = gray.shape
    cx0, cy0 = max(0, x0), max(0, y0)
    cx1, cy1 = min(width, x0 + n), min(height, y0 + n)
    if cx1 <= cx0 or cy1 <= cy0:
        patch = np.full((n, n), int(np.median(gray)), dtype=np.uint8)
    else:
        patch = gray[cy0:cy1, cx0:cx1]
        pads = (cy0 - y0, y0 + n - cy1, cx0 - x0, x0 + n - cx1)
        if any(pads):
            patch = cv2.copyMakeBorder(patch, *pads, borderType=cv2.BORDER_REPLICATE)
    interpolation = cv2.INTER_AREA if n >= size else cv2.INTER_LINEAR
    return cv2.resize(patch, (size, size), interpolation=interpolation)
