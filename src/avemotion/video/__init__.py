"""The video branch's front-end (paper section 2.1): decode, face, keyframes, texture images.

``extract_keyframes`` and ``build_visual_tensors`` are the two DVC stages' functions; the
modules below hold one idea each, named as the paper names it.
"""

from avemotion.video.decode import DecodeStats, GrayFrame, gray_frames
from avemotion.video.face import BoxSmoother, FaceDetector, crop_face, face_boxes
from avemotion.video.frontend import ClipKeyframes, clip_keyframes, extract_keyframes
from avemotion.video.keyframes import (
    chi_square,
    frame_differences,
    gray_histograms,
    select_keyframes,
    window_starts,
)
from avemotion.video.tensors import build_visual_tensors, keyframe_tensor
from avemotion.video.texture import (
    idp_codes,
    idp_image,
    lbp_image,
    mean_normalised,
    visual_channels,
)

__all__ = [
    "BoxSmoother",
    "ClipKeyframes",
    "DecodeStats",
    "FaceDetector",
    "GrayFrame",
    "build_visual_tensors",
    "chi_square",
    "clip_keyframes",
    "crop_face",
    "extract_keyframes",
    "face_boxes",
    "frame_differences",
    "gray_frames",
    "gray_histograms",
    "idp_codes",
    "idp_image",
    "keyframe_tensor",
    "lbp_image",
    "mean_normalised",
    "select_keyframes",
    "visual_channels",
    "window_starts",
]
