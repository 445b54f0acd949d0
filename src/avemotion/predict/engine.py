"""A bundle applied to files: front-ends on worker processes, networks and fusion here.

For each file, :mod:`avemotion.predict.frontends` gives the rows of each usable stream.
The networks run over the rows of several clips at once (``batch_size`` segments a
forward pass, keyframes turned into their gray/LBP/IDP tensors one batch at a time), and
each clip is then scored as the pipeline scores its test clips:

- the bundle's system on the segments both streams have (audio and video paired by
  segment number, as ``fuse_tables`` pairs them), with the fusion reading
  ``[cnn | functionals...]`` in ``fusion.inputs`` order; ``late_fusion`` is the mean of
  the two softmaxes;
- the clip's probabilities are the mean of its segments' (``evaluation.clip_level``).

A clip that lacks one stream (no audio track, a silent one, no face found) is predicted
from the other branch's own softmax and says so in ``modalities`` and ``warnings``; so
is a clip whose openSMILE functionals are not finite, from both branches' mean. A clip
with neither is an error with both reasons.

A bundle trained with ``base.speaker_norm`` standardises the fusion's rows of one call
together: the call's clips are taken as one speaker's recordings
(:mod:`avemotion.speakers`), so every file is read before the first is scored, and a call
with fewer than :data:`MIN_SPEAKER_SEGMENTS` fused segments says that its statistics are
thin.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from avemotion.audio.frontend import FrontEndSettings
from avemotion.models import channels_first
from avemotion.parallel import map_clips
from avemotion.predict.bundle import Bundle
from avemotion.predict.frontends import ClipFeatures, FrontEnds, StreamRows, extract_clip
from avemotion.predict.results import OK, ClipPrediction, SegmentPrediction
from avemotion.scores import expand_columns
from avemotion.segments import SegmentParams
from avemotion.speakers import statistics
from avemotion.video.tensors import keyframe_tensor

#: A progress bar from this many files on.
PROGRESS_FROM = 4
#: With speaker normalisation, fewer fused segments than this in a call draw a warning.
MIN_SPEAKER_SEGMENTS = 20

#: A speaker's statistics (each fusion column's mean and scale), or None for none.
Standardiser = tuple[np.ndarray, np.ndarray] | None
#: Each network's ``(fc_features, softmax)`` rows of one clip, None without that stream.
BranchOutputs = dict[str, tuple[np.ndarray, np.ndarray] | None]


@dataclass(frozen=True)
class Route:
    """How one clip is scored: ``error`` says why it cannot be; else the ``usable`` streams
    and ``paired``, the row indices (audio rows, video rows) of the segments both have (the
    fusion's or late fusion's rows), None when one branch's softmax scores every segment."""

    error: str | None = None
    usable: tuple[str, ...] = ()
    paired: tuple[np.ndarray, np.ndarray] | None = None


class Predictor:
    """Predict files with a loaded :class:`Bundle` (see the module docstring).

    ``n_jobs`` processes run the front-ends; ``batch_size`` segments go through a network
    at a time; ``threads`` caps torch's threads here (None: torch's default).
    """

    def __init__(
        self, bundle: Bundle, n_jobs: int = 1, batch_size: int = 64, threads: int | None = None
    ):
        self.bundle = bundle
        self.n_jobs = n_jobs
        self.batch_size = batch_size
        if threads:
            torch.set_num_threads(threads)
        params = bundle.settings.as_params()
        self.frontends = FrontEnds(
            modalities=bundle.modalities,
            segments=SegmentParams.from_params(params),
            audio=FrontEndSettings.from_params(params),
            video=params.video,
            functional_sets=bundle.functional_sets,
        )

    def predict(self, files: Sequence[str]) -> Iterator[ClipPrediction]:
        """One :class:`ClipPrediction` per file, in order, as soon as it is ready (with
        speaker normalisation, once every file is read)."""
        worker = functools.partial(extract_clip, frontends=self.frontends)
        clips = map_clips(
            worker, files, self.n_jobs, desc="predict", quiet=len(files) < PROGRESS_FROM
        )
        pending: list[ClipFeatures] = []
        n_rows = 0
        for clip in clips:
            pending.append(clip)
            n_rows += sum(len(rows.segments) for rows in clip.streams.values())
            if n_rows >= self.batch_size and not self.bundle.speaker_norm:
                yield from self._score(pending)
                pending, n_rows = [], 0
        yield from self._score(pending)

    # ---------------------------------------------------------------- networks

    def _score(self, clips: list[ClipFeatures]) -> Iterator[ClipPrediction]:
        """The networks over ``clips`` at once, then each clip along its route; with speaker
        normalisation the fusion rows of all ``clips`` give the statistics."""
        outputs = {m: self._run_network(m, clips) for m in self.bundle.networks}
        per_clip = [{m: out[i] for m, out in outputs.items()} for i in range(len(clips))]
        routes = [self._route(c, o) for c, o in zip(clips, per_clip, strict=True)]
        fusion_rows = [
            self._fusion_rows(c, o, r) for c, o, r in zip(clips, per_clip, routes, strict=True)
        ]
        speaker, warning = None, None
        if self.bundle.speaker_norm:
            speaker, warning = self._speaker_statistics([x for x in fusion_rows if x is not None])
        for clip, clip_outputs, route, rows in zip(
            clips, per_clip, routes, fusion_rows, strict=True
        ):
            prediction = self._clip_prediction(clip, clip_outputs, route, rows, speaker)
            if warning and rows is not None:
                prediction.warnings.append(warning)
            yield prediction

    @staticmethod
    def _speaker_statistics(rows: list[np.ndarray]) -> tuple[Standardiser, str | None]:
        """The statistics of a call's fusion rows (its clips being one speaker's), and a
        warning when they rest on few segments; none without rows."""
        if not rows:
            return None, None
        x = np.concatenate(rows)
        warning = None
        if len(x) < MIN_SPEAKER_SEGMENTS:
            warning = (
                f"speaker normalisation over {len(x)} segments of this call: pass more of "
                "the speaker's clips in one call"
            )
        return statistics(x), warning

    @torch.no_grad()
    def _run_network(
        self, modality: str, clips: list[ClipFeatures]
    ) -> list[tuple[np.ndarray, np.ndarray] | None]:
        """Each clip's ``(fc_features, softmax)`` rows from ``modality``'s network, None
        for a clip without that stream."""
        network = self.bundle.networks[modality]
        rows = [c.streams.get(modality) for c in clips]
        features, probs = [], []
        for batch in self._batches(modality, [r for r in rows if r is not None]):
            x = network.features(channels_first(batch))
            features.append(x.numpy())
            probs.append(torch.softmax(network[-1](x), 1).numpy())
        if not features:
            return [None] * len(clips)
        all_features, all_probs = np.concatenate(features), np.concatenate(probs)
        out: list[tuple[np.ndarray, np.ndarray] | None] = []
        start = 0
        for r in rows:
            if r is None:
                out.append(None)
                continue
            stop = start + len(r.segments)
            out.append((all_features[start:stop], all_probs[start:stop]))
            start = stop
        return out

    def _batches(self, modality: str, rows: list[StreamRows]) -> Iterator[np.ndarray]:
        """Consecutive network inputs of ``batch_size`` rows across clips, channels last;
        video keyframes become tensors one batch at a time (bounded memory)."""
        video = self.frontends.video
        items = ((r.x, i) for r in rows for i in range(len(r.segments)))
        batch: list[np.ndarray] = []
        for x, i in items:
            if modality == "audio":
                batch.append(x[i])
            else:
                tensor = keyframe_tensor(x[i], video.input_size, video.idp_combine)
                batch.append(tensor.astype(video.dtype))
            if len(batch) == self.batch_size:
                yield np.stack(batch)
                batch = []
        if batch:
            yield np.stack(batch)

    # ---------------------------------------------------------------- one clip

    def _route(self, clip: ClipFeatures, outputs: BranchOutputs) -> Route:
        """Which streams score ``clip`` and which of their segments are paired."""
        if clip.error is not None:
            return Route(error=clip.error)
        usable = tuple(m for m in self.bundle.modalities if outputs.get(m) is not None)
        if not usable:
            return Route(error="; ".join(dict.fromkeys(clip.reasons.values())))
        return Route(usable=usable, paired=self._paired_rows(clip, usable))

    def _paired_rows(
        self, clip: ClipFeatures, usable: tuple[str, ...]
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """Row indices of the segments both streams have (audio rows, video rows), or None
        when the bundle reads one stream or the clip has one."""
        if len(self.bundle.modalities) == 1:
            return (np.arange(len(clip.streams[usable[0]].segments)),) * 2
        if len(usable) < 2:
            return None
        audio, video = clip.streams["audio"].segments, clip.streams["video"].segments
        common, row_a, row_v = np.intersect1d(audio, video, return_indices=True)
        return (row_a, row_v) if len(common) else None

    def _branch_rows(self, route: Route) -> list[np.ndarray]:
        """Each of the bundle's modalities' row indices of the paired segments."""
        audio_rows, video_rows = route.paired  # type: ignore[misc]
        return [audio_rows if m == "audio" else video_rows for m in self.bundle.modalities]

    def _fusion_rows(
        self, clip: ClipFeatures, outputs: BranchOutputs, route: Route
    ) -> np.ndarray | None:
        """The fusion's input rows of the paired segments, ``[cnn | functionals...]``; None
        for a clip the fusion does not score (no pairs, no fusion in the bundle, no
        functionals)."""
        if route.paired is None or self.bundle.fusion is None:
            return None
        if clip.functionals_error is not None:  # not finite: late fusion scores it
            return None
        rows = self._branch_rows(route)
        modalities = self.bundle.modalities
        blocks = [np.hstack([outputs[m][0][r] for m, r in zip(modalities, rows, strict=True)])]  # type: ignore[index]
        for name in self.bundle.functional_sets:
            blocks.append(clip.streams["audio"].functionals[name][route.paired[0]])
        return np.hstack(blocks).astype(np.float32, copy=False)

    def _clip_prediction(
        self,
        clip: ClipFeatures,
        outputs: BranchOutputs,
        route: Route,
        fusion_rows: np.ndarray | None,
        speaker: Standardiser = None,
    ) -> ClipPrediction:
        """``clip`` scored along its ``route``; ``speaker`` standardises ``fusion_rows``."""
        classes = self.bundle.classes
        if route.error is not None:
            return ClipPrediction.failed(clip.file, classes, route.error)
        warnings = [
            f"{reason}: predicted from {' and '.join(route.usable)} alone"
            for reason in clip.reasons.values()
        ]
        if route.paired is None:  # one stream: that branch's own softmax, every segment it has
            modality = route.usable[0]
            if len(route.usable) > 1:
                warnings.append("no segment has both audio and a face: predicted from audio alone")
            rows = clip.streams[modality]
            probs = outputs[modality][1].astype(np.float64)  # type: ignore[index]
            return self._assemble(clip, rows.segments, rows.starts_s, probs, (modality,), warnings)
        modalities = self.bundle.modalities
        branch_rows = self._branch_rows(route)
        first = clip.streams[modalities[0]]
        segments, starts = first.segments[branch_rows[0]], first.starts_s[branch_rows[0]]
        if fusion_rows is None:  # late_fusion, one branch's CNN, or no functionals
            if self.bundle.fusion is not None and clip.functionals_error is not None:
                warnings.append(f"{clip.functionals_error}: predicted by late fusion of the CNNs")
            branch_probs = [
                outputs[m][1][r]  # type: ignore[index]
                for m, r in zip(modalities, branch_rows, strict=True)
            ]
            probs = np.mean(branch_probs, axis=0, dtype=np.float64)
        else:
            probs = self._fused_probabilities(fusion_rows, speaker)
        return self._assemble(clip, segments, starts, probs, modalities, warnings)

    def _fused_probabilities(self, x: np.ndarray, speaker: Standardiser) -> np.ndarray:
        """The bundle's fusion on rows ``x`` (n_segments, n_inputs), each class's
        probability, shape (n_segments, n_classes)."""
        if speaker is not None:
            mean, scale = speaker
            x = ((x - mean) / scale).astype(np.float32)
        fusion = self.bundle.fusion
        return expand_columns(fusion.predict_proba(x), fusion.classes_, len(self.bundle.classes))  # type: ignore[union-attr]

    def _assemble(
        self,
        clip: ClipFeatures,
        segments: np.ndarray,
        starts: np.ndarray,
        probs: np.ndarray,
        modalities: tuple[str, ...],
        warnings: list[str],
    ) -> ClipPrediction:
        classes = self.bundle.classes
        length = self.frontends.segments.segment_s
        end_of_clip = clip.duration_s if clip.duration_s is not None else np.inf
        parts = [
            SegmentPrediction(
                float(start),
                float(min(start + length, end_of_clip)),
                classes[int(np.argmax(p))],
                p,
            )
            for start, p in zip(starts, probs, strict=True)
        ]
        mean = probs.mean(axis=0)
        return ClipPrediction(
            file=clip.file,
            status=OK,
            classes=classes,
            label=classes[int(np.argmax(mean))],
            probabilities=mean,
            modalities=modalities,
            segments=parts,
            warnings=warnings,
            duration_s=clip.duration_s,
        )
