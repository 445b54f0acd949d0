"""openSMILE functionals per analysis segment and per clip (stage build_functionals).

audEERING's openSMILE (the ``opensmile`` package, which ships SMILExtract's library)
summarises a signal's low-level descriptors (pitch, loudness, jitter, spectral shape,
...) by functionals (means, percentiles, slopes, ...) into one vector of fixed length:
the standard hand-made features of speech emotion recognition, to set beside the CNN's
and the MFCC benchmark's. ``functionals.sets`` names the sets (:data:`FEATURE_SETS`):

- ``egemaps``: eGeMAPSv02, the Geneva minimalistic acoustic parameter set, 88 values;
- ``compare``: ComParE_2016, the Interspeech paralinguistics challenge set, 6373 values.

:func:`build_functionals` writes two segment tables (:mod:`avemotion.h5store`) per set
into one folder:

- ``<set>.h5``: one row per row of the spectrogram table ``audio.h5``, with the same
  ``(clip_id, segment, augmentation)`` in the same order. Clips are decoded and cut by
  :func:`avemotion.audio.clips.clip_segments`, and the noisy copies are made by
  :func:`avemotion.audio.frontend.noisy_copies` from the same per-clip generators, so a
  ``snr20`` row holds the functionals of the very audio whose spectrogram is the
  ``snr20`` row of ``audio.h5``.
- ``<set>_clip.h5``: one row per clip and copy (``segment`` 0, ``start_s`` 0): the
  functionals of the whole clip's audio.

Choices made here (also recorded in each table's attrs, under ``choices``):

- **Real samples only.** A segment's functionals are those of its real samples: the
  zeros that pad a partial last segment would add digital silence to the pause and
  loudness statistics (the MFCC baseline leaves them out too).
- **A clip row's audio** is the audio its segments cover, each sample once, in time
  order (:func:`covered_audio`); with ``base.hop_s == base.segment_s`` (the default) that
  is the decoded clip up to the end of its last segment. A remainder shorter than
  ``base.min_segment_s``, which no segment keeps, is left out, so that a noisy clip row
  is made of exactly the audio of the noisy segment rows.
- **16-bit input.** The wrapper hands openSMILE 16-bit samples (it scales by 32768 and
  casts, which wraps around past full scale); samples that a noisy copy pushes past full
  scale are clipped to it first and counted (summary ``clipped_samples``).
- **Too short for openSMILE.** openSMILE gives NaN for every value of a signal shorter
  than its analysis frames (about 60 ms). A clip with such a segment is rejected with
  that reason, never written with made-up values (its rows are then missing from this
  table only). With the default params every segment holds at least
  ``base.min_segment_s - audio.max_missing_s`` = 0.5 s of real audio, so it does not
  happen.
"""

from __future__ import annotations

import functools
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import opensmile
import pandas as pd

from avemotion.audio.clips import ClipSegments, clip_segments
from avemotion.audio.frontend import NOISE_RULE, noisy_copies, snr_name
from avemotion.augment import clip_rng
from avemotion.clip_stage import ClipJob, ClipResult, ClipStage, clip_jobs, run_clip_stage
from avemotion.errors import BadInputError
from avemotion.h5store import clip_rows
from avemotion.parallel import Workers, map_clips
from avemotion.params import Params
from avemotion.params.schema import FunctionalSet
from avemotion.rejects import Reject, read_rejects, write_rejects
from avemotion.segments import SegmentParams

STAGE = "build_functionals"

#: Each ``functionals.sets`` entry and the :class:`opensmile.FeatureSet` it names.
FEATURE_SETS: dict[str, str] = {"egemaps": "eGeMAPSv02", "compare": "ComParE_2016"}
#: The two tables of a set: ``segment`` rows (as ``audio.h5``) and ``clip`` rows.
LEVELS = ("segment", "clip")
#: The largest sample openSMILE's 16-bit input holds, on the [-1, 1] scale.
FULL_SCALE = 32767 / 32768
#: Shortest signal (s) with finite functionals, measured with opensmile 2.6.0 at 16 kHz.
MIN_SIGNAL_S = 0.06

CHOICES = {
    "segment_audio": "the segment's real samples only: the zeros padding a partial "
    "segment are left out",
    "clip_audio": "the samples the clip's segments cover, each once, in time order (with "
    "hop_s == segment_s the clip up to the end of its last segment)",
    "full_scale": f"samples outside [-1, {FULL_SCALE}] (a loud noisy copy) are clipped "
    "before openSMILE's 16-bit input, and counted (summary_clipped_samples)",
    "noise": NOISE_RULE + "; the same generators as audio.h5, so the same noisy audio",
    "not_finite": "a clip with a NaN or infinite value is rejected with the reason",
}


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class FunctionalsSettings:
    """``functionals.sets``, and the keys that make the audio the same as ``audio.h5``'s:
    ``audio.{sample_rate,max_missing_s}``, the segment keys and seed of ``base:`` and
    ``augment.snr_db``."""

    sets: tuple[FunctionalSet, ...] = ("egemaps", "compare")
    sample_rate: int = 16000
    max_missing_s: float = 0.5
    segments: SegmentParams = field(default_factory=SegmentParams)
    snr_db: tuple[float, ...] = ()
    seed: int = 42

    @classmethod
    def from_params(cls, params: Params) -> FunctionalsSettings:
        """Read every key the stage declares (a set listed twice is built once)."""
        return cls(
            sets=tuple(dict.fromkeys(params.functionals.sets)),
            sample_rate=params.audio.sample_rate,
            max_missing_s=params.audio.max_missing_s,
            segments=SegmentParams.from_params(params),
            snr_db=tuple(params.augment.snr_db),
            seed=params.base.seed,
        )

    def attrs(self, set_name: str, level: str) -> dict[str, Any]:
        """What table ``(set_name, level)`` records about how it was made."""
        return {
            "stage": STAGE,
            "set": set_name,
            "feature_set": FEATURE_SETS[set_name],
            "feature_level": "Functionals",
            "level": level,
            "feature_names": feature_names(set_name),
            "opensmile_version": opensmile.__version__,
            "params": {
                "functionals": {"sets": list(self.sets)},
                "audio": {"sample_rate": self.sample_rate, "max_missing_s": self.max_missing_s},
                "base": {**asdict(self.segments), "seed": self.seed},
                "augment": {"snr_db": list(self.snr_db)},
            },
            "choices": CHOICES,
        }


def table_name(set_name: str, level: str) -> str:
    """The table's file stem in the stage's folder: ``egemaps`` or ``egemaps_clip``."""
    return set_name if level == "segment" else f"{set_name}_{level}"


# --------------------------------------------------------------------------- openSMILE


@functools.cache
def smile(set_name: str) -> opensmile.Smile:
    """The openSMILE extractor of one ``functionals.sets`` entry, made once per process."""
    return opensmile.Smile(
        feature_set=getattr(opensmile.FeatureSet, FEATURE_SETS[set_name]),
        feature_level=opensmile.FeatureLevel.Functionals,
    )


def feature_names(set_name: str) -> list[str]:
    """openSMILE's names of the set's values: the columns of ``/x``, in order."""
    return list(smile(set_name).feature_names)


def functionals(signal: np.ndarray, sample_rate: int, set_name: str) -> np.ndarray:
    """openSMILE functionals of one mono signal: ``(n_samples,)`` -> ``(n_features,)`` float32.

    Samples outside the 16-bit range openSMILE reads are clipped to it
    (:func:`past_full_scale` counts them). A signal shorter than openSMILE's analysis
    frames (:data:`MIN_SIGNAL_S`) gives NaN throughout: the caller decides what to do.
    """
    signal = np.clip(np.asarray(signal, dtype=np.float32), -1.0, FULL_SCALE)
    with warnings.catch_warnings():  # "Segment too short, filling with NaN": we check
        warnings.filterwarnings("ignore", "Segment too short", UserWarning)
        frame = smile(set_name).process_signal(signal, sample_rate)
    return frame.to_numpy(dtype=np.float32)[0]


def past_full_scale(signal: np.ndarray) -> int:
    """How many samples :func:`functionals` clips."""
    return int(np.count_nonzero((signal < -1.0) | (signal > FULL_SCALE)))


# --------------------------------------------------------------------------- one clip


def covered_audio(
    segments: np.ndarray, n_valid: np.ndarray, starts_s: np.ndarray, sample_rate: int
) -> np.ndarray:
    """The audio a clip's segments cover, each sample once, in time order: ``(n,)`` float32.

    ``segments`` is ``(n_segments, segment_len)`` as
    :func:`avemotion.audio.clips.cut_segments` gives it, with ``n_valid`` real samples
    in each, starting at ``starts_s``. Where segments overlap (``base.hop_s <
    base.segment_s``) the earlier one's samples are kept; a gap between them is skipped.
    """
    starts = np.round(np.asarray(starts_s, dtype=np.float64) * sample_rate).astype(np.int64)
    pieces, covered = [np.zeros(0, np.float32)], 0
    for signal, start, valid in zip(segments, starts, n_valid, strict=True):
        pieces.append(signal[max(start, covered) - start : valid])
        covered = max(covered, start + int(valid))
    return np.concatenate(pieces).astype(np.float32, copy=False)


def audio_copies(
    job: ClipJob, clip: ClipSegments, settings: FunctionalsSettings
) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """A clip's segments as ``audio.h5`` has them: ``(augmentation, segments, kept)`` for
    the originals (all kept) and, for a clip to augment, one noisy copy per
    ``augment.snr_db`` value (kept: the segments that got noise, i.e. not all-zero)."""
    copies = [("", clip.segments, np.ones(len(clip.segments), dtype=bool))]
    for snr in settings.snr_db if job.augment else ():
        rng = clip_rng(settings.seed, job.clip_id, snr_name(snr))
        copies.append((snr_name(snr), *noisy_copies(clip.segments, clip.n_valid, snr, rng)))
    return copies


def row_signals(
    job: ClipJob, clip: ClipSegments, settings: FunctionalsSettings, level: str
) -> Iterator[tuple[int, str, np.ndarray]]:
    """``(segment, augmentation, signal)`` of each row of the clip at ``level``, in the
    order of ``audio.h5``: the originals, then one block per ``augment.snr_db`` value."""
    for name, signals, kept in audio_copies(job, clip, settings):
        if level == "segment":
            for i in np.flatnonzero(kept):
                yield int(i), name, signals[i, : clip.n_valid[i]]
        elif kept.any():
            yield 0, name, covered_audio(signals, clip.n_valid, clip.starts_s, settings.sample_rate)


def clip_functionals(
    job: ClipJob, settings: FunctionalsSettings, set_name: str, level: str
) -> ClipResult:
    """One clip's rows of table ``(set_name, level)``, or the reason it gives none."""
    try:
        clip = clip_segments(job, settings.segments, settings.sample_rate, settings.max_missing_s)
    except BadInputError as error:
        return ClipResult(job.clip_id, job.path, reject=error.reason)
    result = ClipResult(job.clip_id, job.path)
    x, segments, names, clipped = [], [], [], 0
    for segment, name, signal in row_signals(job, clip, settings, level):
        values = functionals(signal, settings.sample_rate, set_name)
        bad = int(np.count_nonzero(~np.isfinite(values)))
        if bad:
            where = f"segment {segment}" if level == "segment" else "the clip"
            result.reject = (
                f"openSMILE {FEATURE_SETS[set_name]} functionals of {where}"
                f" ({name or 'original'}) are not finite ({bad} of {len(values)} values) on "
                f"{len(signal) / settings.sample_rate:.3f} s of real audio; openSMILE gives "
                f"NaN for less than about {MIN_SIGNAL_S:g} s"
            )
            return result
        x.append(values)
        segments.append(segment)
        names.append(name)
        clipped += past_full_scale(signal)
    result.x = np.stack(x)
    starts = clip.starts_s[segments] if level == "segment" else np.zeros(len(segments))
    result.rows = clip_rows(job, segments, starts, names)
    result.counts = {"corrupt_packets": clip.corrupt_packets, "clipped_samples": clipped}
    return result


# --------------------------------------------------------------------------- the stage


def build_functionals(
    index: pd.DataFrame,
    params: Params,
    out_dir: str | Path,
    rejects_path: str | Path,
    n_jobs: int | None = None,
) -> dict[str, dict[str, Any]]:
    """Stage build_functionals: ``<set>.h5`` and ``<set>_clip.h5`` into ``out_dir`` for each
    ``functionals.sets`` entry, the rejects of all of them into ``rejects_path``.

    Each table is one pass over the clips on ``n_jobs`` processes (default
    ``base.n_jobs``; or on a Dask cluster, ``base.backend``) through
    :func:`avemotion.clip_stage.run_clip_stage`, which also writes the empty tables of a
    run without audio. Decoding costs a few ms per clip next to openSMILE's ~35 ms per
    2 s segment, so the passes decode again rather than feed several writers at once.
    Tables of sets no longer listed are removed. The report has one line per table and
    rejected clip (``stage`` names the table). Returns each table's summary by table name.
    """
    settings = FunctionalsSettings.from_params(params)
    modalities = params.base.modalities
    workers = Workers.from_params(params.base, n_jobs)
    jobs = clip_jobs(index, "audio", augment=bool(settings.snr_db))
    out_dir, rejects_path = Path(out_dir), Path(rejects_path)
    rejects_path.unlink(missing_ok=True)  # a killed run leaves no report
    out_dir.mkdir(parents=True, exist_ok=True)  # the folder is the output, even when empty
    for set_name in FEATURE_SETS.keys() - set(settings.sets):
        for level in LEVELS:
            (out_dir / f"{table_name(set_name, level)}.h5").unlink(missing_ok=True)
    rejects_path.parent.mkdir(parents=True, exist_ok=True)
    summaries: dict[str, dict[str, Any]] = {}
    rejects: list[Reject] = []
    with tempfile.TemporaryDirectory(dir=rejects_path.parent, prefix=".functionals-") as tmp:
        for set_name in settings.sets:
            for level in LEVELS:
                table = table_name(set_name, level)
                stage = ClipStage(
                    f"{STAGE}/{table}",
                    "audio",
                    (len(feature_names(set_name)),),
                    np.float32,
                    settings.attrs(set_name, level),
                )
                worker = functools.partial(
                    clip_functionals, settings=settings, set_name=set_name, level=level
                )
                results = map_clips(worker, jobs, workers, desc=f"functionals {table}")
                part = Path(tmp) / f"{table}.csv"
                try:
                    summaries[table] = run_clip_stage(
                        stage, modalities, len(index), results, out_dir / f"{table}.h5", part
                    )
                except BadInputError as error:  # no clip gave rows: the report says why
                    if error.path != str(part):
                        raise
                    write_rejects(rejects_path, rejects + read_rejects(part))
                    raise BadInputError(error.reason, rejects_path) from None
                rejects += read_rejects(part)
    write_rejects(rejects_path, rejects)
    return summaries


def summarise(table: str, summary: dict[str, Any]) -> str:
    """One table's line of the stage's report."""
    if summary.get("skipped"):
        return f"functionals {table}: {summary['skipped']}; wrote an empty table"
    return (
        f"functionals {table}: {summary['clips_written']} of {summary['clips']} clips -> "
        f"{summary['rows']} rows ({summary['augmented_rows']} augmented); "
        f"{summary['rejected']} rejected; {summary.get('clipped_samples', 0)} samples clipped"
    )
