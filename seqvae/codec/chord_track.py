"""A progression as a MIDI track to play along with: block triads, one chord per change, and its chord symbols.

Each triad's tones are placed in the octave from E3 (MIDI 52 to 63), so chords sit around C3-C4, under most
melodies, and move by a few semitones from one to the next instead of jumping with the root. A chord sounds from
its change to the next (no chord is silence); every change, no chord included, is also a chord symbol, which
codec/midi.py writes as a text event "chord:SYMBOL" and reads back.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from seqvae.codec.chords import NO_CHORD, chord_name, triad_pitch_classes
from seqvae.codec.meter import STEPS_PER_QUARTER

LOWEST_TONE = 52  # E3: a triad's tones lie in E3..D#4
CHORD_VELOCITY = 70  # under the melody's usual 80-100


def triad_voicing(cls: int) -> tuple[int, ...]:
    """The MIDI pitches a chord class is played with, lowest first (none for no chord): Am -> (52, 57, 60)."""
    return tuple(sorted(LOWEST_TONE + (pc - LOWEST_TONE) % 12 for pc in triad_pitch_classes(cls)))


def chord_changes(chords: np.ndarray) -> list[tuple[int, int, int]]:
    """Per-step classes -> (first step, end step, class) for each run of one chord."""
    arr = np.asarray(chords).reshape(-1)
    if not len(arr):
        return []
    starts = [0, *(np.flatnonzero(arr[1:] != arr[:-1]) + 1).tolist()]
    ends = [*starts[1:], len(arr)]
    return [(start, end, int(arr[start])) for start, end in zip(starts, ends, strict=True)]


def chord_track(parts: Sequence[np.ndarray], velocity: int = CHORD_VELOCITY
                ) -> tuple[list[tuple[float, float, int, int]], list[tuple[float, str]]]:
    """Per-step chords of melodies played back to back (one array each, its own length) -> the track's notes
    (start, end, pitch, velocity) and its (at, symbol) changes, in quarter notes. Each melody's first step is a
    change, so every part states its chord."""
    notes: list[tuple[float, float, int, int]] = []
    symbols: list[tuple[float, str]] = []
    offset = 0
    for part in parts:
        for first, end, cls in chord_changes(part):
            start, stop = (offset + first) / STEPS_PER_QUARTER, (offset + end) / STEPS_PER_QUARTER
            symbols.append((start, chord_name(cls)))
            if cls != NO_CHORD:
                notes += [(start, stop, pitch, velocity) for pitch in triad_voicing(cls)]
        offset += len(np.asarray(part).reshape(-1))
    return notes, symbols
