"""Dataset adapters: turn a corpus folder into one :class:`ClipRecord` per clip.

Each adapter knows one corpus's layout and naming scheme and maps its emotion names to
the shared vocabulary :data:`EMOTIONS`. Adapters only read names and side files; whether
a file actually decodes is checked by the index stage. A media file whose name or place
does not give a label is yielded as an :class:`Unlabelled` with the reason, so that it
lands in ``data/rejects.csv`` instead of vanishing.

Select one with ``data.dataset`` and ``data.root`` in ``params.yaml``; adapter-specific
settings go in ``data.options``.
"""

from __future__ import annotations

import csv
import heapq
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from avemotion.errors import BadInputError
from avemotion.media import MEDIA_EXTENSIONS

#: The shared emotion vocabulary every adapter maps into.
EMOTIONS: tuple[str, ...] = (
    "neutral",
    "calm",
    "happy",
    "sad",
    "angry",
    "fearful",
    "disgust",
    "surprised",
    "contempt",
)
GENDERS: tuple[str, ...] = ("male", "female", "unknown")


@dataclass(frozen=True)
class ClipRecord:
    """One labelled clip as an adapter reads it from the corpus."""

    path: Path
    dataset: str
    clip_id: str
    speaker: str
    gender: str
    emotion: str
    sentence: str = ""
    fold: int | None = None  # only a manifest's own fold column sets this


@dataclass(frozen=True)
class Unlabelled:
    """A media file whose label cannot be read from the corpus, and why."""

    path: Path
    reason: str


AdapterOutput = Iterator[ClipRecord | Unlabelled]
Adapter = Callable[..., AdapterOutput]
ADAPTERS: dict[str, Adapter] = {}


def register(name: str) -> Callable[[Adapter], Adapter]:
    """Add an adapter to :data:`ADAPTERS` under ``name`` (the value of ``data.dataset``)."""

    def decorator(function: Adapter) -> Adapter:
        ADAPTERS[name] = function
        return function

    return decorator


def iter_records(
    dataset: str, root: str | Path, options: dict[str, Any] | None = None
) -> AdapterOutput:
    """Walk ``root`` with the adapter named ``dataset``.

    Raises :class:`BadInputError` for an unknown adapter, a missing root or bad options.
    """
    if dataset not in ADAPTERS:
        raise BadInputError(f"unknown data.dataset {dataset!r}; choose one of {sorted(ADAPTERS)}")
    root = Path(root)
    if not root.exists():
        raise BadInputError("data.root does not exist", root)
    try:
        yield from ADAPTERS[dataset](root, **(options or {}))
    except TypeError as error:
        raise BadInputError(f"bad data.options for {dataset}: {error}") from None


def media_files(root: Path) -> list[Path]:
    """Media files under ``root`` (by extension), sorted so that every walk is the same.

    Symbolic links are followed, to folders and to files: a corpus folder made of links
    to actor folders lists the same clips as the folders themselves. Paths are given as
    reached under ``root`` (not resolved), since adapters read labels from them.

    Each real folder (by device and inode) is walked once, so a link to an ancestor
    ends instead of looping and a file inside a folder reached through two links is
    listed once. A folder reached several ways is listed under the path that crosses the
    fewest links, then the first in sort order: a folder reached both directly and by a
    link keeps its direct path. Files are not merged by resolved path: two names linking
    to the same data may carry different labels, and the index stage rejects the second
    as a duplicate, naming the first. A broken link with a media name is listed, so that
    the index stage rejects it with its reason; a broken link with another name (perhaps
    once a folder) is passed over like any other file that is not media.

    Raises :class:`BadInputError` for a folder that cannot be read.
    """
    found: list[Path] = []
    walked: set[tuple[int, int]] = set()
    # (links crossed to reach it, path parts, path): a heap pops the folder to walk next.
    waiting: list[tuple[int, tuple[str, ...], Path]] = [(0, root.parts, root)]
    while waiting:
        n_links, _, folder = heapq.heappop(waiting)
        try:
            status = folder.stat()
            if (status.st_dev, status.st_ino) in walked:
                continue
            walked.add((status.st_dev, status.st_ino))
            with os.scandir(folder) as listing:
                entries = list(listing)
        except OSError as error:
            raise BadInputError(f"cannot read folder ({error.strerror or error})", folder) from None
        for entry in entries:
            path = folder / entry.name
            if _answers(entry.is_dir):  # a folder or a link to one; a link loop is not
                heapq.heappush(waiting, (n_links + entry.is_symlink(), path.parts, path))
            elif path.suffix.lower() in MEDIA_EXTENSIONS and (
                _answers(entry.is_file) or not path.exists()  # a file, or a broken link
            ):
                found.append(path)
    return sorted(found)


def _answers(test: Callable[[], bool]) -> bool:
    """``entry.is_dir`` / ``entry.is_file`` (links followed), False where the link cannot
    be followed (a loop, ELOOP) instead of an error."""
    try:
        return test()
    except OSError:
        return False


def _gender_map(genders: dict[str, str] | None, source: str) -> dict[str, str]:
    mapping: dict[str, str] = {}
    for speaker, gender in (genders or {}).items():
        value = _normalise_gender(str(gender))
        if value == "unknown":
            raise BadInputError(
                f"{source}: gender {gender!r} of speaker {speaker!r} is not male/female"
            )
        mapping[str(speaker)] = value
    return mapping


def _normalise_gender(value: str) -> str:
    value = value.strip().lower()
    if value in ("m", "male", "man"):
        return "male"
    if value in ("f", "female", "woman"):
        return "female"
    return "unknown"


# --- demo -------------------------------------------------------------------------------

DEMO_NAME = re.compile(r"^(?P<speaker>spk\d+)_(?P<gender>[mf])_(?P<emotion>[a-z]+)_(?P<take>\d+)$")


@register("demo")
def demo(root: Path) -> AdapterOutput:
    """The generated demo set: ``<speaker>_<m|f>_<emotion>_<take>.mp4`` (stages/make_demo.py)."""
    for path in media_files(root):
        match = DEMO_NAME.match(path.stem)
        if not match or match["emotion"] not in EMOTIONS:
            yield Unlabelled(path, "unknown label: name is not <speaker>_<m|f>_<emotion>_<take>")
            continue
        yield ClipRecord(
            path=path,
            dataset="demo",
            clip_id=path.stem,
            speaker=match["speaker"],
            gender=_normalise_gender(match["gender"]),
            emotion=match["emotion"],
            sentence=match["take"],
        )


# --- RAVDESS ----------------------------------------------------------------------------

RAVDESS_NAME = re.compile(r"^(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)$")
RAVDESS_EMOTIONS = {
    "01": "neutral",
    "02": "calm",
    "03": "happy",
    "04": "sad",
    "05": "angry",
    "06": "fearful",
    "07": "disgust",
    "08": "surprised",
}
RAVDESS_STATEMENTS = {"01": "Kids are talking by the door", "02": "Dogs are sitting by the door"}
RAVDESS_CHANNELS = {"01": "speech", "02": "song"}


@register("ravdess")
def ravdess(root: Path, vocal_channels: tuple[str, ...] = ("speech", "song")) -> AdapterOutput:
    """RAVDESS: ``MM-VC-EE-II-SS-RR-AA.ext`` (Livingstone and Russo 2018).

    Speaker is the actor number; odd actors are male, even actors female. Speech and song
    are both taken unless ``vocal_channels`` narrows them. The clip id keeps the modality
    code, so the audio-visual and video-only versions of a take are different clips.
    """
    for path in media_files(root):
        match = RAVDESS_NAME.match(path.stem)
        if not match:
            yield Unlabelled(path, "unknown label: name is not a RAVDESS MM-VC-EE-II-SS-RR-AA code")
            continue
        _modality, channel, emotion, _intensity, statement, _repetition, actor = match.groups()
        if emotion not in RAVDESS_EMOTIONS or channel not in RAVDESS_CHANNELS:
            yield Unlabelled(path, f"unknown label: emotion code {emotion} or channel {channel}")
            continue
        if RAVDESS_CHANNELS[channel] not in vocal_channels:
            continue
        yield ClipRecord(
            path=path,
            dataset="ravdess",
            clip_id=path.stem,
            speaker=actor,
            gender="male" if int(actor) % 2 else "female",
            emotion=RAVDESS_EMOTIONS[emotion],
            sentence=RAVDESS_STATEMENTS.get(statement, statement),
        )


# --- CREMA-D ----------------------------------------------------------------------------

CREMA_NAME = re.compile(
    r"^(?P<actor>\d{4})_(?P<sentence>[A-Z]{3})_(?P<emotion>[A-Z]{3})_(?P<level>[A-Z]{2})$"
)
CREMA_EMOTIONS = {
    "ANG": "angry",
    "DIS": "disgust",
    "FEA": "fearful",
    "HAP": "happy",
    "NEU": "neutral",
    "SAD": "sad",
}
CREMA_SENTENCES = {
    "IEO": "It's eleven o'clock",
    "TIE": "That is exactly what happened",
    "IOM": "I'm on my way to the meeting",
    "IWW": "I wonder what this is about",
    "TAI": "The airplane is almost full",
    "MTI": "Maybe tomorrow it will be cold",
    "IWL": "I would like a new alarm clock",
    "ITH": "I think I have a doctor's appointment",
    "DFA": "Don't forget a jacket",
    "ITS": "I think I've seen this before",
    "TSI": "The surface is slick",
    "WSI": "We'll stop in a couple of minutes",
}


@register("crema_d")
def crema_d(root: Path, demographics: str | None = None) -> AdapterOutput:
    """CREMA-D: ``AAAA_SSS_EEE_LL.ext`` in ``AudioWAV/``, ``VideoFlash/`` or flat (Cao et al. 2014).

    Gender comes from the corpus's ``VideoDemographics.csv`` (columns ``ActorID`` and
    ``Sex``): the one named by ``demographics``, else one lying in ``root`` or its
    parent. Without it every clip's gender is ``unknown``, and the index summary says so.
    """
    genders = _crema_genders(root, demographics)
    for path in media_files(root):
        match = CREMA_NAME.match(path.stem)
        if not match or match["emotion"] not in CREMA_EMOTIONS:
            yield Unlabelled(path, "unknown label: name is not a CREMA-D AAAA_SSS_EEE_LL code")
            continue
        yield ClipRecord(
            path=path,
            dataset="crema_d",
            clip_id=path.stem,
            speaker=match["actor"],
            gender=genders.get(match["actor"], "unknown"),
            emotion=CREMA_EMOTIONS[match["emotion"]],
            sentence=CREMA_SENTENCES.get(match["sentence"], match["sentence"]),
        )


def _crema_genders(root: Path, demographics: str | None) -> dict[str, str]:
    if demographics is not None:
        path = Path(demographics)
        if not path.is_file():
            raise BadInputError("data.options.demographics not found", path)
    else:
        found = [p / "VideoDemographics.csv" for p in (root, root.parent)]
        found = [p for p in found if p.is_file()]
        if not found:
            return {}
        path = found[0]
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows or not {"ActorID", "Sex"} <= set(rows[0]):
        raise BadInputError("demographics CSV needs the columns ActorID and Sex", path)
    return {row["ActorID"].strip(): _normalise_gender(row["Sex"]) for row in rows}


# --- eNTERFACE'05 -----------------------------------------------------------------------

ENTERFACE_EMOTIONS = {
    "anger": "angry",
    "disgust": "disgust",
    "fear": "fearful",
    "happiness": "happy",
    "sadness": "sad",
    "surprise": "surprised",
}
_SUBJECT = re.compile(r"^subject\s*(\d+)$", re.IGNORECASE)
_SENTENCE = re.compile(r"^sentence\s*(\d+)$", re.IGNORECASE)


@register("enterface05")
def enterface05(root: Path, genders: dict[str, str] | None = None) -> AdapterOutput:
    """eNTERFACE'05: ``subject N/<emotion>/sentence M/*.avi`` (Martin et al. 2006).

    Some subjects' folders lack the sentence level (``subject N/<emotion>/*.avi``); their
    clips get the sentence from the file name's last number when it has one. The corpus
    ships no gender table: give one as ``genders: {"1": male, ...}`` (subject numbers),
    else gender is ``unknown``.
    """
    gender_of = _gender_map(genders, "data.options.genders")
    for path in media_files(root):
        parts = path.relative_to(root).parts
        subject = next((m for m in map(_SUBJECT.match, parts) if m), None)
        emotion = next(
            (ENTERFACE_EMOTIONS[p.lower()] for p in parts if p.lower() in ENTERFACE_EMOTIONS), None
        )
        if subject is None or emotion is None:
            yield Unlabelled(path, "unknown label: not under 'subject N/<emotion>/'")
            continue
        sentence = next((m[1] for m in map(_SENTENCE.match, parts) if m), None)
        if sentence is None:
            digits = re.findall(r"(\d+)", path.stem)
            sentence = digits[-1] if digits else ""
        number = str(int(subject[1]))
        yield ClipRecord(
            path=path,
            dataset="enterface05",
            clip_id=f"s{number}_{emotion}_{path.stem}",
            speaker=number,
            gender=gender_of.get(number, "unknown"),
            emotion=emotion,
            sentence=sentence,
        )


# --- SAVEE ------------------------------------------------------------------------------

SAVEE_NAME = re.compile(r"^(?P<code>sa|su|a|d|f|h|n)(?P<number>\d+)$")
SAVEE_EMOTIONS = {
    "a": "angry",
    "d": "disgust",
    "f": "fearful",
    "h": "happy",
    "n": "neutral",
    "sa": "sad",
    "su": "surprised",
}


@register("savee")
def savee(root: Path) -> AdapterOutput:
    """SAVEE: ``<speaker>/<code><nn>.avi`` with codes a d f h n sa su; four male speakers
    (Haq and Jackson 2010)."""
    for path in media_files(root):
        match = SAVEE_NAME.match(path.stem.lower())
        if not match or path.parent == root:
            yield Unlabelled(path, "unknown label: not <speaker>/<a|d|f|h|n|sa|su><nn>")
            continue
        speaker = path.parent.name
        yield ClipRecord(
            path=path,
            dataset="savee",
            clip_id=f"{speaker}_{path.stem}",
            speaker=speaker,
            gender="male",
            emotion=SAVEE_EMOTIONS[match["code"]],
            sentence=match["number"],
        )


# --- RML --------------------------------------------------------------------------------

RML_DEFAULT_PATTERN = r"^(?P<emotion>an|di|fe|ha|sa|su)"
RML_EMOTIONS = {
    "an": "angry",
    "di": "disgust",
    "fe": "fearful",
    "ha": "happy",
    "sa": "sad",
    "su": "surprised",
}


@register("rml")
def rml(
    root: Path,
    pattern: str = RML_DEFAULT_PATTERN,
    emotions: dict[str, str] | None = None,
    genders: dict[str, str] | None = None,
) -> AdapterOutput:
    """RML (Wang and Guan 2008): subject folders, emotion code at the start of the file name.

    The layout could not be checked against the corpus here, so the file-name ``pattern``
    (a regex with a named group ``emotion``, matched against the stem) and the code to
    emotion map are options. The speaker is the clip's top folder under ``root``.
    """
    regex = _compile(pattern, "data.options.pattern")
    codes = {**RML_EMOTIONS, **(emotions or {})}
    gender_of = _gender_map(genders, "data.options.genders")
    for path in media_files(root):
        match = regex.match(path.stem)
        code = match["emotion"].lower() if match else None
        relative = path.relative_to(root)
        if code not in codes or len(relative.parts) < 2:
            yield Unlabelled(
                path, f"unknown label: name does not match {pattern!r} under a subject folder"
            )
            continue
        speaker = relative.parts[0]
        yield ClipRecord(
            path=path,
            dataset="rml",
            clip_id=f"{speaker}_{path.stem}",
            speaker=speaker,
            gender=gender_of.get(speaker, "unknown"),
            emotion=codes[code],
        )


def _compile(pattern: str, source: str) -> re.Pattern[str]:
    try:
        regex = re.compile(pattern)
    except re.error as error:
        raise BadInputError(f"{source} is not a valid regex: {error}") from None
    if "emotion" not in regex.groupindex:
        raise BadInputError(f"{source} needs a named group (?P<emotion>...)")
    return regex


# --- manifest ---------------------------------------------------------------------------


@register("manifest")
def manifest(root: Path) -> AdapterOutput:
    """A user's own recordings, listed in a CSV.

    ``data.root`` is the CSV (or a folder holding ``manifest.csv``) with the columns
    ``path``, ``speaker``, ``emotion`` and optionally ``gender``, ``sentence``,
    ``clip_id`` and ``fold`` (for the ``fixed`` protocol). Relative paths are relative to
    the CSV's folder; emotions must be names from :data:`EMOTIONS`.
    """
    csv_path = root / "manifest.csv" if root.is_dir() else root
    if not csv_path.is_file():
        raise BadInputError("manifest CSV not found", csv_path)
    with csv_path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        missing = {"path", "speaker", "emotion"} - set(reader.fieldnames or [])
        if missing:
            raise BadInputError(f"manifest lacks columns {sorted(missing)}", csv_path)
        rows = list(reader)
    for line, row in enumerate(rows, start=2):
        path = Path(row["path"])
        path = path if path.is_absolute() else csv_path.parent / path
        emotion = row["emotion"].strip().lower()
        if emotion not in EMOTIONS:
            yield Unlabelled(
                path, f"unknown label: emotion {row['emotion']!r} (manifest line {line})"
            )
            continue
        fold = (row.get("fold") or "").strip()
        if fold and not fold.lstrip("-").isdigit():
            raise BadInputError(f"line {line}: fold {fold!r} is not an integer", csv_path)
        yield ClipRecord(
            path=path,
            dataset="manifest",
            clip_id=(row.get("clip_id") or "").strip() or path.stem,
            speaker=row["speaker"].strip(),
            gender=_normalise_gender(row.get("gender") or ""),
            emotion=emotion,
            sentence=(row.get("sentence") or "").strip(),
            fold=int(fold) if fold else None,
        )
