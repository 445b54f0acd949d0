"""A trained system as one folder that loads safely: what ``avemotion predict`` reads.

Layout of a bundle folder (written by :func:`export_bundle`, stage ``export_model``)::

    bundle.json     what the bundle is: format, avemotion version, classes, system,
                    modalities, the params that shape inference, each network's input
                    shape, and the SHA-256 of every other file
    audio.pt        the audio CNN's state dict (with its input statistics)
    video.pt        the video CNN's state dict
    fusion.skops    ELM-1 -> ELM-2 -> SVM (systems elm_svm and elm_svm_crossfit)

Nothing in it runs code on load: the state dicts are read with
``torch.load(weights_only=True)``, the fusion with ``skops.io.load`` and an explicit
list of the types it may build (:data:`TRUSTED_TYPES`). :func:`load_bundle` checks the
format, the version and every checksum first; any mismatch is one
:class:`~avemotion.errors.BadInputError` line.
"""

from __future__ import annotations

import io
import json
import shutil
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import joblib
import skops.io
import torch

import avemotion
from avemotion.atomic import file_digest, write_json
from avemotion.audio.frontend import FrontEndSettings
from avemotion.branch import network_for_rows
from avemotion.errors import BadInputError
from avemotion.fusion.inputs import block_order
from avemotion.models import BranchCNN, branch_spec
from avemotion.params import Params
from avemotion.params.schema import (
    AudioParams,
    BaseParams,
    FunctionalsParams,
    FusionParams,
    VideoParams,
)

FORMAT = "avemotion-bundle/1"
MANIFEST = "bundle.json"
FUSION_FILE = "fusion.skops"
#: The only types ``fusion.skops`` may build beyond what skops trusts by default
#: (numpy arrays, scikit-learn's SVC, StandardScaler, ...).
TRUSTED_TYPES = [
    "avemotion.elm.ELMClassifier",
    "avemotion.fusion.estimators.ELMFusion",
    "avemotion.fusion.estimators.TwoStageELM",
]
#: Systems whose bundle holds the fusion (the others read the CNNs' softmax only).
FUSED_SYSTEMS = ("elm_svm", "elm_svm_crossfit")


@dataclass(frozen=True)
class ModelFiles:
    """What one run trained, as files: each branch's ``best.pt`` and the folder of the
    assembled fusion systems (``<system>.joblib``, from fit_svm)."""

    branches: dict[str, Path]
    systems: Path


@dataclass(frozen=True)
class InferenceSettings:
    """The params that shape inference, as the bundle stores them: the segments, the
    modalities and speaker normalisation (``base``), both front-ends (``audio``,
    ``video``), the functionals sets and the fusion's inputs (their order builds the
    fusion's feature matrix)."""

    base: BaseParams
    audio: AudioParams
    video: VideoParams
    functionals: FunctionalsParams
    fusion: FusionParams

    @classmethod
    def from_params(cls, params: Params) -> InferenceSettings:
        base = params.base
        return cls(
            base=BaseParams(
                modalities=base.modalities,
                segment_s=base.segment_s,
                hop_s=base.hop_s,
                last_segment=base.last_segment,
                min_segment_s=base.min_segment_s,
                profile=base.profile,
                speaker_norm=base.speaker_norm,
            ),
            audio=params.audio,
            video=params.video,
            functionals=FunctionalsParams(sets=list(params.functionals.sets)),
            fusion=FusionParams(
                inputs=list(params.fusion.inputs),
                gender_inputs=list(params.fusion.gender_inputs),
            ),
        )

    def as_params(self) -> Params:
        """These settings inside a whole :class:`Params` (defaults elsewhere), which the
        front-ends' ``from_params`` constructors read."""
        return Params(
            base=self.base,
            audio=self.audio,
            video=self.video,
            functionals=self.functionals,
            fusion=self.fusion,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "base": self.base.model_dump(
                include={
                    "modalities",
                    "segment_s",
                    "hop_s",
                    "last_segment",
                    "min_segment_s",
                    "speaker_norm",
                }
            ),
            "audio": self.audio.model_dump(),
            "video": self.video.model_dump(),
            "functionals": self.functionals.model_dump(),
            "fusion": self.fusion.model_dump(include={"inputs", "gender_inputs"}),
        }

    @classmethod
    def from_json(cls, tree: dict[str, Any]) -> InferenceSettings:
        return cls(
            base=BaseParams(**tree["base"]),
            audio=AudioParams(**tree["audio"]),
            video=VideoParams(**tree["video"]),
            functionals=FunctionalsParams(**tree["functionals"]),
            fusion=FusionParams(**tree["fusion"]),
        )


@dataclass(frozen=True)
class Bundle:
    """A loaded, verified bundle: ``networks[modality]`` in eval mode on the CPU,
    ``fusion`` (an :class:`~avemotion.fusion.estimators.ELMFusion`, or None for a
    branch-only system), the class names, the system and the inference settings."""

    path: Path
    classes: tuple[str, ...]
    system: str
    modalities: tuple[str, ...]
    settings: InferenceSettings
    networks: dict[str, BranchCNN]
    fusion: Any | None
    version: str

    @property
    def functional_sets(self) -> tuple[str, ...]:
        """The functionals blocks of the fusion's matrix, in its column order; none for a
        system without the fusion (the front-ends then skip openSMILE)."""
        if self.fusion is None:
            return ()
        return tuple(n for n in block_order(self.settings.as_params()) if n != "cnn")

    @property
    def speaker_norm(self) -> bool:
        """Whether the fusion was trained on rows z-scored within each speaker
        (``base.speaker_norm``), so that a call's fusion rows are standardised together."""
        return self.fusion is not None and self.settings.base.speaker_norm


def branch_input_shape(settings: InferenceSettings, modality: str) -> tuple[int, ...]:
    """One row's stored shape (channels last): audio (n_mels, n_frames, 3) as the audio
    front-end writes it; video (n_keyframes, size, size, 3) as build_visual_tensors does."""
    if modality == "audio":
        return FrontEndSettings.from_params(settings.as_params()).spectrogram.item_shape
    video = settings.video
    return (video.n_keyframes, video.input_size, video.input_size, 3)


def export_bundle(
    params: Params, classes: list[str], files: ModelFiles, out: Path
) -> dict[str, Any]:
    """Write the bundle of ``export.system`` to the folder ``out`` (replaced whole) from a
    run's trained ``files``; returns the manifest. Each network is loaded into the
    architecture the manifest describes before it is written, so a bundle that could not
    be rebuilt on load is never written."""
    system = params.export.system
    settings = InferenceSettings.from_params(params)
    modalities = tuple(params.base.modalities)
    if system == "audio_cnn":
        modalities = ("audio",)
    elif system == "video_cnn":
        modalities = ("video",)
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    networks: dict[str, Any] = {}
    for modality in modalities:
        source = files.branches[modality]
        if not source.is_file():
            raise BadInputError("trained model not found; run its training stage first", source)
        state = torch.load(source, map_location="cpu", weights_only=True)
        spec = branch_spec(params, modality)
        shape = branch_input_shape(settings, modality)
        standardise = "input_mean" in state
        n_classes = int([t for t in state.values() if t.dim() == 2][-1].shape[0])  # class layer
        if n_classes != len(classes):
            raise BadInputError(f"has {n_classes} outputs for {len(classes)} classes", source)
        try:
            network = network_for_rows(modality, spec, n_classes, shape, standardise=standardise)
            network.load_state_dict(state)
        except RuntimeError as error:
            raise BadInputError(
                f"does not fit the {modality} network of these params ({str(error)[:200]})", source
            ) from None
        torch.save(state, partial / f"{modality}.pt")
        networks[modality] = {
            "file": f"{modality}.pt",
            "input_shape": list(shape),
            "standardise": standardise,
            "spec": asdict(spec),
        }
    if system in FUSED_SYSTEMS:
        source = files.systems / f"{system}.joblib"
        if not source.is_file():
            raise BadInputError(f"fusion system {system} not found; run fit_svm first", source)
        (partial / FUSION_FILE).write_bytes(reproducible_skops(joblib.load(source)))
    manifest = {
        "format": FORMAT,
        "avemotion_version": avemotion.__version__,
        "system": system,
        "classes": list(classes),
        "modalities": list(modalities),
        "settings": settings.to_json(),
        "networks": networks,
        "files": {p.name: file_digest(p) for p in sorted(partial.iterdir())},
    }
    write_json(partial / MANIFEST, manifest)
    shutil.rmtree(out, ignore_errors=True)
    partial.rename(out)
    return manifest


def reproducible_skops(estimator: Any) -> bytes:
    """``skops.io.dumps`` of ``estimator`` with the same bytes on every run.

    skops names each array file and ``__id__`` after ``id()`` of the object (a memory
    address) and stamps every zip entry with the current time, so two exports of one
    fitted fusion differ and ``models/bundle`` would never reproduce ``dvc.lock``. Here the
    ids are renumbered in the order the schema first meets them (shared objects keep one
    number, so skops' memo still links them) and every entry gets the zip epoch.
    """
    packed = zipfile.ZipFile(io.BytesIO(skops.io.dumps(estimator)))
    schema = json.loads(packed.read("schema.json"))
    renumbered: dict[int, int] = {}
    renamed: dict[str, str] = {}  # array file in skops' zip -> its name here
    arrays = set(packed.namelist())

    def renumber(node: Any) -> Any:
        if isinstance(node, dict):
            if "__id__" in node:
                node["__id__"] = renumbered.setdefault(node["__id__"], len(renumbered))
            if isinstance(node.get("file"), str) and node["file"] in arrays:
                node["file"] = renamed.setdefault(node["file"], f"{node['__id__']:06d}.npy")
            return {key: renumber(value) for key, value in node.items()}
        if isinstance(node, list):
            return [renumber(value) for value in node]
        return node

    schema = renumber(schema)
    epoch = (1980, 1, 1, 0, 0, 0)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as repacked:
        for old, new in sorted(renamed.items(), key=lambda pair: pair[1]):
            repacked.writestr(zipfile.ZipInfo(new, date_time=epoch), packed.read(old))
        repacked.writestr(zipfile.ZipInfo("schema.json", date_time=epoch), json.dumps(schema))
    return out.getvalue()


def read_manifest(folder: Path) -> dict[str, Any]:
    """The bundle's manifest after its format, version and file checksums are checked."""
    path = folder / MANIFEST
    if not folder.is_dir():
        raise BadInputError("model bundle not found (run `dvc repro export_model`)", folder)
    try:
        manifest = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise BadInputError(f"not a readable model bundle ({error})", path) from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BadInputError(f"not a model bundle of format {FORMAT}", path)
    version = manifest.get("avemotion_version")
    if version != avemotion.__version__:
        raise BadInputError(
            f"bundle written by avemotion {version}, this is avemotion {avemotion.__version__}: "
            "export it again with this version (`dvc repro export_model`)",
            folder,
        )
    for name, expected in manifest["files"].items():
        file = folder / name
        if not file.is_file():
            raise BadInputError(f"bundle file {name} is missing", folder)
        if file_digest(file) != expected:
            raise BadInputError(
                f"bundle file {name} does not match its checksum (changed after export)", folder
            )
    return manifest


def load_bundle(folder: str | Path) -> Bundle:
    """Load and verify a bundle folder (see the module docstring)."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    settings = InferenceSettings.from_json(manifest["settings"])
    classes = tuple(manifest["classes"])
    networks = {}
    for modality, entry in manifest["networks"].items():
        state = torch.load(folder / entry["file"], map_location="cpu", weights_only=True)
        network = network_for_rows(
            modality,
            entry["spec"],
            len(classes),
            tuple(entry["input_shape"]),
            standardise=entry["standardise"],
        )
        network.load_state_dict(state)
        networks[modality] = network.eval()
    fusion = None
    if manifest["system"] in FUSED_SYSTEMS:
        fusion = skops.io.load(folder / FUSION_FILE, trusted=TRUSTED_TYPES)
    return Bundle(
        path=folder,
        classes=classes,
        system=manifest["system"],
        modalities=tuple(manifest["modalities"]),
        settings=settings,
        networks=networks,
        fusion=fusion,
        version=manifest["avemotion_version"],
    )
