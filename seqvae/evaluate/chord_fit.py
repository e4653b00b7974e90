"""How well a melody sits on its chords: the chord-tone ratio, the figure a chord model is judged by.

A note counts when it starts on a beat under a chord (not on a no-chord step); it is a chord tone when its
pitch class belongs to that step's triad. Ratios are pooled over notes (every counted note weighs the same),
so a busy window does not count for less than a sparse one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from seqvae.codec.chords import NUM_CHORD_CLASSES, triad_pitch_classes
from seqvae.codec.events import FIRST_NOTE_ON
from seqvae.codec.meter import Meter

TRIAD_MASKS = np.array([[pc in triad_pitch_classes(c) for pc in range(12)] for c in range(NUM_CHORD_CLASSES)])


def beat_steps(meter: Meter) -> int:
    """16th-note steps per beat: a quarter in x/4, a half in x/2, a dotted quarter in compound x/8 (6/8, 9/8 ...)."""
    if meter.denominator == 8 and meter.numerator % 3 == 0 and meter.numerator > 3:
        return 6
    return 16 // meter.denominator


@dataclass(frozen=True)
class ChordFit:
    """Counted on-beat notes and how many were chord tones, per window and pooled."""

    chord_tones: np.ndarray  # int [N]
    counted: np.ndarray  # int [N]

    @property
    def ratio(self) -> float:
        total = int(self.counted.sum())
        return float(self.chord_tones.sum() / total) if total else float("nan")

    def standard_error(self) -> float:
        """Of the pooled ratio, treating windows as the independent units (notes within a window are not)."""
        n = len(self.counted)
        if n < 2 or not self.counted.sum():
            return float("nan")
        r = self.ratio
        residual = self.chord_tones - r * self.counted
        return float(np.sqrt(n / (n - 1) * np.sum(residual ** 2)) / self.counted.sum())


def chord_fit(events: np.ndarray, chords: np.ndarray, beats: int | np.ndarray, min_pitch: int = 21) -> ChordFit:
    """Chord tones among the on-beat notes of `events` [N, T] under `chords` [N, T] (classes per step). `beats`:
    steps per beat, one for all windows or one per window [N] (see `beat_steps`)."""
    events = np.asarray(events, dtype=np.int64)
    chords = np.asarray(chords, dtype=np.int64)
    if events.ndim != 2 or chords.shape != events.shape:
        raise ValueError(f"events {events.shape} and chords {chords.shape} must both be [windows, steps]")
    if chords.min(initial=0) < 0 or chords.max(initial=0) >= NUM_CHORD_CLASSES:
        raise ValueError(f"chord classes must lie in 0..{NUM_CHORD_CLASSES - 1} (see seqvae.codec.chords)")
    per_window = np.broadcast_to(np.asarray(beats, dtype=np.int64), (len(events),))
    if per_window.min(initial=1) < 1:
        raise ValueError("steps per beat must be >= 1")
    on_beat = np.arange(events.shape[1])[None, :] % per_window[:, None] == 0
    counted = on_beat & (events >= FIRST_NOTE_ON) & (chords > 0)
    pitch_class = (events - FIRST_NOTE_ON + min_pitch) % 12
    tone = TRIAD_MASKS[chords, pitch_class] & counted
    return ChordFit(tone.sum(axis=1), counted.sum(axis=1))
