"""Keys and registers as decoding constraints: which note-on classes of a codec a melody may use.

A `Key` (root and mode) and a `PitchRange` (lowest-highest MIDI pitch) become one boolean mask over the
codec's classes (`allowed_classes`); the decoders set the logits of the classes it forbids to -inf before
they choose, so a constrained melody is what the model would play in that key, never a snapped one.
NO_EVENT and NOTE_OFF always stay allowed: holding and resting are in every key.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from seqvae.codec.events import FIRST_NOTE_ON, EventCodec

MODES: dict[str, tuple[int, ...]] = {
    "major": (0, 2, 4, 5, 7, 9, 11),
    "minor": (0, 2, 3, 5, 7, 8, 10),
    "harmonic minor": (0, 2, 3, 5, 7, 8, 11),
    "dorian": (0, 2, 3, 5, 7, 9, 10),
    "mixolydian": (0, 2, 4, 5, 7, 9, 10),
    "pentatonic major": (0, 2, 4, 7, 9),
    "pentatonic minor": (0, 3, 5, 7, 10),
}
ROOTS: dict[str, int] = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
ROOT_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
OFF = "off"
_NOTE = re.compile(r"^([A-Ga-g])([#b]*)(-?\d+)?$")


def _pitch_class(name: str) -> int | None:
    """C=0 .. B=11 for a root like "F#" or "Bb" (any number of sharps or flats), else None."""
    match = _NOTE.match(name.strip())
    if match is None or match.group(3) is not None:
        return None
    letter, accidentals = match.group(1).upper(), match.group(2)
    return (ROOTS[letter] + accidentals.count("#") - accidentals.count("b")) % 12


def note_number(name: str) -> int | None:
    """The MIDI pitch of a note name with octave ("A3" = 57, "C4" = 60, "Bb-1" = 10), else None."""
    match = _NOTE.match(name.strip())
    if match is None or match.group(3) is None:
        return None
    letter, accidentals = match.group(1).upper(), match.group(2)
    return ROOTS[letter] + accidentals.count("#") - accidentals.count("b") + 12 * (int(match.group(3)) + 1)


@dataclass(frozen=True)
class Key:
    """A root pitch class (0 = C) and a mode from MODES."""

    root: int
    mode: str

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode {self.mode!r} is not one of: {', '.join(MODES)}")
        if not 0 <= self.root < 12:
            raise ValueError(f"root {self.root} must be a pitch class 0..11 (0 = C)")

    @classmethod
    def parse(cls, text: str) -> Key | None:
        """"D dorian", "Bb minor", "F# harmonic minor", "C pentatonic major"; "off" (or "") gives None."""
        words = str(text).split()
        if not words or (len(words) == 1 and words[0].lower() == OFF):
            return None
        root = _pitch_class(words[0])
        mode = " ".join(words[1:]).lower()
        if root is None or mode not in MODES:
            what = f"root {words[0]!r}" if root is None else f"mode {mode!r}" if mode else "a mode"
            raise ValueError(f"key {text!r}: unknown {what}; send a root ({', '.join(ROOT_NAMES)}) and a mode "
                             f"({', '.join(MODES)}), e.g. 'D dorian', or 'off'")
        return cls(root, mode)

    @property
    def pitch_classes(self) -> frozenset[int]:
        return frozenset((self.root + step) % 12 for step in MODES[self.mode])

    def contains(self, pitch: int) -> bool:
        return pitch % 12 in self.pitch_classes

    def __str__(self) -> str:
        return f"{ROOT_NAMES[self.root]} {self.mode}"


@dataclass(frozen=True)
class PitchRange:
    """MIDI pitches low..high, both included."""

    low: int
    high: int

    def __post_init__(self) -> None:
        if not 0 <= self.low <= self.high <= 127:
            raise ValueError(f"range {self.low}-{self.high}: send lowest-highest MIDI pitches within 0..127, "
                             "lowest first, e.g. 57-76")

    @classmethod
    def parse(cls, text: str) -> PitchRange | None:
        """"57-76" or "A3-E5" (C4 = 60); "off" (or "") gives None."""
        value = str(text).strip()
        if not value or value.lower() == OFF:
            return None
        match = re.match(r"^\s*(\S+?)\s*(?:-|\.\.|\s)\s*(\S+)\s*$", value)
        if match is None:
            raise ValueError(f"range {text!r}: send lowest-highest as MIDI numbers (57-76) or note names (A3-E5)")
        ends = [_pitch_of(part, text) for part in match.groups()]
        return cls(*ends)

    def __str__(self) -> str:
        return f"{self.low}-{self.high}"


def _pitch_of(part: str, text: str) -> int:
    if re.fullmatch(r"\d+", part):
        return int(part)
    pitch = note_number(part)
    if pitch is None:
        raise ValueError(f"range {text!r}: {part!r} is neither a MIDI number nor a note name like A3 or Eb5")
    return pitch


def allowed_classes(codec: EventCodec, key: Key | None = None, pitch_range: PitchRange | None = None) -> np.ndarray:
    """bool [codec.num_classes]: True where a class may be chosen; a clear error when no note-on is left."""
    allowed = np.ones(codec.num_classes, dtype=bool)
    pitches = np.arange(codec.min_pitch, codec.max_pitch + 1)
    keep = np.ones(len(pitches), dtype=bool)
    if pitch_range is not None:
        if pitch_range.high < codec.min_pitch or pitch_range.low > codec.max_pitch:
            raise ValueError(f"range {pitch_range} lies outside the model's pitches {codec.min_pitch}-"
                             f"{codec.max_pitch}: send a range that overlaps them")
        keep &= (pitches >= pitch_range.low) & (pitches <= pitch_range.high)
    if key is not None:
        keep &= np.isin(pitches % 12, sorted(key.pitch_classes))
    if not keep.any():
        raise ValueError(f"no pitch of {key} lies in range {pitch_range}: widen the range (a scale needs at most "
                         "4 semitones between neighbours) or pick another key")
    allowed[FIRST_NOTE_ON:] = keep
    return allowed



def transpose_events(events: np.ndarray, codec: EventCodec, semitones: int) -> np.ndarray:
    """Events with every note moved by `semitones`; a clear error when a note would leave the codec's range."""
    arr = codec.check(events).copy()
    onsets = arr >= FIRST_NOTE_ON
    if onsets.any() and semitones:
        low = codec.class_to_pitch(int(arr[onsets].min())) + semitones
        high = codec.class_to_pitch(int(arr[onsets].max())) + semitones
        if low < codec.min_pitch or high > codec.max_pitch:
            down = codec.min_pitch - (low - semitones)
            up = codec.max_pitch - (high - semitones)
            raise ValueError(f"moved by {semitones:+d} semitones the notes would span {low}-{high}, outside the "
                             f"model's pitches {codec.min_pitch}-{codec.max_pitch}: send a move from {down:+d} "
                             f"to {up:+d}")
        arr[onsets] += semitones
    return arr
