"""The video front-end's parameters."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from avemotion.errors import BadInputError
from avemotion.params import section
from avemotion.video.keyframes import CHI_SQUARE_FORMS


@dataclass(frozen=True)
class VideoParams:
    """The ``video:`` section of params.yaml; see that file for what each key does."""

    detect_width: int = 160
    detect_every: int = 1
    search_near_last: bool = True
    min_face_size: float = 0.1
    scale_factor: float = 1.1
    min_neighbors: int = 5
    box_smoothing: float = 0.6
    margin: float = 0.1
    keyframe_size: int = 112
    min_face_fraction: float = 0.5
    max_missing_s: float = 0.5
    hist_bins: int = 64
    chi_square: str = "standard"
    k: int = 3
    step: int = 4
    n_keyframes: int = 16
    input_size: int = 64
    idp_combine: str = "vote"
    dtype: str = "float32"

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> VideoParams:
        """Read and check ``params["video"]``; keys it leaves out take the defaults above."""
        given = dict(section(params, "video"))
        defaults = asdict(cls())
        unknown = sorted(set(given) - set(defaults))
        if unknown:
            raise BadInputError(f"params video: unknown keys {unknown}; known: {sorted(defaults)}")
        values = {}
        for name, value in given.items():
            kind = type(defaults[name])
            if kind is bool and not isinstance(value, bool):
                raise BadInputError(f"params video.{name}: {value!r} is not true or false")
            try:
                values[name] = kind(value)
            except (TypeError, ValueError):
                raise BadInputError(
                    f"params video.{name}: {value!r} is not a {kind.__name__}"
                ) from None
            if kind is int and values[name] != value:
                raise BadInputError(f"params video.{name}: {value!r} is not a whole number")
        video = cls(**values)
        video.check()
        return video

    def check(self) -> None:
        problems = []
        for name in (
            "detect_width",
            "detect_every",
            "keyframe_size",
            "input_size",
            "n_keyframes",
            "hist_bins",
            "step",
            "min_neighbors",
        ):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1")
        if self.k < 0:
            problems.append("k must be >= 0")
        if not 0 <= self.box_smoothing < 1:
            problems.append("box_smoothing must be in [0, 1)")
        if not 0 <= self.min_face_fraction <= 1:
            problems.append("min_face_fraction must be in [0, 1]")
        if self.margin < 0 or self.max_missing_s < 0:
            problems.append("margin and max_missing_s must be >= 0")
        if not 0 < self.min_face_size <= 1:
            problems.append("min_face_size must be in (0, 1]")
        if self.scale_factor <= 1:
            problems.append("scale_factor must be > 1")
        if self.chi_square not in CHI_SQUARE_FORMS:
            problems.append(f"chi_square must be one of {CHI_SQUARE_FORMS}")
        if self.idp_combine not in ("vote", "mean"):
            problems.append("idp_combine must be 'vote' or 'mean'")
        if self.dtype not in ("float32", "float16"):
            problems.append("dtype must be 'float32' or 'float16'")
        if problems:
            raise BadInputError("params video: " + "; ".join(problems))
