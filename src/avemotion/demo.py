"""The generated demo dataset: drawn speaking faces with synthetic voices, as real ``.mp4`` files.

A fresh clone has no emotion corpus, so the first stage draws one. Each clip is a
speaker (face shape, skin tone, hair, pitch, formants, speaking rate) saying a few
syllables in one emotion, muxed with PyAV as H.264 video and AAC audio. The emotion
changes both modalities, but not equally: happy and angry share a loud, fast, high
voice and differ in the face (smile against frown); neutral and sad share a face (sad
only slightly changed) and differ in the voice (sad is low, slow and quiet). Per-take
intensity, lighting, pixel noise and background noise keep either modality alone
short of perfect, so fusion has something to add.

Everything is fixed by ``demo.seed``: each speaker's traits come from
``(seed, speaker)`` and each take's randomness from ``(seed, clip id)``, so clips can be
made in parallel in any order; libx264 runs single-threaded without macroblock-tree
rate control, so that the encoded bytes (not just the decoded frames) repeat.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import av
import cv2
import numpy as np
from scipy.ndimage import uniform_filter1d
from scipy.signal import sosfilt

from avemotion.atomic import atomic_path
from avemotion.augment import clip_rng
from avemotion.errors import BadInputError
from avemotion.parallel import map_clips
from avemotion.params.schema import DemoParams

#: Fixed-point bits for OpenCV drawing: coordinates carry 1/16 pixel, so slow motion is smooth.
_SHIFT = 4
_ONE = 1 << _SHIFT
_AA = cv2.LINE_AA
Point = tuple[float, float]
Colour = tuple[float, ...]  # BGR


@dataclass(frozen=True)
class EmotionStyle:
    """How one emotion moves the face and the voice, at full intensity.

    Face: ``brow_raise`` and ``brow_inner`` are fractions of the head's half-height
    (positive = up); ``mouth_curve`` lifts the mouth corners (smile > 0 > frown);
    ``mouth_width`` and ``mouth_open`` scale the speaker's mouth; ``eye_open`` scales the
    eye opening; ``motion`` scales head motion. Voice: ``pitch_st`` shifts the mean pitch
    in semitones, ``range_st`` is the intonation range, ``tempo`` scales the syllable rate,
    ``loud_db`` the level, ``tilt`` the harmonic roll-off (lower = brighter, tenser),
    ``pause_s`` the pause between words.
    """

    brow_raise: float = 0.0
    brow_inner: float = 0.0
    mouth_curve: float = 0.0
    mouth_width: float = 1.0
    mouth_open: float = 1.0
    eye_open: float = 1.0
    motion: float = 1.0
    pitch_st: float = 0.0
    range_st: float = 2.0
    tempo: float = 1.0
    loud_db: float = 0.0
    tilt: float = 1.3
    pause_s: float = 0.15


# fmt: off
#: The emotions the demo can draw, at full intensity; a take is pulled toward neutral by its
#: intensity. Columns are the :class:`EmotionStyle` fields in order. Happy and angry share the
#: voice (high, wide, fast, loud) and differ in the face; neutral and sad share the face and
#: differ in the voice (sad: low, flat, slow, quiet, long pauses).
_STYLE_TABLE: dict[str, tuple[float, ...]] = {
    #          brow   brow   mouth  mouth  mouth  eye   head    pitch range tempo  loud  tilt  pause
    #          raise  inner  curve  width  open   open  motion  st    st           dB          s
    "neutral":  (0.00,  0.00,  0.00, 1.00,  1.0,  1.00, 1.0,    0.0,  2.5,  1.00,  0.0, 1.30, 0.15),
    "happy":    (0.05,  0.00,  1.00, 1.15,  1.2,  0.80, 1.7,    4.0,  5.0,  1.30,  6.0, 1.05, 0.10),
    "sad":      (0.00,  0.03, -0.10, 1.00,  0.85, 0.94, 0.85,  -4.0,  0.6,  0.65, -8.0, 1.80, 0.45),
    "angry":   (-0.06, -0.09, -0.35, 0.90,  1.1,  1.05, 1.6,    3.5,  4.5,  1.30,  6.5, 0.95, 0.10),
    "fear":     (0.10,  0.08, -0.20, 1.10,  1.0,  1.25, 1.3,    5.0,  3.0,  1.20,  1.0, 1.30, 0.12),
    "surprise": (0.15,  0.00,  0.00, 0.85,  1.6,  1.35, 1.3,    5.0,  6.0,  1.05,  3.0, 1.15, 0.15),
    "disgust": (-0.05, -0.06, -0.60, 0.95,  0.7,  0.80, 1.0,   -1.5,  2.5,  0.85,  0.0, 1.30, 0.22),
}
# fmt: on
EMOTION_STYLES: dict[str, EmotionStyle] = {
    name: EmotionStyle(*row) for name, row in _STYLE_TABLE.items()
}
NEUTRAL = EMOTION_STYLES["neutral"]
#: Style fields that act on the voice; the others act on the face.
_VOICE_FIELDS = frozenset({"pitch_st", "range_st", "tempo", "loud_db", "tilt", "pause_s"})

#: Vowel formants (F1, F2, F3 in Hz, adult male); a speaker's formant scale moves them.
_VOWELS = np.array(
    [[730, 1090, 2440], [270, 2290, 3010], [300, 870, 2240], [530, 1840, 2480], [570, 840, 2410]],
    dtype=np.float64,
)
_FORMANT_BANDWIDTHS = np.array([90.0, 110.0, 170.0])

_SKIN_TONES = np.array(  # BGR, light to dark; a speaker's tone lies between two of these
    [[190, 205, 240], [160, 190, 230], [140, 175, 220], [110, 150, 200], [85, 125, 175],
     [70, 100, 150], [55, 80, 120]],
    dtype=np.float64,
)  # fmt: skip
_HAIR_COLOURS = np.array(
    [[25, 25, 30], [30, 45, 70], [40, 70, 110], [60, 110, 160], [150, 150, 155]], dtype=np.float64
)


@dataclass(frozen=True)
class SpeakerTraits:
    """What stays the same across one speaker's clips (drawn by :func:`speaker_traits`)."""

    speaker: str
    gender: str  # "m" or "f"
    pitch_hz: float  # mean pitch of a neutral take
    formant_scale: float  # vocal tract: ~1.0 male, ~1.15 female
    rate_hz: float  # syllables per second of a neutral take
    level_db: float  # speaking level
    skin_bgr: tuple[float, float, float]
    hair_bgr: tuple[float, float, float]
    iris_bgr: tuple[float, float, float]
    shirt_bgr: tuple[float, float, float]
    head_w: float  # head half-width, in pixels at 240 lines
    head_aspect: float  # half-height over half-width
    eye_spacing: float  # eye centre offset over half-width
    eye_size: float
    mouth_w: float  # mouth half-width over head half-width
    brow_thick: float
    long_hair: bool
    expressiveness: float  # scales this speaker's facial expressions
    background_seed: int


@dataclass(frozen=True)
class ClipSpec:
    """Everything that fixes one clip. ``draw_face=False`` gives background only (no face);
    ``with_audio=False`` leaves the audio stream out. ``intensity`` in [0, 1] scales the
    emotion's departure from neutral; None draws it from the clip's seed."""

    speaker: SpeakerTraits
    emotion: str
    duration_s: float
    seed: int
    fps: int = 25
    width: int = 320
    height: int = 240
    sample_rate: int = 16000
    intensity: float | None = None
    draw_face: bool = True
    with_audio: bool = True


def speaker_traits(speaker: str, gender: str, seed: int) -> SpeakerTraits:
    """Draw one speaker's face and voice from ``(seed, speaker)``; ``gender`` is "m" or "f"."""
    if gender not in ("m", "f"):
        raise BadInputError(f"speaker gender must be 'm' or 'f', got {gender!r}")
    rng = clip_rng(seed, speaker, "speaker")
    female = gender == "f"
    pitch = rng.uniform(200, 235) if female else rng.uniform(105, 132)
    mix = rng.uniform(0, len(_SKIN_TONES) - 1)
    low = int(np.floor(mix))
    high = min(low + 1, len(_SKIN_TONES) - 1)
    skin = _SKIN_TONES[low] + (mix - low) * (_SKIN_TONES[high] - _SKIN_TONES[low])
    hair = _HAIR_COLOURS[rng.integers(len(_HAIR_COLOURS))] * rng.uniform(0.8, 1.1)
    # Hair darker than the forehead, as in the faces the Viola-Jones cascade was trained on.
    hair *= min(1.0, 0.6 * skin.mean() / hair.mean())
    return SpeakerTraits(
        speaker=speaker,
        gender=gender,
        pitch_hz=float(pitch),
        formant_scale=float(rng.uniform(1.1, 1.22) if female else rng.uniform(0.93, 1.05)),
        rate_hz=float(rng.uniform(3.4, 4.8)),
        level_db=float(rng.uniform(-3, 3)),
        skin_bgr=tuple(float(v) for v in skin),
        hair_bgr=tuple(float(v) for v in np.clip(hair, 0, 255)),
        iris_bgr=tuple(
            float(v) for v in rng.choice([[40, 60, 90], [120, 90, 50], [40, 40, 45], [70, 110, 80]])
        ),
        shirt_bgr=tuple(float(v) for v in rng.uniform(30, 220, 3)),
        head_w=float(rng.uniform(44, 52) if female else rng.uniform(47, 55)),
        head_aspect=float(rng.uniform(1.22, 1.38)),
        eye_spacing=float(rng.uniform(0.36, 0.42)),
        eye_size=float(rng.uniform(0.9, 1.1)),
        mouth_w=float(rng.uniform(0.32, 0.42)),
        brow_thick=float(rng.uniform(0.8, 1.2) if female else rng.uniform(1.0, 1.4)),
        long_hair=bool(female or rng.random() < 0.15),
        expressiveness=float(rng.uniform(0.75, 1.15)),
        background_seed=int(rng.integers(2**31)),
    )


# --------------------------------------------------------------------------------------------
# Syllables: one timing plan drives the voice and the mouth (lip sync)


@dataclass(frozen=True)
class _Syllables:
    onset_s: np.ndarray  # (k,)
    length_s: np.ndarray  # (k,)
    peak: np.ndarray  # (k,) relative loudness
    vowel: np.ndarray  # (k,) index into _VOWELS
    accent: np.ndarray  # (k,) pitch accent in [-1, 1]


def _syllables(
    duration_s: float, rate_hz: float, pause_s: float, rng: np.random.Generator
) -> _Syllables:
    """Words of 2-4 syllables separated by pauses, from a short lead-in to near the end."""
    onsets, lengths = [], []
    t = rng.uniform(0.15, 0.35)
    end = duration_s - 0.2
    full = False
    while not full:
        for _ in range(int(rng.integers(2, 5))):  # one word
            length = rng.uniform(0.75, 1.25) / rate_hz
            if t + length > end:
                full = True
                break
            onsets.append(t)
            lengths.append(length)
            t += length
        t += pause_s * rng.uniform(0.6, 1.5)
    k = len(onsets)
    return _Syllables(
        onset_s=np.asarray(onsets),
        length_s=np.asarray(lengths),
        peak=rng.uniform(0.6, 1.0, k),
        vowel=rng.integers(len(_VOWELS), size=k),
        accent=rng.uniform(-1, 1, k),
    )


def _envelope(plan: _Syllables, times_s: np.ndarray) -> np.ndarray:
    """Syllable energy envelope in [0, 1] at ``times_s`` (any shape): a raised sine per syllable."""
    if len(plan.onset_s) == 0:
        return np.zeros_like(times_s, dtype=np.float64)
    k = np.clip(np.searchsorted(plan.onset_s, times_s, side="right") - 1, 0, None)
    phase = (times_s - plan.onset_s[k]) / plan.length_s[k]
    inside = (phase >= 0) & (phase <= 1)
    return np.where(inside, plan.peak[k] * np.sin(np.pi * np.clip(phase, 0, 1)) ** 0.7, 0.0)


# --------------------------------------------------------------------------------------------
# Voice


def _resonators(formants_hz: np.ndarray, sample_rate: int) -> np.ndarray:
    """Klatt cascade resonators (unit gain at 0 Hz) as second-order sections, shape (3, 6)."""
    radius = np.exp(-np.pi * _FORMANT_BANDWIDTHS / sample_rate)
    b1 = 2 * radius * np.cos(2 * np.pi * np.minimum(formants_hz, 0.45 * sample_rate) / sample_rate)
    b2 = -(radius**2)
    gain = 1 - b1 - b2
    zeros = np.zeros_like(gain)
    return np.stack([gain, zeros, zeros, np.ones_like(gain), -b1, -b2], axis=1)


def _synthesize_voice(
    spec: ClipSpec, style: EmotionStyle, plan: _Syllables, n_samples: int, rng: np.random.Generator
) -> np.ndarray:
    """Mono float32 voice (n_samples,) in [-1, 1]: harmonic source with a pitch contour,
    vowel formants that change per syllable, the syllable envelope, and background noise."""
    sr = spec.sample_rate
    t = np.arange(n_samples) / sr
    traits = spec.speaker
    # Pitch: per-syllable accents joined linearly, falling over the utterance, with jitter.
    centres = plan.onset_s + plan.length_s / 2
    contour = np.interp(t, centres, plan.accent) if len(centres) else np.zeros_like(t)
    contour = style.range_st * contour - 0.6 * style.range_st * t / spec.duration_s
    contour += 0.15 * np.sin(2 * np.pi * rng.uniform(4, 6) * t + rng.uniform(0, 2 * np.pi))
    f0 = traits.pitch_hz * 2 ** ((style.pitch_st + contour + rng.normal(0, 0.6)) / 12)
    phase = (2 * np.pi * np.cumsum(f0) / sr % (2 * np.pi)).astype(np.float32)
    top_hz = min(5000.0, 0.45 * sr)  # voiced energy above ~5 kHz adds little but cost
    harmonics = np.arange(1, int(top_hz / f0.min()) + 1, dtype=np.float32)
    tilt = style.tilt + rng.normal(0, 0.08)
    amplitude = harmonics[None, :] ** -np.float32(tilt) * (
        harmonics[None, :] * f0[:, None].astype(np.float32) < top_hz
    )
    source = np.einsum("nk,nk->n", np.sin(phase[:, None] * harmonics[None, :]), amplitude)
    source = source.astype(np.float64)
    source += 0.05 * rng.standard_normal(n_samples)  # aspiration
    # Formants: filter through every vowel and cross-fade by which syllable is sounding.
    k = np.clip(np.searchsorted(plan.onset_s, t, side="right") - 1, 0, None)
    vowel = plan.vowel[k] if len(plan.vowel) else np.zeros(n_samples, dtype=int)
    weights = uniform_filter1d(np.eye(len(_VOWELS))[vowel], size=int(0.03 * sr), axis=0)
    formants = _VOWELS * traits.formant_scale * rng.uniform(0.96, 1.04)
    voiced = sum(
        weights[:, v] * sosfilt(_resonators(formants[v], sr), source) for v in range(len(_VOWELS))
    )
    voiced *= _envelope(plan, t)
    # Consonant-like bursts of high-passed noise at each syllable onset.
    burst = np.exp(-np.clip(t[:, None] - plan.onset_s[None, :], 0, None) / 0.012)
    burst *= t[:, None] >= plan.onset_s[None, :]
    noise = np.diff(rng.standard_normal(n_samples + 1))
    voiced += 0.3 * burst.sum(axis=1) * noise * np.sqrt(np.mean(voiced**2) + 1e-12)
    # Level: emotion, speaker, take; background hiss and hum at a fixed absolute level.
    rms = np.sqrt(np.mean(voiced[voiced != 0] ** 2)) if np.any(voiced) else 1.0
    level_db = style.loud_db + traits.level_db + rng.normal(0, 1.5)
    voice = voiced / rms * 0.06 * 10 ** (level_db / 20)
    hiss = 10 ** (rng.uniform(-48, -40) / 20) * rng.standard_normal(n_samples)
    hum = 10 ** (rng.uniform(-56, -46) / 20) * np.sin(2 * np.pi * 50 * t + rng.uniform(0, 6))
    return np.clip(voice + hiss + hum, -0.99, 0.99).astype(np.float32)


# --------------------------------------------------------------------------------------------
# Face


def _background(spec: ClipSpec) -> np.ndarray:
    """A cluttered backdrop fixed by the speaker (a room), shifted slightly per take."""
    rng = np.random.default_rng(spec.speaker.background_seed)
    h, w = spec.height, spec.width
    base = rng.uniform(60, 200, 3)
    ramp = np.linspace(0.8, 1.15, h)[:, None, None]
    image = np.broadcast_to(base * ramp, (h, w, 3)).copy()
    texture = cv2.resize(
        rng.uniform(-18, 18, (h // 16, w // 16, 1)).astype(np.float32),
        (w, h),
        interpolation=cv2.INTER_CUBIC,
    )
    image = np.clip(image + texture[..., None], 0, 255).astype(np.uint8)
    for _ in range(rng.integers(14, 26)):
        colour = tuple(float(v) for v in rng.uniform(20, 235, 3))
        kind = rng.integers(3)
        x, y = int(rng.uniform(0, w)), int(rng.uniform(0, h))
        if kind == 0:
            cv2.rectangle(
                image,
                (x, y),
                (x + int(rng.uniform(10, 70)), y + int(rng.uniform(10, 70))),
                colour,
                -1,
                _AA,
            )
        elif kind == 1:
            cv2.circle(image, (x, y), int(rng.uniform(5, 30)), colour, -1, _AA)
        else:
            end = (x + int(rng.uniform(-80, 80)), y + int(rng.uniform(-80, 80)))
            cv2.line(image, (x, y), end, colour, int(rng.integers(1, 5)), _AA)
    take = np.random.default_rng(spec.seed)
    shift = np.float32([[1, 0, take.uniform(-6, 6)], [0, 1, take.uniform(-4, 4)]])
    return cv2.warpAffine(image, shift, (w, h), borderMode=cv2.BORDER_REFLECT_101)


class _Painter:
    """Draws in the face's own frame (pixels, origin at the head centre, y down) after a
    rotation by ``roll_deg`` and a move to ``centre``: the head moves as one piece."""

    def __init__(self, image: np.ndarray, centre: tuple[float, float], roll_deg: float):
        self.image = image
        self.centre = np.asarray(centre)
        self.roll_deg = roll_deg
        angle = np.deg2rad(roll_deg)
        self.rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])

    def _fixed(self, points: np.ndarray) -> np.ndarray:
        placed = np.asarray(points, dtype=np.float64) @ self.rotation.T + self.centre
        return np.round(placed * _ONE).astype(np.int32)

    def ellipse(self, centre: Point, axes: Point, colour: Colour, angle_deg: float = 0.0) -> None:
        cx, cy = self._fixed(np.asarray([centre]))[0]
        ax = (max(int(axes[0] * _ONE + 0.5), 1), max(int(axes[1] * _ONE + 0.5), 1))
        cv2.ellipse(
            self.image,
            (int(cx), int(cy)),
            ax,
            angle_deg + self.roll_deg,
            0,
            360,
            colour,
            -1,
            _AA,
            _SHIFT,
        )

    def polygon(self, points: np.ndarray, colour: Colour) -> None:
        cv2.fillPoly(self.image, [self._fixed(points)], colour, _AA, _SHIFT)

    def line(self, points: np.ndarray, colour: Colour, thickness: float) -> None:
        cv2.polylines(
            self.image,
            [self._fixed(points)],
            False,
            colour,
            max(int(thickness + 0.5), 1),
            _AA,
            _SHIFT,
        )


def _shade(colour: tuple[float, ...], factor: float) -> tuple[float, ...]:
    return tuple(float(min(255.0, c * factor)) for c in colour)


def _arc(
    cx: float, cy: float, ax: float, ay: float, start_deg: float, stop_deg: float, n: int = 24
) -> np.ndarray:
    angle = np.deg2rad(np.linspace(start_deg, stop_deg, n))
    return np.stack([cx + ax * np.cos(angle), cy + ay * np.sin(angle)], axis=1)


@dataclass(frozen=True)
class _Pose:
    centre: tuple[float, float]
    roll_deg: float
    eye_open: float  # 0 = closed (blink) .. 1.3
    mouth_open: float  # pixels
    gaze: tuple[float, float]


def _draw_face(
    painter: _Painter, traits: SpeakerTraits, style: EmotionStyle, pose: _Pose, scale: float
) -> None:
    """One frame of the speaker's face in ``style`` (already scaled by intensity)."""
    a = traits.head_w * scale
    b = a * traits.head_aspect
    skin, hair = traits.skin_bgr, traits.hair_bgr
    p = painter
    # Shoulders, neck, hair behind the head, ears, head.
    p.ellipse((0, 2.25 * b), (2.3 * a, 1.05 * b), traits.shirt_bgr)
    if traits.long_hair:
        p.polygon(
            np.concatenate(
                [
                    _arc(0, 0, 1.2 * a, 1.15 * b, 180, 360),
                    _arc(0, 1.05 * b, 1.15 * a, 0.15 * b, 0, 180),
                ]
            ),
            _shade(hair, 0.9),
        )
    p.polygon(
        np.array(
            [[-0.45 * a, 0.5 * b], [0.45 * a, 0.5 * b], [0.5 * a, 1.35 * b], [-0.5 * a, 1.35 * b]]
        ),
        _shade(skin, 0.8),
    )
    p.ellipse((-0.97 * a, -0.02 * b), (0.16 * a, 0.24 * b), _shade(skin, 0.88))
    p.ellipse((0.97 * a, -0.02 * b), (0.16 * a, 0.24 * b), _shade(skin, 0.88))
    p.ellipse((0, 0), (a, b), skin)
    for side in (-1, 1):  # lit cheeks and forehead: the bright bands around the eyes
        p.ellipse((side * 0.42 * a, 0.2 * b), (0.3 * a, 0.2 * b), _shade(skin, 1.12))
    p.ellipse((0, -0.5 * b), (0.55 * a, 0.2 * b), _shade(skin, 1.08))
    # Hair cap with a curved hairline.
    cap = np.concatenate(
        [
            _arc(0, -0.2 * b, 1.06 * a, 0.95 * b, 180, 360),
            _arc(0, -0.2 * b, 0.98 * a, 0.5 * b, 360, 180),
        ]
    )
    p.polygon(cap, hair)
    # Eye sockets (the dark band Viola-Jones looks for), eyes, lids.
    ex, ey = traits.eye_spacing * a, -0.12 * b
    ew, eh = 0.2 * a * traits.eye_size, 0.085 * b * traits.eye_size
    opening = pose.eye_open * style.eye_open
    for side in (-1, 1):
        x = side * ex
        p.ellipse((x, ey - 0.02 * b), (1.45 * ew, 2.0 * eh), _shade(skin, 0.72))
        if opening > 0.2:
            h = eh * min(opening, 1.4)
            p.ellipse((x, ey), (ew, h), tuple(0.3 * c + 150 for c in skin))
            gx, gy = pose.gaze
            p.ellipse(
                (x + gx * ew * 0.3, ey + gy * h * 0.2),
                (0.45 * ew, min(0.95 * h, 0.45 * ew)),
                traits.iris_bgr,
            )
            p.ellipse(
                (x + gx * ew * 0.3, ey + gy * h * 0.2),
                (0.2 * ew, min(0.5 * h, 0.2 * ew)),
                (15, 15, 15),
            )
            p.line(_arc(x, ey, ew * 1.02, h * 1.05, 190, 350, 12), (30, 30, 35), 0.06 * b)
        else:
            p.line(_arc(x, ey, ew, eh * 0.25, 10, 170, 12), (30, 30, 35), 0.06 * b)
    # Brows: inner, middle and outer point; emotion raises them and tilts the inner ends.
    brow_y = -0.3 * b - style.brow_raise * b
    brow = np.array(
        [
            [0.12 * a, brow_y - style.brow_inner * b * 1.5],
            [0.4 * a, brow_y - 0.05 * b],
            [0.66 * a, brow_y + 0.02 * b + 0.3 * style.brow_inner * b],
        ]
    )
    brow_colour = _shade(hair, 0.6) if np.mean(hair) < 120 else (40, 50, 70)
    for side in (-1, 1):
        p.line(brow * [side, 1], brow_colour, 0.075 * b * traits.brow_thick)
    # Nose: bridge highlight, side shadow, nostrils.
    p.polygon(
        np.array(
            [
                [-0.05 * a, -0.1 * b],
                [0.05 * a, -0.1 * b],
                [0.09 * a, 0.22 * b],
                [-0.09 * a, 0.22 * b],
            ]
        ),
        _shade(skin, 1.12),
    )
    p.line(
        np.array([[-0.12 * a, 0.02 * b], [-0.16 * a, 0.24 * b], [-0.06 * a, 0.3 * b]]),
        _shade(skin, 0.7),
        0.03 * b,
    )
    for side in (-1, 1):
        p.ellipse((side * 0.08 * a, 0.28 * b), (0.05 * a, 0.025 * b), _shade(skin, 0.45))
    # Mouth: lips around a dark opening, corners lifted by the emotion's curve.
    mw = traits.mouth_w * a * style.mouth_width
    my = 0.52 * b
    x = np.linspace(-1, 1, 17)
    lift = style.mouth_curve * 0.09 * b * x**2
    half = pose.mouth_open / 2 * (1 - x**2)
    upper = np.stack([x * mw, my - half - lift], axis=1)
    lower = np.stack([x * mw, my + half - lift], axis=1)
    thick = 0.045 * b * (1.2 - 0.6 * x**2)
    lips = np.concatenate(
        [
            upper - np.stack([0 * x, thick], axis=1),
            (lower + np.stack([0 * x, 1.3 * thick], axis=1))[::-1],
        ]
    )
    p.polygon(
        lips,
        _shade(skin, 0.68)
        if traits.gender == "m"
        else tuple(0.55 * c + 0.45 * t for c, t in zip(skin, (90, 80, 170), strict=True)),
    )
    if pose.mouth_open > 1.0:
        p.polygon(np.concatenate([upper, lower[::-1]]), (35, 25, 45))
        teeth = upper + np.stack([0 * x, 0.3 * half], axis=1)
        p.polygon(np.concatenate([upper, teeth[::-1]]), (215, 220, 225))
    else:
        p.line(upper, (40, 30, 50), 0.02 * b)


def _smooth_noise(rng: np.random.Generator, t: np.ndarray, n: int = 3) -> np.ndarray:
    """Sum of a few slow sinusoids with random frequencies and phases, roughly in [-1, 1]."""
    freq = rng.uniform(0.2, 1.2, n)
    phase = rng.uniform(0, 2 * np.pi, n)
    return np.sin(2 * np.pi * freq[None, :] * t[:, None] + phase[None, :]).sum(axis=1) / np.sqrt(n)


def _render_frames(
    spec: ClipSpec, style: EmotionStyle, plan: _Syllables, n_frames: int, rng: np.random.Generator
) -> np.ndarray:
    """BGR frames (n_frames, height, width, 3) uint8: the face speaking the syllable plan."""
    scale = spec.height / 240
    t = np.arange(n_frames) / spec.fps
    traits = spec.speaker
    motion = style.motion * rng.uniform(0.8, 1.2)
    cx = spec.width / 2 + rng.uniform(-14, 14) * scale + 7 * scale * motion * _smooth_noise(rng, t)
    cy = (
        spec.height * 0.47 + rng.uniform(-8, 8) * scale + 4 * scale * motion * _smooth_noise(rng, t)
    )
    roll = 3.5 * motion * _smooth_noise(rng, t) + rng.normal(0, 1.5)
    envelope = _envelope(plan, t)
    cy += 2.0 * scale * motion * envelope  # speech nods with the syllables
    mouth = (0.02 + envelope * 0.16 * style.mouth_open) * traits.head_w * traits.head_aspect * scale
    blinks = np.cumsum(rng.exponential(3.0, 8)) - rng.uniform(0, 2)
    since = t[:, None] - blinks[None, :]
    blink = np.clip(1 - np.abs(since - 0.08) / 0.08, 0, 1).max(axis=1)
    gaze = 0.5 * np.stack([_smooth_noise(rng, t), _smooth_noise(rng, t)], axis=1)
    gain = (rng.uniform(0.85, 1.15) * rng.uniform(0.93, 1.07, 3)).astype(np.float32)
    noise = rng.normal(0, 2.5, (7, spec.height, spec.width, 3)).astype(np.float32)
    pick = rng.integers(len(noise), size=n_frames)
    background = _background(spec)
    frames = np.empty((n_frames, spec.height, spec.width, 3), dtype=np.uint8)
    for i in range(n_frames):
        image = background.copy()
        if spec.draw_face:
            pose = _Pose((cx[i], cy[i]), roll[i], 1.0 - blink[i], mouth[i], tuple(gaze[i]))
            _draw_face(_Painter(image, pose.centre, pose.roll_deg), traits, style, pose, scale)
        frames[i] = np.clip(image * gain + noise[pick[i]], 0, 255)
    return frames


# --------------------------------------------------------------------------------------------
# Clips


def _take_style(spec: ClipSpec, rng: np.random.Generator) -> EmotionStyle:
    """The emotion's style pulled toward neutral by the take's intensity and the speaker's
    expressiveness (face fields only; the voice fields use the intensity alone)."""
    if spec.emotion not in EMOTION_STYLES:
        raise BadInputError(
            f"demo cannot draw emotion {spec.emotion!r}; known: {sorted(EMOTION_STYLES)}"
        )
    full = EMOTION_STYLES[spec.emotion]
    intensity = rng.uniform(0.6, 1.0) if spec.intensity is None else spec.intensity
    face = intensity * spec.speaker.expressiveness
    mix = {}
    for name in full.__dataclass_fields__:
        weight = intensity if name in _VOICE_FIELDS else face
        neutral, value = getattr(NEUTRAL, name), getattr(full, name)
        mix[name] = neutral + weight * (value - neutral)
    return replace(full, **mix)


def clip_arrays(spec: ClipSpec) -> tuple[np.ndarray, np.ndarray | None]:
    """The clip's frames and voice before encoding.

    Returns BGR frames (n_frames, height, width, 3) uint8, with n_frames =
    round(duration_s * fps), and mono float32 audio (n_frames / fps * sample_rate,) in
    [-1, 1], or None when ``spec.with_audio`` is False. One syllable plan drives both the
    voice's energy and the mouth's opening.
    """
    n_frames = max(1, round(spec.duration_s * spec.fps))
    spec = replace(spec, duration_s=n_frames / spec.fps)
    rng = np.random.default_rng(spec.seed)
    style = _take_style(spec, rng)
    rate_hz = spec.speaker.rate_hz * style.tempo * rng.uniform(0.92, 1.08)
    plan = _syllables(spec.duration_s, rate_hz, style.pause_s, rng)
    frames = _render_frames(spec, style, plan, n_frames, rng)
    if not spec.with_audio:
        return frames, None
    n_samples = round(spec.duration_s * spec.sample_rate)
    return frames, _synthesize_voice(spec, style, plan, n_samples, rng)


def render_clip(path: str | Path, spec: ClipSpec) -> Path:
    """Write one clip to ``path`` (.mp4: H.264 video, AAC audio unless ``with_audio`` is
    False) and return the path. The file appears only when complete."""
    path = Path(path)
    frames, audio = clip_arrays(spec)
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_mp4(path, frames, audio, spec.fps, spec.sample_rate)
    return path


def _write_mp4(
    path: Path, frames: np.ndarray, audio: np.ndarray | None, fps: int, sample_rate: int
) -> None:
    """Mux frames (n, h, w, 3) BGR and mono float audio; single-threaded x264 repeats exactly."""
    with atomic_path(path) as partial, av.open(str(partial), mode="w", format="mp4") as container:
        video = container.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        # One thread and no macroblock-tree rate control: with mbtree on, this libx264
        # build gives different bytes for the same frames from run to run.
        video.options = {
            "crf": "20",
            "preset": "veryfast",
            "threads": "1",
            "x264-params": "mbtree=0",
        }
        video.thread_count = 1
        if audio is not None:
            sound = container.add_stream("aac", rate=sample_rate, layout="mono")
            sound.bit_rate = 64000
        for index, frame in enumerate(frames):
            picture = av.VideoFrame.from_ndarray(frame, format="bgr24")
            picture.pts = index
            container.mux(video.encode(picture))
        container.mux(video.encode())
        if audio is not None:
            chunk = 1024
            for start in range(0, len(audio), chunk):
                block = av.AudioFrame.from_ndarray(
                    audio[None, start : start + chunk], format="flt", layout="mono"
                )
                block.sample_rate = sample_rate
                block.pts = start
                container.mux(sound.encode(block))
            container.mux(sound.encode())


# --------------------------------------------------------------------------------------------
# The dataset


def _check_emotions(demo: DemoParams) -> None:
    """Refuse emotions the demo cannot draw (the schema checks every other key)."""
    unknown = sorted(set(demo.emotions) - set(EMOTION_STYLES))
    if unknown:
        raise BadInputError(
            f"`demo.emotions`: cannot draw {unknown}; known: {sorted(EMOTION_STYLES)}",
            "params.yaml",
        )


def clip_specs(demo: DemoParams) -> list[tuple[str, ClipSpec]]:
    """Every clip of the ``demo:`` params as ``(clip_id, spec)``, e.g. ``spk03_m_angry_01``.

    Speakers alternate male and female (spk01 m, spk02 f, ...), so an even count is half
    and half. Each take's seed and duration come from ``(demo.seed, clip id)``.
    """
    _check_emotions(demo)
    seed = demo.seed
    shape = {key: int(getattr(demo, key)) for key in ("fps", "width", "height", "sample_rate")}
    specs = []
    for n in range(1, demo.n_speakers + 1):
        gender = "m" if n % 2 else "f"
        traits = speaker_traits(f"spk{n:02d}", gender, seed)
        for emotion in demo.emotions:
            for take in range(1, demo.takes_per_emotion + 1):
                clip_id = f"{traits.speaker}_{gender}_{emotion}_{take:02d}"
                rng = clip_rng(seed, clip_id, "take")
                duration_s = rng.uniform(demo.min_duration_s, demo.max_duration_s)
                take_seed = int(rng.integers(2**63))
                specs.append((clip_id, ClipSpec(traits, emotion, duration_s, take_seed, **shape)))
    return specs


def _render_item(item: tuple[Path, ClipSpec]) -> Path:
    return render_clip(*item)


def generate_demo(out_dir: str | Path, demo: DemoParams, n_jobs: int = 1) -> list[Path]:
    """Write every clip of the ``demo:`` params to ``out_dir`` on ``n_jobs`` processes and
    return their paths in :func:`clip_specs` order.

    Stale ``.mp4`` files in ``out_dir`` are removed first, so that the folder (a DVC
    output) holds exactly this generation.
    """
    out_dir = Path(out_dir)
    specs = clip_specs(demo)
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in [*out_dir.glob("*.mp4"), *out_dir.glob("*.mp4.partial")]:
        stale.unlink()
    items = [(out_dir / f"{clip_id}.mp4", spec) for clip_id, spec in specs]
    return list(map_clips(_render_item, items, n_jobs=n_jobs, desc="demo clips"))
