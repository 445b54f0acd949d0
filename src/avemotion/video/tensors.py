"""Stage ``build_visual_tensors``: keyframes -> the 3D-CNN's ``[gray, LBP, IDP]`` tensors.

Each keyframe becomes three images (:mod:`avemotion.video.texture`) at ``input_size``;
training-side clips (:func:`avemotion.splits.augment_mask`) also get one rotated copy per
``augment.rotation_deg`` angle, written right after the clip's original rows and marked
``augmented=True``, ``augmentation="rot<angle>"``. Test rows are never augmented.
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import h5py
import numpy as np

from avemotion.augment import rotate_image
from avemotion.errors import BadInputError
from avemotion.h5store import VISUAL_TENSORS_COMPRESSION, SegmentWriter, read_attrs, read_meta
from avemotion.parallel import Workers, map_clips
from avemotion.params import Params
from avemotion.params.schema import VideoParams
from avemotion.splits import augment_mask
from avemotion.video.texture import visual_channels

TENSORS_STAGE = "build_visual_tensors"


def keyframe_tensor(
    keyframes: np.ndarray, input_size: int, idp_combine: str = "vote", angle_deg: float = 0.0
) -> np.ndarray:
    """``(N, K, K)`` uint8 keyframes -> ``(N, S, S, 3)`` float32 ``[gray, LBP, IDP]`` images.

    A rotated copy rotates the K x K crop first (:func:`avemotion.augment.rotate_image`),
    then resizes, then computes LBP and IDP from the rotated image. The gray crop is resized
    to ``S = input_size`` before LBP and IDP are computed, because codes are labels, not
    intensities, and must not be interpolated.
    """
    frames = np.asarray(keyframes, dtype=np.uint8)
    if angle_deg % 360:
        frames = np.stack([rotate_image(frame, angle_deg) for frame in frames])
    if frames.shape[-1] != input_size:
        interpolation = cv2.INTER_AREA if frames.shape[-1] > input_size else cv2.INTER_LINEAR
        frames = np.stack(
            [cv2.resize(f, (input_size, input_size), interpolation=interpolation) for f in frames]
        )
    return visual_channels(frames, idp_combine)


@dataclass(frozen=True)
class _TensorTask:
    start: int
    stop: int
    angles: tuple[float, ...]


def _tensor_task(task: _TensorTask, keyframes_path: str, video: VideoParams) -> np.ndarray:
    """One clip's rows [start, stop): originals, then one block per angle, stacked."""
    with h5py.File(keyframes_path, "r") as handle:
        keyframes = handle["x"][task.start : task.stop]
    blocks = [
        np.stack([keyframe_tensor(k, video.input_size, video.idp_combine, a) for k in keyframes])
        for a in (0.0, *task.angles)
    ]
    return np.concatenate(blocks).astype(video.dtype)


def build_visual_tensors(
    keyframes_path: str | Path, params: Params, out_path: str | Path
) -> dict[str, Any]:
    """Stage ``build_visual_tensors``: keyframes.h5 -> video.h5 with rotated copies.

    Rotated copies (``augment.rotation_deg``) are made only for clips that
    :func:`avemotion.splits.augment_mask` allows (the training side of some fold), and are
    marked ``augmented=True``, ``augmentation="rot<angle>"``. Returns a summary of counts.
    """
    video = params.video
    angles = tuple(params.augment.rotation_deg)
    workers = Workers.from_params(params.base)
    keyframes_path = Path(keyframes_path)
    if not keyframes_path.is_file():
        raise BadInputError("not found; run the extract_keyframes stage first", keyframes_path)
    meta = read_meta(keyframes_path)
    has_video = "video" in params.base.modalities
    if len(meta["clip_id"]) == 0 and has_video:
        raise BadInputError("has no segment rows", keyframes_path)
    with h5py.File(keyframes_path, "r") as handle:
        n_keyframes = handle["x"].shape[1]
    allowed = augment_mask(meta["fold"])
    tasks = []
    clip_ids = meta["clip_id"]
    bounds = np.flatnonzero(np.r_[True, clip_ids[1:] != clip_ids[:-1], True])
    bounds = bounds if len(clip_ids) else np.array([], dtype=np.int64)  # audio-only run
    for start, stop in itertools.pairwise(bounds):
        tasks.append(_TensorTask(int(start), int(stop), angles if allowed[start] else ()))
    attrs = {
        "stage": TENSORS_STAGE,
        "params": {
            "video": video.model_dump(),
            "augment": {"rotation_deg": list(angles)},
            "keyframes": read_attrs(keyframes_path).get("params"),
        },
        "channels": "gray,lbp,idp",
    }
    item_shape = (n_keyframes, video.input_size, video.input_size, 3)
    summary = {"segments": 0, "augmented": 0}
    work = functools.partial(_tensor_task, keyframes_path=str(keyframes_path), video=video)
    with SegmentWriter(
        out_path, item_shape, np.dtype(video.dtype), attrs, VISUAL_TENSORS_COMPRESSION
    ) as writer:
        results = map_clips(work, tasks, workers, desc="tensors")
        for task, tensors in zip(tasks, results, strict=True):
            rows = {column: list(values[task.start : task.stop]) for column, values in meta.items()}
            out_rows = {column: list(values) for column, values in rows.items()}
            for angle in task.angles:
                for column, values in rows.items():
                    out_rows[column].extend(values)
                n = task.stop - task.start
                out_rows["augmented"][-n:] = [True] * n
                out_rows["augmentation"][-n:] = [f"rot{angle:g}"] * n
            writer.append(tensors, out_rows)
            summary["segments"] += task.stop - task.start
            summary["augmented"] += (task.stop - task.start) * len(task.angles)
    return summary
