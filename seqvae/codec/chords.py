"""Chord symbols -> MusicVAE's triad classes, and a progression -> one chord class per 16th-note step.

Class 0 is no chord; then root * 4 + quality + 1 for 12 roots (C = 0) and the qualities major,
minor, augmented, diminished (49 classes). A chord model hears only the triad, so sevenths and
extensions reduce to it (G7 -> G, Bm7b5 -> Bdim, Dm9 -> Dm), suspended chords count as major
(Csus4 -> C: the third is only delayed), and a slash chord keeps its upper chord (C/E -> C).
"""

from __future__ import annotations

import re

import numpy as np

from seqvae.codec.meter import STEPS_PER_QUARTER, Meter

NO_CHORD = 0
QUALITIES = ("major", "minor", "augmented", "diminished")
NUM_CHORD_CLASSES = 1 + 12 * len(QUALITIES)
ROOT_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
_QUALITY_SUFFIX = ("", "m", "aug", "dim")
_TRIAD_INTERVALS = ((0, 4, 7), (0, 3, 7), (0, 4, 8), (0, 3, 6))
_LETTERS = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
_NO_CHORD_SYMBOLS = {"n.c.", "nc", "n.c", "none"}
_SYMBOL = re.compile(r"^([A-Ga-g])([#b♯♭]*)(.*?)(?:/([A-Ga-g][#b♯♭]*))?$")
# Quality words after the root, matched longest first so "maj7" is not read as "m" + "aj7".
_QUALITY_WORDS = (
    ("maj", 0), ("major", 0), ("M", 0), ("Δ", 0),
    ("min", 1), ("minor", 1), ("mi", 1), ("m", 1), ("-", 1),
    ("aug", 2), ("+", 2),
    ("dim", 3), ("o", 3), ("°", 3), ("ø", 3),
    ("sus", 0),
)
_QUALITY_WORDS_LONGEST_FIRST = sorted(_QUALITY_WORDS, key=lambda w: -len(w[0]))
_ACCEPTED = ("a root A-G with optional # or b, then an optional quality (m, min, dim, aug, +, sus) and "
             "extensions (7, maj7, m7b5, 9, add9 ...), optionally /bass; or N.C. for no chord — e.g. Am, F#m7, "
             "Bb, G7, Bm7b5, C/E")
PROGRESSION_FORMS = ("one symbol per bar ('Am F C G'), or SYMBOL:BEATS for chords of any length in beats "
                     "('Am:2 F:2'), the two forms not mixed")


def parse_chord(symbol: str) -> int:
    """A chord symbol -> its class (0 for N.C.); a ValueError that lists the accepted forms."""
    text = str(symbol).strip()
    if text.lower() in _NO_CHORD_SYMBOLS:
        return NO_CHORD
    match = _SYMBOL.match(text)
    if match is None:
        raise ValueError(f"chord {symbol!r} is not a chord symbol: send {_ACCEPTED}")
    letter, accidentals, rest, _bass = match.groups()
    root = _LETTERS[letter.upper()] + sum(1 if a in "#♯" else -1 for a in accidentals)
    quality = _quality(rest, symbol)
    return 1 + (root % 12) * len(QUALITIES) + quality


def _quality(rest: str, symbol: str) -> int:
    if rest.startswith(("m7b5", "m7-5", "min7b5")) or rest.startswith("ø"):
        return 3  # half-diminished: its triad is diminished
    word, quality = next((w for w in _QUALITY_WORDS_LONGEST_FIRST if rest.startswith(w[0])), ("", 0))
    tail = rest[len(word):]
    if not _only_extensions(tail):
        raise ValueError(f"chord {symbol!r} has an unknown quality {rest!r}: send {_ACCEPTED}")
    return quality


def _only_extensions(tail: str) -> bool:
    """Whether what follows the quality is extensions (7, 9, b9, #11, add9, sus4, maj7 ...) only."""
    words = re.sub(r"(maj|add|sus|alt|omit|no|[#b♯♭+\-]?[0-9]+|[()\s,/])", "", tail)
    return words == ""


def chord_name(cls: int) -> str:
    """A class -> its symbol: 0 -> 'N.C.', 1 -> 'C', 38 -> 'Am'."""
    root, quality = _split(cls)
    if root is None:
        return "N.C."
    return ROOT_NAMES[root] + _QUALITY_SUFFIX[quality]


def triad_pitch_classes(cls: int) -> tuple[int, ...]:
    """The pitch classes of a class's triad (empty for no chord): 38 (Am) -> (9, 0, 4)."""
    root, quality = _split(cls)
    if root is None:
        return ()
    return tuple((root + i) % 12 for i in _TRIAD_INTERVALS[quality])


def _split(cls: int) -> tuple[int | None, int]:
    value = int(cls)
    if not 0 <= value < NUM_CHORD_CLASSES:
        raise ValueError(f"chord class {cls} is outside 0..{NUM_CHORD_CLASSES - 1}")
    if value == NO_CHORD:
        return None, 0
    return (value - 1) // len(QUALITIES), (value - 1) % len(QUALITIES)


def chord_class(root: int, quality: str) -> int:
    """A root pitch class and a quality name -> the class: (9, 'minor') -> Am."""
    if quality not in QUALITIES:
        raise ValueError(f"chord quality {quality!r} is unknown: send one of {', '.join(QUALITIES)}")
    return 1 + (int(root) % 12) * len(QUALITIES) + QUALITIES.index(quality)


def transpose_chords(chords: np.ndarray, semitones: int | np.ndarray) -> np.ndarray:
    """Chord classes moved by `semitones` (one shift, or one per row of a [rows, steps] batch), as a melody
    transposed for augmentation must carry its chords; no chord stays no chord."""
    arr = np.asarray(chords).astype(np.int64)
    shift = np.asarray(semitones, dtype=np.int64)
    if shift.ndim == 1:
        shift = shift.reshape((-1,) + (1,) * (arr.ndim - 1))
    if arr.size and (arr.min() < 0 or arr.max() >= NUM_CHORD_CLASSES):
        raise ValueError(f"chord classes must lie in 0..{NUM_CHORD_CLASSES - 1}")
    root, quality = (arr - 1) // len(QUALITIES), (arr - 1) % len(QUALITIES)
    moved = 1 + ((root + shift) % 12) * len(QUALITIES) + quality
    return np.where(arr == NO_CHORD, NO_CHORD, moved).astype(np.uint8)


def parse_progression(text: str, meter: Meter, steps: int) -> np.ndarray:
    """'Am F' (a bar each) or 'Am:2 F:2' (beats) -> uint8 chord class per step for a `steps` window.

    A progression shorter than the window repeats; a longer one is cut at the window's end. A beat is
    the meter's denominator note (a quarter in 4/4, an eighth in 6/8).
    """
    tokens = str(text).split()
    if not tokens:
        raise ValueError(f"the chord progression is empty: send {PROGRESSION_FORMS}")
    timed = [":" in token for token in tokens]
    if any(timed) and not all(timed):
        raise ValueError(f"progression {text!r} mixes bar and beat forms: send {PROGRESSION_FORMS}")
    beat_steps = STEPS_PER_QUARTER * 4 // meter.denominator
    spans: list[tuple[int, int]] = []
    for token in tokens:
        if ":" in token:
            symbol, beats = token.rsplit(":", 1)
            try:
                count = float(beats)
            except ValueError:
                count = -1.0
            length = count * beat_steps
            if count <= 0 or length != int(length):
                raise ValueError(f"chord {token!r} needs a positive number of beats on the 16th grid after ':' "
                                 f"(e.g. Am:2): send {PROGRESSION_FORMS}")
            spans.append((parse_chord(symbol), int(length)))
        else:
            spans.append((parse_chord(token), meter.steps_per_bar))
    cycle = np.concatenate([np.full(length, cls, dtype=np.uint8) for cls, length in spans])
    repeats = -(-steps // len(cycle))
    return np.tile(cycle, repeats)[:steps]
