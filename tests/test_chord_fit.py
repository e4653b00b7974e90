"""The chord-tone ratio: on-beat notes under a chord, counted against that step's triad."""

from __future__ import annotations

import numpy as np
import pytest

from seqvae.codec.chords import parse_chord
from seqvae.codec.events import FIRST_NOTE_ON, NOTE_OFF
from seqvae.codec.meter import Meter
from seqvae.evaluate.chord_fit import beat_steps, chord_fit


def _note(pitch: int) -> int:
    return FIRST_NOTE_ON + pitch - 21


def test_counts_on_beat_notes_against_their_steps_triad():
    events = np.zeros((1, 16), dtype=np.int64)
    events[0, [0, 4, 8, 12]] = [_note(60), _note(62), _note(69), _note(65)]  # C D | A F on the beats
    events[0, 2] = _note(61)  # off the beat: not counted
    events[0, 14] = NOTE_OFF
    chords = np.array([[parse_chord("C")] * 8 + [parse_chord("F")] * 8])
    fit = chord_fit(events, chords, 4)
    assert fit.counted.tolist() == [4] and fit.chord_tones.tolist() == [3]  # C yes, D no, A yes, F yes
    assert fit.ratio == pytest.approx(0.75)


def test_no_chord_steps_and_meters():
    events = np.full((2, 16), 0, dtype=np.int64)
    events[:, 0] = _note(60)
    events[:, 8] = _note(67)
    chords = np.zeros((2, 16), dtype=np.int64)
    chords[1] = parse_chord("C")
    fit = chord_fit(events, chords, np.array([4, 8]))
    assert fit.counted.tolist() == [0, 2] and fit.ratio == 1.0
    assert beat_steps(Meter(4, 4)) == 4 and beat_steps(Meter(2, 2)) == 8 and beat_steps(Meter(6, 8)) == 6
    assert beat_steps(Meter(3, 8)) == 2


def test_moving_the_chords_changes_the_ratio_and_errors_are_clear():
    rng = np.random.default_rng(0)
    events = np.where(rng.random((50, 32)) < 0.3, _note(60) + rng.choice([0, 4, 7], (50, 32)), 0)
    chords = np.full((50, 32), parse_chord("C"))
    assert chord_fit(events, chords, 4).ratio == 1.0
    moved = chord_fit(events, np.full((50, 32), parse_chord("F#")), 4)
    assert moved.ratio == 0.0 and moved.standard_error() == 0.0
    with pytest.raises(ValueError, match="both be"):
        chord_fit(events, chords[:, :16], 4)
    with pytest.raises(ValueError, match="0..48"):
        chord_fit(events, chords + 100, 4)
