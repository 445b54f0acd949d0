"""What ``params.yaml`` may hold: one pydantic model per section, every key typed.

Each model forbids unknown keys, so a key misspelled by hand fails loudly instead of
being ignored; types, ranges and enumerations are checked where the value is read, so a
bad value names its key. The defaults here are the values ``params.yaml`` ships with (a
test keeps the two equal); the paper's own values are in ``params/paper.yaml``.

The enumerations below (``Protocol``, ``ChiSquare``, ...) are the one list of allowed
values: the modules that act on them read them from here.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    ValidationError,
    field_validator,
    model_validator,
)

Modality = Literal["audio", "video"]
MODALITIES: tuple[Modality, ...] = get_args(Modality)
Dataset = Literal["demo", "ravdess", "crema_d", "enterface05", "savee", "rml", "manifest"]
Protocol = Literal["speaker", "loso", "fixed", "kfold", "random"]
ChiSquare = Literal["standard", "paper"]
KeyframeRule = Literal["distinct", "paper"]
IdpCombine = Literal["vote", "mean"]
LastSegment = Literal["pad", "drop"]
Activation = Literal["sigmoid", "tanh", "relu"]
Elm2Input = Literal["hidden", "hidden_and_gender", "features_and_gender"]
SvmKernel = Literal["linear", "poly", "rbf", "sigmoid"]
SvmScores = Literal["softmax", "platt"]
SvmGamma = Literal["scale", "auto"] | PositiveFloat
Optimizer = Literal["sgd", "adamw"]
Schedule = Literal["constant", "cosine", "onecycle"]
FunctionalSet = Literal["egemaps", "compare"]
FusionInput = Literal["cnn", "egemaps", "compare"]
Stacking = Literal["paper", "cross_fit"]
TestFeatures = Literal["outer", "inner_mean"]
ExportSystem = Literal["elm_svm", "elm_svm_crossfit", "late_fusion", "audio_cnn", "video_cnn"]
ParallelBackend = Literal["processes", "dask"]  # where per-clip work runs (base.backend)
AAC_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)

Fraction = Annotated[float, Field(ge=0, lt=1)]
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
FinitePositive = Annotated[PositiveFloat, Field(allow_inf_nan=False)]


class Section(BaseModel):
    """A ``params.yaml`` section: unknown keys refused, values checked on assignment too."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class BaseParams(Section):
    """``base:``, the keys several stages share."""

    seed: int = 42
    modalities: tuple[Modality, ...] = MODALITIES
    segment_s: PositiveFloat = 2.0
    hop_s: PositiveFloat = 2.0
    last_segment: LastSegment = "pad"
    min_segment_s: NonNegativeFloat = 1.0
    n_jobs: Annotated[int, Field(ge=-1)] = -1
    backend: ParallelBackend = "processes"
    dask_scheduler: str | None = None
    profile: str = "cpu"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    speaker_norm: bool = False

    @field_validator("modalities")
    @classmethod
    def _modalities_in_order(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("list at least one of audio, video")
        return tuple(m for m in MODALITIES if m in value)

    @field_validator("n_jobs")
    @classmethod
    def _n_jobs_not_zero(cls, value: int) -> int:
        if value == 0:
            raise ValueError("0 processes cannot work: give a count >= 1, or -1 for all cores")
        return value

    @field_validator("dask_scheduler")
    @classmethod
    def _scheduler_is_an_address(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[a-z]+://\S+:\d+", value):
            raise ValueError("give the address `dask scheduler` prints, as tcp://host:port")
        return value

    @model_validator(mode="after")
    def _scheduler_needs_dask(self) -> BaseParams:
        # a scheduler address that is silently ignored would leave a cluster idle and the
        # work on this machine: say so instead
        if self.dask_scheduler is not None and self.backend != "dask":
            raise ValueError(
                f"dask_scheduler={self.dask_scheduler!r} is only used with backend: dask "
                f"(backend is {self.backend!r}); set backend: dask, or dask_scheduler: null"
            )
        return self


class DemoParams(Section):
    """``demo:``, the generated dataset."""

    seed: int = 7
    out_dir: str = "data/demo"
    n_speakers: Annotated[int, Field(ge=2)] = 8
    takes_per_emotion: PositiveInt = 3
    emotions: Annotated[list[str], Field(min_length=1)] = ["neutral", "happy", "sad", "angry"]
    min_duration_s: Annotated[float, Field(ge=0.2)] = 2.0
    max_duration_s: PositiveFloat = 3.4
    fps: Annotated[int, Field(ge=1, le=120)] = 25
    width: Annotated[int, Field(ge=160, multiple_of=2)] = 320
    height: Annotated[int, Field(ge=120, multiple_of=2)] = 240
    sample_rate: Literal[AAC_RATES] = 16000  # type: ignore[valid-type]

    @model_validator(mode="after")
    def _durations_ordered(self) -> DemoParams:
        if self.min_duration_s > self.max_duration_s:
            raise ValueError("min_duration_s must be <= max_duration_s")
        return self


class DataParams(Section):
    """``data:``, which corpus and which classes."""

    dataset: Dataset = "demo"
    root: str = "data/demo"
    classes: list[str] | None = ["neutral", "happy", "sad", "angry"]
    max_reject_fraction: Annotated[float, Field(ge=0, le=1)] = 0.2
    options: dict[str, Any] = {}


class SplitParams(Section):
    """``split:``, the evaluation protocol."""

    protocol: Protocol = "speaker"
    n_folds: Annotated[int, Field(ge=2)] = 2
    test_size: Annotated[float, Field(gt=0, lt=1)] = 0.3
    test_speakers: list[str] = []
    folds: Annotated[list[NonNegativeInt], Field(min_length=1)] = [0, 1]
    seed: int = 42

    @field_validator("test_speakers", mode="before")
    @classmethod
    def _speakers_as_text(cls, value: Any) -> Any:
        """Speaker ids are text in the index; YAML reads ``[1, 2]`` as numbers."""
        return [str(v) for v in value] if isinstance(value, list) else value


class AudioParams(Section):
    """``audio:``, the spectrogram front-end (paper 2.2)."""

    sample_rate: Annotated[int, Field(ge=1000)] = 16000
    frame_s: PositiveFloat = 0.04
    step_s: PositiveFloat = 0.02
    n_mels: PositiveInt = 30
    n_frames: PositiveInt | None = 100
    nfft: PositiveInt | None = 1024
    low_hz: NonNegativeFloat = 0.0
    high_hz: PositiveFloat | None = None
    preemph: Fraction = 0.0
    delta_n: PositiveInt = 1
    log_floor: PositiveFloat = 1e-10
    max_missing_s: NonNegativeFloat = 0.5

    @model_validator(mode="after")
    def _frames_fit(self) -> AudioParams:
        if self.step_s > self.frame_s:
            raise ValueError(f"step_s={self.step_s} must be <= frame_s={self.frame_s}")
        return self


class VideoParams(Section):
    """``video:``, the face and keyframe front-end (paper 2.1)."""

    detect_width: PositiveInt = 160
    detect_every: PositiveInt = 1
    search_near_last: bool = True
    min_face_size: Annotated[float, Field(gt=0, le=1)] = 0.1
    scale_factor: Annotated[float, Field(gt=1)] = 1.1
    min_neighbors: PositiveInt = 5
    box_smoothing: Fraction = 0.6
    margin: NonNegativeFloat = 0.1
    keyframe_size: PositiveInt = 112
    min_face_fraction: Annotated[float, Field(ge=0, le=1)] = 0.5
    max_missing_s: NonNegativeFloat = 0.5
    hist_bins: Annotated[int, Field(ge=2)] = 64
    chi_square: ChiSquare = "standard"
    keyframe_rule: KeyframeRule = "distinct"
    k: NonNegativeInt = 3
    step: PositiveInt = 4
    n_keyframes: PositiveInt = 16
    input_size: PositiveInt = 64
    idp_combine: IdpCombine = "vote"
    dtype: Literal["float32", "float16"] = "float32"


class AugmentParams(Section):
    """``augment:``, copies of training clips (paper 3.3)."""

    rotation_deg: list[FiniteFloat] = []
    snr_db: list[FiniteFloat] = []


class BranchSpecParams(Section):
    """One branch of a network profile; ``None`` takes the ``models:`` level value."""

    channels: Annotated[list[PositiveInt], Field(min_length=1)]
    fc: Annotated[list[PositiveInt], Field(min_length=1)]
    input_size: PositiveInt | None = None
    dropout: Fraction | None = None
    batch_norm: bool | None = None


class ProfileParams(Section):
    """A network profile (``models.cpu``, ``models.paper``): one spec per branch."""

    audio: BranchSpecParams
    video: BranchSpecParams

    @model_validator(mode="after")
    def _layer_counts(self) -> ProfileParams:
        # the paper's 2D-CNN has 4 convolutions, its C3D 8 (section 2.3)
        for branch, n_convs in (("audio", 4), ("video", 8)):
            channels = getattr(self, branch).channels
            if len(channels) != n_convs:
                raise ValueError(
                    f"{branch}.channels lists {len(channels)} widths; the {branch} CNN has "
                    f"{n_convs} convolutions"
                )
        return self


CPU_PROFILE = ProfileParams(
    audio=BranchSpecParams(channels=[16, 32, 64, 128], fc=[256, 256]),
    video=BranchSpecParams(
        channels=[8, 16, 32, 32, 64, 64, 64, 64], fc=[128, 128], input_size=64, batch_norm=True
    ),
)
PAPER_PROFILE = ProfileParams(
    audio=BranchSpecParams(channels=[64, 128, 256, 512], fc=[4096, 4096]),
    video=BranchSpecParams(
        channels=[64, 128, 256, 256, 512, 512, 512, 512], fc=[4096, 4096], input_size=112
    ),
)


class ModelsParams(Section):
    """``models:``, network sizes: ``dropout``, ``batch_norm`` and named profiles.

    Any further key is a profile (``base.profile`` picks one), checked as
    :class:`ProfileParams`.
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    dropout: Fraction = 0.5
    batch_norm: bool = False
    cpu: ProfileParams = CPU_PROFILE
    paper: ProfileParams = PAPER_PROFILE

    @model_validator(mode="after")
    def _profiles_checked(self) -> ModelsParams:
        extra = self.__pydantic_extra__ or {}
        for name, value in extra.items():
            if not isinstance(value, ProfileParams):
                try:
                    extra[name] = ProfileParams.model_validate(value)
                except ValidationError as error:
                    problem = error.errors()[0]
                    where = ".".join(str(part) for part in problem["loc"])
                    message = problem["msg"].removeprefix("Value error, ")
                    prefix = f"{where}: " if where else ""
                    raise ValueError(f"profile {name}: {prefix}{message}") from None
        return self

    def profiles(self) -> dict[str, ProfileParams]:
        return {"cpu": self.cpu, "paper": self.paper, **(self.model_extra or {})}


class DistributedParams(Section):
    """``train.distributed:``, data-parallel training of the CNN branches (issue 14).

    ``nproc`` processes on this machine share every batch (see :mod:`avemotion.distributed`);
    1 trains in one process, exactly as without this section. ``backend`` is how they
    talk: ``auto`` takes NCCL on CUDA and Gloo on the CPU. A branch may have its own
    (``train.by_modality.video.distributed``, replacing the whole section): on 2 CPU
    cores the 3D-CNN trains 1.3x faster as two single-threaded processes, while the
    audio CNN's small steps are slower that way.
    """

    nproc: PositiveInt = 1
    backend: Literal["auto", "gloo", "nccl"] = "auto"


class TrainOverrides(Section):
    """``train.by_modality.<branch>``: any ``train:`` key, for one branch only."""

    epochs: PositiveInt | None = None
    batch_size: PositiveInt | None = None
    lr: PositiveFloat | None = None
    momentum: Fraction | None = None
    weight_decay: NonNegativeFloat | None = None
    threads: PositiveInt | None = None
    num_workers: NonNegativeInt | None = None
    validation_fraction: Fraction | None = None
    validate_by: Literal["speaker", "clip"] | None = None
    standardise_inputs: bool | None = None
    optimizer: Optimizer | None = None
    schedule: Schedule | None = None
    label_smoothing: Fraction | None = None
    mixup_alpha: NonNegativeFloat | None = None
    time_masks: NonNegativeInt | None = None
    time_mask_frames: NonNegativeInt | None = None
    freq_masks: NonNegativeInt | None = None
    freq_mask_bands: NonNegativeInt | None = None
    balanced_sampling: bool | None = None
    average_last: PositiveInt | None = None
    hop_s: PositiveFloat | None = None
    distributed: DistributedParams | None = None


class TrainParams(Section):
    """``train:``, SGD for both CNN branches (paper 3.2)."""

    epochs: PositiveInt = 25
    batch_size: PositiveInt = 16
    lr: PositiveFloat = 0.003
    momentum: Fraction = 0.9
    weight_decay: NonNegativeFloat = 5e-5
    threads: PositiveInt = 2
    num_workers: NonNegativeInt = 0
    validation_fraction: Fraction = 0.2
    validate_by: Literal["speaker", "clip"] = "speaker"
    # recipes beyond the paper's (issue 12); each off in the paper preset
    standardise_inputs: bool = True
    optimizer: Optimizer = "sgd"
    schedule: Schedule = "constant"
    label_smoothing: Fraction = 0.0
    mixup_alpha: NonNegativeFloat = 0.0
    time_masks: NonNegativeInt = 0
    time_mask_frames: NonNegativeInt = 10
    freq_masks: NonNegativeInt = 0
    freq_mask_bands: NonNegativeInt = 4
    balanced_sampling: bool = False
    average_last: PositiveInt = 1
    hop_s: PositiveFloat | None = None
    by_modality: dict[Modality, TrainOverrides] = {
        "video": TrainOverrides(
            lr=0.003, epochs=20, threads=1, distributed=DistributedParams(nproc=2)
        ),
        "audio": TrainOverrides(epochs=50),
    }
    init_weights: dict[Modality, str] = {}
    distributed: DistributedParams = DistributedParams()

    def for_branch(self, modality: str) -> TrainParams:
        """These settings with ``by_modality[modality]``'s keys on top."""
        overrides = self.by_modality.get(modality)  # type: ignore[call-overload]
        given = {} if overrides is None else {k: v for k, v in overrides if v is not None}
        return self.model_copy(update=given)


class FusionParams(Section):
    """``fusion:``, ELM-1 -> ELM-2 -> SVM (paper 2.3.3, 2.4)."""

    elm1_hidden: PositiveInt = 100
    elm2_hidden_per_class: PositiveInt = 200
    elm_C: Annotated[PositiveFloat, Field(allow_inf_nan=False)] = 0.01
    elm_members: PositiveInt = 1
    activation: Activation = "sigmoid"
    standardise: bool = True
    use_gender: bool = True
    elm2_input: Elm2Input = "features_and_gender"
    cross_fit_folds: Annotated[int, Field(ge=2)] = 4
    svm_kernel: SvmKernel = "rbf"
    svm_C: Annotated[PositiveFloat, Field(allow_inf_nan=False)] = 1.0
    svm_gamma: SvmGamma = "scale"
    svm_scores: SvmScores = "softmax"
    inputs: Annotated[list[FusionInput], Field(min_length=1)] = ["cnn", "egemaps", "compare"]
    gender_inputs: Annotated[list[FusionInput], Field(min_length=1)] = ["egemaps"]
    stacking: Stacking = "paper"
    inner_folds: list[NonNegativeInt] = []
    test_features: TestFeatures = "inner_mean"

    @model_validator(mode="after")
    def _stacking_consistent(self) -> FusionParams:
        if self.stacking == "paper" and self.inner_folds:
            raise ValueError("inner_folds must be [] with stacking: paper (no inner CNNs)")
        if self.stacking == "cross_fit" and (
            len(self.inner_folds) < 2 or self.inner_folds != list(range(len(self.inner_folds)))
        ):
            raise ValueError(
                "stacking: cross_fit needs inner_folds: [0, 1, ..., K-1] with K >= 2 "
                "(each an inner CNN, a DVC stage instance)"
            )
        if (
            self.use_gender
            and self.elm2_input != "features_and_gender"
            and sorted(self.inputs) != sorted(self.gender_inputs)
        ):
            raise ValueError(
                f"with elm2_input: {self.elm2_input}, ELM-2 reads ELM-1's hidden output, so "
                f"inputs {self.inputs} must equal gender_inputs {self.gender_inputs}; use "
                "elm2_input: features_and_gender to give ELM-1 and ELM-2 different inputs"
            )
        return self


class FunctionalsParams(Section):
    """``functionals:``, openSMILE functionals per segment and per clip (issue 12)."""

    sets: list[FunctionalSet] = ["egemaps", "compare"]


class BaselineParams(Section):
    """``baseline:``, SVMs on MFCC statistics (Avots et al. 2019, the paper's benchmark) and
    on openSMILE functionals; C is chosen per fold on validation speakers from
    ``svm_C_grid``."""

    n_mfcc: PositiveInt = 13
    n_filters: PositiveInt = 26
    frame_s: PositiveFloat = 0.025
    step_s: PositiveFloat = 0.01
    preemph: Fraction = 0.97
    delta_n: PositiveInt = 2
    svm_kernel: SvmKernel = "rbf"
    svm_C_grid: Annotated[list[FinitePositive], Field(min_length=1)] = [0.1, 1.0, 10.0]
    svm_gamma: SvmGamma = "scale"

    @model_validator(mode="after")
    def _consistent(self) -> BaselineParams:
        if self.n_mfcc > self.n_filters:
            raise ValueError(f"n_mfcc={self.n_mfcc} must be <= n_filters={self.n_filters}")
        if self.step_s > self.frame_s:
            raise ValueError(f"step_s={self.step_s} must be <= frame_s={self.frame_s}")
        return self


class ExportParams(Section):
    """``export:``, the bundle ``avemotion predict`` reads (stage export_model, issue 13)."""

    system: ExportSystem = "elm_svm"


class Params(Section):
    """The whole ``params.yaml``."""

    base: BaseParams = BaseParams()
    demo: DemoParams = DemoParams()
    data: DataParams = DataParams()
    split: SplitParams = SplitParams()
    audio: AudioParams = AudioParams()
    video: VideoParams = VideoParams()
    augment: AugmentParams = AugmentParams()
    models: ModelsParams = ModelsParams()
    train: TrainParams = TrainParams()
    fusion: FusionParams = FusionParams()
    functionals: FunctionalsParams = FunctionalsParams()
    baseline: BaselineParams = BaselineParams()
    export: ExportParams = ExportParams()

    @model_validator(mode="after")
    def _profile_defined(self) -> Params:
        profiles = self.models.profiles()
        if self.base.profile not in profiles:
            raise ValueError(
                f"base.profile={self.base.profile!r} is not a profile under models: "
                f"choose one of {sorted(profiles)}"
            )
        wanted = {*self.fusion.inputs, *self.fusion.gender_inputs} - {"cnn"}
        missing = sorted(wanted - set(self.functionals.sets))
        if missing:
            raise ValueError(
                f"fusion.inputs / fusion.gender_inputs name {missing}, which functionals.sets "
                f"{self.functionals.sets} does not build"
            )
        needs = {"audio_cnn": {"audio"}, "video_cnn": {"video"}, "late_fusion": {"audio", "video"}}
        lacking = sorted(needs.get(self.export.system, set()) - set(self.base.modalities))
        if lacking:
            raise ValueError(
                f"export.system={self.export.system} needs the {' and '.join(lacking)} branch, "
                f"which base.modalities {list(self.base.modalities)} does not train"
            )
        return self

    @model_validator(mode="after")
    def _training_windows_fit(self) -> Params:
        # train.hop_s joins two stored segments into one window (avemotion.recipes)
        for modality in MODALITIES:
            hop_s = self.train.for_branch(modality).hop_s
            if hop_s is not None and not hop_s < self.base.segment_s == self.base.hop_s:
                raise ValueError(
                    f"train.hop_s={hop_s} (the {modality} branch's) makes training windows that "
                    "straddle two consecutive segments: it must be shorter than "
                    f"base.segment_s={self.base.segment_s}, and base.hop_s={self.base.hop_s} "
                    "must equal base.segment_s (segments back to back)"
                )
        return self
