"""Stage ``extract_keyframes``: index -> per-segment face keyframes (paper section 2.1).

Each clip is decoded once (:mod:`.decode`), its face found and cropped (:mod:`.face`) and,
per analysis segment, its keyframes chosen (:mod:`.keyframes`); a row of ``keyframes.h5``
holds a segment's ``n_keyframes`` equalised gray face crops ``(N, K, K)`` uint8. The
``[gray, LBP, IDP]`` tensors are made from them by :mod:`.tensors`.

Segments come from :func:`avemotion.segments.segment_starts` on the video stream's own
length in the index (``video_duration_s``), so segment ``i`` spans the same time as in
the audio branch, and a video that ends before its audio keeps the segments it covers.
A segment in which no frame shows a face has no keyframes and no row (the fusion stage
pairs rows by clip and segment); a clip is rejected, with its reason, when it has no
decodable video, stops well before its stream's indexed length (truncated), shows a face
in too few frames, or has no segment at all.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
import pandas as pd

from avemotion.clip_stage import ClipJob, ClipResult, ClipStage, clip_jobs, run_clip_stage
from avemotion.errors import BadInputError
from avemotion.h5store import KEYFRAMES_COMPRESSION, clip_rows
from avemotion.parallel import Workers, map_clips
from avemotion.params import Params
from avemotion.params.schema import VideoParams
from avemotion.segments import SegmentParams
from avemotion.video.decode import DecodeStats, gray_frames
from avemotion.video.face import FaceDetector, crop_face, face_boxes
from avemotion.video.keyframes import frame_differences, gray_histograms, select_keyframes

KEYFRAMES_STAGE = "extract_keyframes"


@dataclass
class ClipKeyframes:
    """One clip's keyframes: ``keyframes`` (n_segments, N, K, K) uint8, their segment
    numbers and start times, and what decoding met on the way."""

    keyframes: np.ndarray
    segments: np.ndarray
    starts_s: np.ndarray
    n_frames: int
    n_face_frames: int
    n_corrupt_packets: int
    n_segments_without_face: int


def clip_keyframes(
    path: str | Path,
    duration_s: float,
    video: VideoParams | None = None,
    segments: SegmentParams | None = None,
) -> ClipKeyframes:
    """Decode, find the face and choose the keyframes of every analysis segment of a clip.

    ``duration_s`` is the video stream's length in the index; ``video`` and ``segments``
    default to the documented defaults. Raises
    :class:`BadInputError` with the reason when the clip cannot give keyframes.
    """
    video = VideoParams() if video is None else video
    segments = SegmentParams() if segments is None else segments
    starts = segments.starts(duration_s)
    if len(starts) == 0:
        raise BadInputError(segments.no_segment_reason(duration_s), path)
    ends = starts + segments.segment_s
    crops: list[list[np.ndarray]] = [[] for _ in starts]
    chosen: list[np.ndarray | None] = [None] * len(starts)
    n_open_from = 0  # segments before this index are finished
    stats = DecodeStats()
    detector = FaceDetector(
        video.detect_width, video.min_face_size, video.scale_factor, video.min_neighbors
    )
    n_face = 0
    for frame, box in face_boxes(
        gray_frames(path, stats),
        detector,
        video.detect_every,
        video.box_smoothing,
        video.search_near_last,
    ):
        t = frame.time_s
        while n_open_from < len(starts) and t >= ends[n_open_from]:
            chosen[n_open_from] = _segment_keyframes(crops[n_open_from], video)
            crops[n_open_from] = []
            n_open_from += 1
        if box is None:
            continue
        n_face += 1
        crop = None
        for i in range(n_open_from, len(starts)):
            if starts[i] > t:
                break
            if t < ends[i]:
                if crop is None:
                    crop = crop_face(frame.image, box, video.margin, video.keyframe_size)
                crops[i].append(crop)
    for i in range(n_open_from, len(starts)):
        chosen[i] = _segment_keyframes(crops[i], video)
    _check_decoded(path, duration_s, stats, n_face, video)
    keep = [i for i, keyframes in enumerate(chosen) if keyframes is not None]
    if not keep:
        raise BadInputError("no analysis segment has a frame with a face", path)
    return ClipKeyframes(
        keyframes=np.stack([chosen[i] for i in keep]),
        segments=np.asarray(keep, dtype=np.int32),
        starts_s=starts[keep],
        n_frames=stats.n_frames,
        n_face_frames=n_face,
        n_corrupt_packets=stats.n_corrupt_packets,
        n_segments_without_face=len(starts) - len(keep),
    )


def _segment_keyframes(crops: list[np.ndarray], video: VideoParams) -> np.ndarray | None:
    """(N, K, K) equalised keyframes from a segment's raw face crops; None without crops.

    Histograms are taken of the crops before equalisation: equalised histograms are all
    nearly flat and would not tell frames apart.
    """
    if not crops:
        return None
    stack = np.stack(crops)
    differences = frame_differences(gray_histograms(stack, video.hist_bins), video.chi_square)
    indices = select_keyframes(
        differences, video.n_keyframes, video.k, video.step, rule=video.keyframe_rule
    )
    return np.stack([cv2.equalizeHist(stack[i]) for i in indices])


def _check_decoded(
    path: str | Path, duration_s: float, stats: DecodeStats, n_face: int, video: VideoParams
) -> None:
    why = f" ({stats.stopped_early})" if stats.stopped_early else ""
    corrupt = f", {stats.n_corrupt_packets} corrupt packets" if stats.n_corrupt_packets else ""
    if stats.n_frames == 0:
        raise BadInputError(f"no decodable video frame{why}{corrupt}", path)
    decoded_s = (stats.last_time_s or 0.0) + stats.frame_period_s
    if duration_s - decoded_s > video.max_missing_s:
        raise BadInputError(
            f"video decodes to {decoded_s:.2f} s of the {duration_s:.2f} s the index records "
            "for the video stream, more "
            f"than video.max_missing_s={video.max_missing_s} short (truncated file?){why}{corrupt}",
            path,
        )
    fraction = n_face / stats.n_frames
    if fraction < video.min_face_fraction:
        raise BadInputError(
            f"face found in {n_face} of {stats.n_frames} frames ({fraction:.0%}), "
            f"below video.min_face_fraction={video.min_face_fraction}",
            path,
        )


# --------------------------------------------------------------------------- the stage


def _extract_task(job: ClipJob, video: VideoParams, segments: SegmentParams) -> ClipResult:
    """One clip in a worker: its keyframe rows, or the reason it has none (never an
    exception for bad input)."""
    result = ClipResult(job.clip_id, job.path)
    if not job.has_stream:
        result.reject = "no video stream (has_video is false in the index)"
        return result
    try:
        clip = clip_keyframes(job.path, job.duration_s, video, segments)
    except BadInputError as error:
        result.reject = error.reason
        return result
    except av.FFmpegError as error:
        result.reject = f"video decoding failed ({str(error).strip()[:160]})"
        return result
    result.x = clip.keyframes
    result.rows = clip_rows(job, clip.segments, clip.starts_s)
    result.counts = {
        "frames": clip.n_frames,
        "face_frames": clip.n_face_frames,
        "corrupt_packets": clip.n_corrupt_packets,
        "segments_without_face": clip.n_segments_without_face,
    }
    return result


def extract_keyframes(
    index: pd.DataFrame,
    params: Params,
    out_path: str | Path,
    rejects_path: str | Path,
) -> dict[str, Any]:
    """Stage ``extract_keyframes``: every clip of ``index`` -> segment rows in ``out_path``.

    Clips run in parallel on ``base.n_jobs`` processes (or on a Dask cluster,
    ``base.backend``) and are written in index order as
    they finish (:func:`avemotion.clip_stage.run_clip_stage`). Returns the counts.
    """
    video = params.video
    segments = SegmentParams.from_params(params)
    if index["clip_id"].duplicated().any():
        raise BadInputError("index has repeated clip_id values")
    attrs = {
        "stage": KEYFRAMES_STAGE,
        "params": {"video": video.model_dump(), "base": asdict(segments)},
    }
    item_shape = (video.n_keyframes, video.keyframe_size, video.keyframe_size)
    stage = ClipStage(KEYFRAMES_STAGE, "video", item_shape, np.uint8, attrs, KEYFRAMES_COMPRESSION)
    work = functools.partial(_extract_task, video=video, segments=segments)
    workers = Workers.from_params(params.base)
    results = map_clips(work, clip_jobs(index, "video", augment=False), workers, desc="keyframes")
    return run_clip_stage(
        stage, params.base.modalities, len(index), results, out_path, rejects_path
    )
