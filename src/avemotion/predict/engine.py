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
        outputs = {m: self._run_network(m, clips) for m in self.bundle.networks}
        per_clip = [{m: out[i] for m, out in outputs.items()} for i in range(len(clips))]
        fused = [None] * len(clips)
        if self.bundle.speaker_norm:
            fused = [self._fusion_rows(c, o) for c, o in zip(clips, per_clip, strict=True)]
        speaker, warning = self._speaker_statistics([x for x in fused if x is not None])
        for clip, clip_outputs, rows in zip(clips, per_clip, fused, strict=True):
            prediction = self._clip_prediction(clip, clip_outputs, speaker)
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

    def _clip_prediction(
        self,
        clip: ClipFeatures,
        outputs: BranchOutputs,
        speaker: Standardiser = None,
    ) -> ClipPrediction:
        classes = self.bundle.classes
        if clip.error is not None:
            return ClipPrediction.failed(clip.file, classes, clip.error)
        usable = [m for m in self.bundle.modalities if outputs.get(m) is not None]
        if not usable:
            reasons = list(dict.fromkeys(clip.reasons.values()))
            return ClipPrediction.failed(clip.file, classes, "; ".join(reasons))
        warnings = [
            f"{reason}: predicted from {' and '.join(usable)} alone"
            for modality, reason in clip.reasons.items()
        ]
        paired = self._paired_rows(clip, usable)
        if paired is None:  # one stream: that branch's own softmax, every segment it has
            modality = usable[0]
            if len(usable) > 1:
                warnings.append("no segment has both audio and a face: predicted from audio alone")
            rows = clip.streams[modality]
            probs = outputs[modality][1].astype(np.float64)  # type: ignore[index]
            segments, starts, used = rows.segments, rows.starts_s, (modality,)
        else:
            segments, starts, probs, used = self._fused(clip, outputs, paired, warnings, speaker)
        return self._assemble(clip, segments, starts, probs, used, warnings)

    def _paired_rows(
        self, clip: ClipFeatures, usable: list[str]
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """Row indices of the segments both streams have (audio rows, video rows), or None
        when the bundle reads one stream or the clip has one."""
        if len(self.bundle.modalities) == 1:
            return (np.arange(len(clip.streams[usable[0]].segments)),) * 2 if usable else None
        if len(usable) < 2:
            return None
        audio, video = clip.streams["audio"].segments, clip.streams["video"].segments
        common, row_a, row_v = np.intersect1d(audio, video, return_indices=True)
        return (row_a, row_v) if len(common) else None

    def _fused(
        self,
        clip: ClipFeatures,
        outputs: BranchOutputs,
        paired: tuple[np.ndarray, np.ndarray],
        warnings: list[str],
        speaker: Standardiser = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[str, ...]]:
        """The bundle's system on the paired segments: (segments, starts, probs, modalities);
        ``speaker`` standardises the fusion's rows."""
        modalities = self.bundle.modalities
        rows = [paired[0] if m == "audio" else paired[1] for m in modalities]
        first = clip.streams[modalities[0]]
        segments, starts = first.segments[rows[0]], first.starts_s[rows[0]]
        branch_probs = [outputs[m][1][r] for m, r in zip(modalities, rows, strict=True)]  # type: ignore[index]
        if self.bundle.fusion is None:  # late_fusion, or one branch's CNN
            return segments, starts, np.mean(branch_probs, axis=0, dtype=np.float64), modalities
        if clip.functionals_error is not None:
            warnings.append(f"{clip.functionals_error}: predicted by late fusion of the CNNs")
            return segments, starts, np.mean(branch_probs, axis=0, dtype=np.float64), modalities
        x = self._fusion_matrix(clip, outputs, paired)
        if speaker is not None:
            mean, scale = speaker
            x = ((x - mean) / scale).astype(np.float32)
        fusion = self.bundle.fusion
        probs = expand_columns(fusion.predict_proba(x), fusion.classes_, len(self.bundle.classes))
        return segments, starts, probs, modalities

    def _fusion_matrix(
        self,
        clip: ClipFeatures,
        outputs: BranchOutputs,
        paired: tuple[np.ndarray, np.ndarray],
    ) -> np.ndarray:
        """The fusion's input rows of the paired segments, ``[cnn | functionals...]``."""
        modalities = self.bundle.modalities
        rows = [paired[0] if m == "audio" else paired[1] for m in modalities]
        blocks = [np.hstack([outputs[m][0][r] for m, r in zip(modalities, rows, strict=True)])]  # type: ignore[index]
        for name in self.bundle.functional_sets:
            blocks.append(clip.streams["audio"].functionals[name][paired[0]])
        return np.hstack(blocks).astype(np.float32, copy=False)

    def _fusion_rows(self, clip: ClipFeatures, outputs: BranchOutputs) -> np.ndarray | None:
        """The rows the fusion would score for this clip, None for a clip it does not
        score (an error, a missing stream, no functionals)."""
        if clip.error is not None or clip.functionals_error is not None:
            return None
        usable = [m for m in self.bundle.modalities if outputs.get(m) is not None]
        paired = self._paired_rows(clip, usable) if usable else None
        return None if paired is None else self._fusion_matrix(clip, outputs, paired)

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
