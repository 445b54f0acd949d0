"""The two CNN branches: a 2D-CNN on Mel-spectrograms and a C3D-style 3D-CNN on keyframes.

Each architecture is a short table of stages (how many convolutions, their kernel, the
pool after them) that one builder turns into a flat ``nn.Sequential`` of named layers
(paper sections 2.3.1, 2.3.2 and 3.2). The table is fixed here; the widths (conv
channels, FC sizes, video input size) come from ``params.yaml``'s ``models:`` section,
so the paper's network and the small CPU profile are the same code with other numbers.

Layers are named as C3D names them (``conv1a`` ... ``conv5b``, ``fc6``, ``fc7``, ``fc8``)
so that a converted Sports-1M state dict maps onto the video branch by name. The audio
branch follows the same scheme (``conv1a`` ... ``conv4a``, ``fc5``, ``fc6``, ``fc7``).

Tensor layouts. The front-ends store channels last; the networks want channels first,
which :func:`channels_first` does for both (a permute, no copy of the values' meaning):

- audio: stored (N, 30, 100, 3) = Mel bands x frames x (spectrogram, delta, delta-delta)
  -> network input (N, 3, 30, 100);
- video: stored (N, 16, H, W, 3) = keyframes x height x width x (gray, LBP, IDP)
  -> network input (N, 3, 16, H, W).

Geometry. All convolutions have stride 1 and 'same' padding (kernel // 2), so only the
pools shrink the input:

- 2D-CNN (paper 2.3.2): conv 7x7 -> max-pool 2x2, conv 7x7 -> average-pool 2x2,
  conv 3x3 -> average-pool 2x2, conv 3x3; a 30 x 100 input becomes 15 x 50, 7 x 25,
  3 x 12 (pools use floor, as PyTorch does), so the first FC layer sees 512 * 3 * 12.
- 3D-CNN (C3D, Tran et al. 2015): pool1 1x2x2 keeps all 16 frames early, pool2-5 are
  2x2x2; pool5 pads (0, 1, 1) as the PyTorch port of C3D does, so 16 x 112 x 112 ends at
  1 x 4 x 4 and fc6 sees 512 * 16 = 8192, exactly C3D's fc6. (Caffe's C3D had no pool5
  padding but rounded up; both give 4 x 4 at 112.) The paper resizes keyframes to
  225 x 225, but then C3D's fc6 would not fit the pre-trained weights; the ``paper``
  profile therefore uses C3D's own 112 x 112.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from avemotion.errors import BadInputError
from avemotion.params import Params

AUDIO_INPUT_SIZE = (30, 100)  # Mel bands x frames of one 2 s segment (paper 2.2.2)
N_KEYFRAMES = 16  # keyframes per 2 s video segment (paper 2.2.1)
IN_CHANNELS = 3  # audio: spectrogram, delta, delta-delta; video: gray, LBP, IDP
LAST_LAYER_STD = 0.01  # paper 3.2: the class layer starts from N(0, 0.01)
#: The time axis of one row as the front-ends store it (channels last): audio
#: (n_mels, n_frames, 3) -> frames, video (n_keyframes, size, size, 3) -> keyframes.
ROW_TIME_AXIS = {"audio": 1, "video": 0}


@dataclass(frozen=True)
class Stage:
    """One row of an architecture table: ``n_convs`` convolutions, then an optional pool.

    Kernels are cubes (3D) or squares (2D) of side ``kernel``; ``pool`` is ``"max"``,
    ``"avg"`` or ``None``; the pool's stride equals its kernel.
    """

    n_convs: int
    kernel: int
    pool: str | None = None
    pool_kernel: tuple[int, ...] = ()
    pool_padding: tuple[int, ...] = ()


# Paper 2.3.2: four convolutions, max-pool after the first, average-pool after the next two.
AUDIO_LAYOUT: tuple[Stage, ...] = (
    Stage(1, 7, "max", (2, 2)),
    Stage(1, 7, "avg", (2, 2)),
    Stage(1, 3, "avg", (2, 2)),
    Stage(1, 3),
)

# C3D (Tran et al. 2015): eight 3x3x3 convolutions in five stages, a max-pool after each.
VIDEO_LAYOUT: tuple[Stage, ...] = (
    Stage(1, 3, "max", (1, 2, 2)),
    Stage(1, 3, "max", (2, 2, 2)),
    Stage(2, 3, "max", (2, 2, 2)),
    Stage(2, 3, "max", (2, 2, 2)),
    Stage(2, 3, "max", (2, 2, 2), (0, 1, 1)),
)


@dataclass(frozen=True)
class BranchSpec:
    """The numbers ``params.yaml`` sets for one branch under one profile.

    ``channels`` has one width per convolution (4 for audio, 8 for video), ``fc`` one
    width per hidden fully-connected layer (the paper: two of 4096), ``input_size`` the
    square side of the video keyframes (unused by the audio branch, whose size comes
    from the front-end), ``dropout`` the drop probability after each hidden FC layer and
    ``batch_norm`` whether a BatchNorm follows each convolution (the paper has none).
    """

    channels: tuple[int, ...]
    fc: tuple[int, ...]
    input_size: int | None = None
    dropout: float = 0.5
    batch_norm: bool = False


def branch_spec(params: Params, branch: str) -> BranchSpec:
    """``models.<base.profile>.<branch>``, with ``models.dropout`` / ``batch_norm`` where
    the branch gives none. ``branch`` is ``"audio"`` or ``"video"``."""
    if branch not in ("audio", "video"):
        raise ValueError(f"branch must be 'audio' or 'video', got {branch!r}")
    models = params.models
    entry = getattr(models.profiles()[params.base.profile], branch)
    spec = BranchSpec(
        channels=tuple(entry.channels),
        fc=tuple(entry.fc),
        input_size=entry.input_size,
        dropout=models.dropout if entry.dropout is None else entry.dropout,
        batch_norm=models.batch_norm if entry.batch_norm is None else entry.batch_norm,
    )
    return _as_spec(spec, f"models.{params.base.profile}.{branch}", branch)


def _as_spec(spec: BranchSpec | Mapping[str, Any], where: str, branch: str) -> BranchSpec:
    """Validate a spec (a :class:`BranchSpec` or its params dict) against the branch's table."""
    if not isinstance(spec, BranchSpec):
        unknown = set(spec) - {"channels", "fc", "input_size", "dropout", "batch_norm"}
        if unknown:
            raise BadInputError(f"{where} has unknown keys {sorted(unknown)}", "params.yaml")
        try:
            spec = BranchSpec(
                channels=tuple(spec["channels"]),
                fc=tuple(spec["fc"]),
                input_size=spec.get("input_size"),
                dropout=float(spec.get("dropout", 0.5)),
                batch_norm=bool(spec.get("batch_norm", False)),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise BadInputError(
                f"{where} needs 'channels' and 'fc' lists of integers ({error})", "params.yaml"
            ) from None
    layout = AUDIO_LAYOUT if branch == "audio" else VIDEO_LAYOUT
    n_convs = sum(stage.n_convs for stage in layout)
    if len(spec.channels) != n_convs or not _positive_ints(spec.channels):
        raise BadInputError(
            f"{where}.channels must list {n_convs} positive integers (one per convolution), "
            f"got {list(spec.channels)}",
            "params.yaml",
        )
    if not spec.fc or not _positive_ints(spec.fc):
        raise BadInputError(
            f"{where}.fc must list at least one positive integer, got {list(spec.fc)}",
            "params.yaml",
        )
    if not 0.0 <= spec.dropout < 1.0:
        raise BadInputError(
            f"{where}: dropout must be in [0, 1), got {spec.dropout}", "params.yaml"
        )
    if branch == "video" and spec.input_size is not None and not _positive_ints([spec.input_size]):
        raise BadInputError(
            f"{where}.input_size must be a positive integer, got {spec.input_size!r}",
            "params.yaml",
        )
    return spec


def _positive_ints(values: Sequence[Any]) -> bool:
    return all(
        isinstance(v, int | np.integer) and not isinstance(v, bool) and v > 0 for v in values
    )


def fc_feature_dim(spec: BranchSpec | Mapping[str, Any]) -> int:
    """Width of the features the fusion reads: the last hidden FC layer (``fc[-1]``)."""
    return int(spec.fc[-1] if isinstance(spec, BranchSpec) else spec["fc"][-1])


class BranchCNN(nn.Sequential):
    """A branch network: named conv/pool layers, hidden FC layers, then the class layer.

    ``forward(x)`` returns class logits (N, n_classes); the paper's softmax is left to the
    loss. ``features(x)`` returns the last hidden FC layer after its ReLU (N, feature_dim),
    the paper's "outputs of the fully connected networks except the last output layer"
    that feed ELM-1. It stops before that layer's dropout; call ``model.eval()`` first, so
    that the earlier FC layers' dropout is off too and the features are deterministic.

    With ``standardise`` (``train.standardise_inputs``) the network z-scores each input
    channel first, with the buffers ``input_mean`` and ``input_std`` (C,) that training
    sets from its training rows (:meth:`set_input_statistics`). Being buffers, they are
    part of the state dict, so a saved ``best.pt`` scales its inputs the same wherever it
    is loaded. Without it there are no such buffers and the input goes in unchanged.
    """

    def __init__(
        self,
        layers: OrderedDict[str, nn.Module],
        feature_layer: str,
        input_shape: tuple[int, ...],
        standardise: bool = False,
    ):
        super().__init__(layers)
        names = list(layers)
        self._n_feature_layers = names.index(feature_layer) + 1
        self.input_shape = input_shape  # (C, ...) of one sample, channels first
        last = layers[names[-1]]
        assert isinstance(last, nn.Linear)
        self.n_classes = last.out_features
        self.feature_dim = last.in_features
        if standardise:
            channels = input_shape[0]
            self.set_input_statistics(torch.zeros(channels), torch.ones(channels))

    @property
    def memory_format(self) -> torch.memory_format:
        """Channels-last (``channels_last_3d`` for the 3D net): the same arithmetic as the
        default layout, but PyTorch's CPU convolutions run it 1.9x faster for the video
        net and 1.2x for the audio net (measured on 2 cores, batch 16). The weights are
        kept in it and :meth:`forward` lays its input out so."""
        return torch.channels_last_3d if len(self.input_shape) == 4 else torch.channels_last

    @property
    def standardises(self) -> bool:
        """Whether the network z-scores its inputs (has ``input_mean``/``input_std``)."""
        return "input_mean" in self._buffers

    def set_input_statistics(
        self, mean: np.ndarray | torch.Tensor, std: np.ndarray | torch.Tensor
    ) -> None:
        """Z-score every input channel with ``mean`` and ``std``, each of shape (C,)
        (e.g. :func:`avemotion.recipes.channel_statistics` of the training rows)."""
        channels = self.input_shape[0]
        mean = torch.as_tensor(np.asarray(mean), dtype=torch.float32).reshape(-1)
        std = torch.as_tensor(np.asarray(std), dtype=torch.float32).reshape(-1)
        if mean.numel() != channels or std.numel() != channels:
            raise ValueError(
                f"input statistics need {channels} values each, got {mean.numel()} means "
                f"and {std.numel()} standard deviations"
            )
        if not (torch.isfinite(mean).all() and torch.isfinite(std).all() and (std > 0).all()):
            raise ValueError(f"input statistics must be finite with std > 0, got {mean}, {std}")
        device = next(self.parameters()).device
        self.register_buffer("input_mean", mean.to(device))
        self.register_buffer("input_std", std.to(device))

    def standardise(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (N, C, ...) z-scored per channel; ``x`` itself when not standardising."""
        if not self.standardises:
            return x
        shape = (1, -1) + (1,) * (x.dim() - 2)
        return (x - self.input_mean.view(shape)) / self.input_std.view(shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits (N, n_classes) of inputs (N, C, ...)."""
        return super().forward(self.standardise(x).contiguous(memory_format=self.memory_format))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Last hidden FC activations, shape (N, feature_dim), for the ELM fusion."""
        x = self.standardise(x).contiguous(memory_format=self.memory_format)
        for layer in list(self)[: self._n_feature_layers]:
            x = layer(x)
        return x

    def conv_layer_names(self) -> list[str]:
        """Names of the layers before ``flatten``: the part ``init_weights`` loads."""
        names = []
        for name, _ in self.named_children():
            if name == "flatten":
                break
            names.append(name)
        return names


def build_audio_cnn(
    n_classes: int,
    spec: BranchSpec | Mapping[str, Any],
    input_size: tuple[int, int] = AUDIO_INPUT_SIZE,
    init_weights: str | Path | None = None,
    standardise: bool = False,
) -> BranchCNN:
    """The 2D-CNN of paper 2.3.2 for inputs (N, 3, n_mels, n_frames), default (N, 3, 30, 100).

    ``spec`` holds 4 conv widths and the hidden FC widths; ``init_weights`` is an optional
    state-dict file whose convolutional layers are loaded (see :func:`load_conv_weights`);
    ``standardise`` gives the network input statistics (see :class:`BranchCNN`).
    """
    spec = _as_spec(spec, "audio spec", "audio")
    model = _build(AUDIO_LAYOUT, spec, n_classes, (IN_CHANNELS, *input_size), standardise)
    if init_weights is not None:
        load_conv_weights(model, init_weights)
    return model


def build_video_cnn(
    n_classes: int,
    spec: BranchSpec | Mapping[str, Any],
    input_size: int | None = None,
    n_frames: int = N_KEYFRAMES,
    init_weights: str | Path | None = None,
    standardise: bool = False,
) -> BranchCNN:
    """The C3D-style 3D-CNN of paper 2.3.1 for inputs (N, 3, n_frames, size, size).

    ``input_size`` defaults to ``spec.input_size`` (112 for ``paper``, where fc6 matches
    C3D's 8192 inputs). ``init_weights`` is an optional state-dict file, e.g. converted
    Sports-1M C3D weights, loaded into the convolutional layers only; ``standardise``
    gives the network input statistics (see :class:`BranchCNN`).
    """
    spec = _as_spec(spec, "video spec", "video")
    size = input_size if input_size is not None else spec.input_size
    if size is None:
        raise BadInputError("video spec needs an input_size (keyframe side in pixels)")
    model = _build(VIDEO_LAYOUT, spec, n_classes, (IN_CHANNELS, n_frames, size, size), standardise)
    if init_weights is not None:
        load_conv_weights(model, init_weights)
    return model


def _build(
    layout: Sequence[Stage],
    spec: BranchSpec,
    n_classes: int,
    input_shape: tuple[int, ...],
    standardise: bool = False,
) -> BranchCNN:
    """Turn an architecture table and a spec into a :class:`BranchCNN` (the one builder)."""
    if n_classes < 1:
        raise BadInputError(f"a network needs at least one class, got n_classes={n_classes}")
    ndim = len(input_shape) - 1
    conv_cls = nn.Conv3d if ndim == 3 else nn.Conv2d
    bn_cls = nn.BatchNorm3d if ndim == 3 else nn.BatchNorm2d
    pools = {
        "max": nn.MaxPool3d if ndim == 3 else nn.MaxPool2d,
        "avg": nn.AvgPool3d if ndim == 3 else nn.AvgPool2d,
    }
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    in_ch, shape = input_shape[0], tuple(input_shape[1:])
    widths = iter(spec.channels)
    for number, stage in enumerate(layout, start=1):
        for letter in "abcdefgh"[: stage.n_convs]:
            out_ch = next(widths)
            layers[f"conv{number}{letter}"] = conv_cls(
                in_ch, out_ch, stage.kernel, padding=stage.kernel // 2
            )
            if spec.batch_norm:
                layers[f"bn{number}{letter}"] = bn_cls(out_ch)
            layers[f"relu{number}{letter}"] = nn.ReLU(inplace=True)
            in_ch = out_ch
        if stage.pool is not None:
            padding = stage.pool_padding or (0,) * ndim
            layers[f"pool{number}"] = pools[stage.pool](
                stage.pool_kernel, stride=stage.pool_kernel, padding=padding
            )
            shape = tuple(
                (n + 2 * p - k) // k + 1
                for n, k, p in zip(shape, stage.pool_kernel, padding, strict=True)
            )
            if min(shape) < 1:
                raise BadInputError(
                    f"input {'x'.join(map(str, input_shape[1:]))} is too small: it shrinks "
                    f"to nothing at pool{number}"
                )
    layers["flatten"] = nn.Flatten()
    width = in_ch * math.prod(shape)
    number = len(layout) + 1
    for out in spec.fc:
        layers[f"fc{number}"] = nn.Linear(width, out)
        layers[f"relu{number}"] = nn.ReLU(inplace=True)
        layers[f"drop{number}"] = nn.Dropout(spec.dropout)
        width, number = out, number + 1
    layers[f"fc{number}"] = nn.Linear(width, n_classes)
    model = BranchCNN(
        layers, feature_layer=f"relu{number - 1}", input_shape=input_shape, standardise=standardise
    )
    _init_weights(model)
    return model.to(memory_format=model.memory_format)


def _init_weights(model: BranchCNN) -> None:
    """Kaiming (He) normal for conv and hidden FC layers, zero biases; the class layer
    N(0, 0.01) with zero bias (paper 3.2)."""
    modules = list(model.modules())
    last = [m for m in modules if isinstance(m, nn.Linear)][-1]
    for module in modules:
        if isinstance(module, nn.Conv2d | nn.Conv3d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            if module is last:
                nn.init.normal_(module.weight, 0.0, LAST_LAYER_STD)
            else:
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
            nn.init.zeros_(module.bias)


# Layer names of the c3d-pytorch port (conv1, conv2) mapped to C3D's own (conv1a, conv2a).
_ALIASES = {"conv1": "conv1a", "conv2": "conv2a"}


def load_conv_weights(model: BranchCNN, path: str | Path) -> list[str]:
    """Load the convolutional layers of ``model`` from a state-dict file; return the keys set.

    Keys are matched by their last two parts (``conv3b.weight``), so files saved from this
    model, from C3D conversions (``conv1a.weight``) or from the c3d-pytorch port
    (``conv1.weight``, also with a ``module.`` prefix or inside ``{"state_dict": ...}``)
    all load. FC layers are never loaded: the class count differs from Sports-1M's 487.
    Every tensor of the conv part (weights, biases, BatchNorm state) must be present with
    the model's shape; otherwise :class:`BadInputError` names the first offending key.
    """
    path = Path(path)
    if not path.is_file():
        raise BadInputError("init_weights file not found (give a converted state dict)", path)
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise BadInputError(f"cannot be read as a PyTorch state dict ({error})", path) from None
    if isinstance(loaded, Mapping) and isinstance(loaded.get("state_dict"), Mapping):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, Mapping) or not all(
        isinstance(v, torch.Tensor) for v in loaded.values()
    ):
        raise BadInputError("is not a state dict (a mapping of names to tensors)", path)

    by_short_name: dict[str, tuple[str, torch.Tensor]] = {}
    for key, tensor in loaded.items():
        parts = key.split(".")
        if len(parts) < 2:
            continue
        short = f"{_ALIASES.get(parts[-2], parts[-2])}.{parts[-1]}"
        by_short_name.setdefault(short, (key, tensor))

    conv_layers = set(model.conv_layer_names())
    wanted = {
        key: value for key, value in model.state_dict().items() if key.split(".")[0] in conv_layers
    }
    update = {}
    for key, target in wanted.items():
        if key not in by_short_name:
            raise BadInputError(
                f"has no tensor for the model's '{key}' (expected a key ending in '{key}')", path
            )
        source_key, tensor = by_short_name[key]
        if tuple(tensor.shape) != tuple(target.shape):
            raise BadInputError(
                f"'{source_key}' has shape {tuple(tensor.shape)} but the model's '{key}' needs "
                f"{tuple(target.shape)}; the file must come from the same architecture and "
                "profile",
                path,
            )
        update[key] = tensor.to(target.dtype)
    model.load_state_dict(update, strict=False)
    return sorted(update)


def channels_first(batch: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Move the last (channel) axis to position 1: what the front-ends store to what the nets take.

    Audio (N, 30, 100, 3) -> (N, 3, 30, 100); video (N, 16, H, W, 3) -> (N, 3, 16, H, W).
    Returns a contiguous float32 tensor; values are not rescaled.
    """
    tensor = torch.as_tensor(np.asarray(batch) if not isinstance(batch, torch.Tensor) else batch)
    return torch.movedim(tensor, -1, 1).contiguous().float()


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
