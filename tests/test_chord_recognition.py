"""Recognizing held chords as the triads a chord model hears, and chords played over time as a progression."""

from __future__ import annotations

import pytest

from seqvae.codec import Meter
from seqvae.codec.chord_recognition import chords_per_beat, progression_of, recognize_chord
from seqvae.codec.chords import NO_CHORD, chord_name, parse_chord, parse_progression


@pytest.mark.parametrize("pitches, symbol", [
    ((57, 60, 64), "Am"), ((60, 64, 67), "C"), ((52, 55, 60), "C"),  # root position and an inversion
    ((60, 64, 67, 71), "C"), ((57, 60, 64, 67), "Am"), ((55, 59, 62, 65), "G"), ((59, 62, 65, 69), "Bdim"),
    ((53, 55, 59, 62), "G"),  # G7 over its seventh in the bass: still G
    ((60, 63, 66), "Cdim"), ((60, 64, 68), "Caug"), ((60, 65, 67), "C"),  # diminished, augmented, Csus4
    ((48, 55), "C"), ((60, 63), "Cm"), ((52, 55, 64), "Em"),  # a bare fifth, a minor third, doubled tones
    ((61, 65, 68), "C#"), ((58, 61, 65), "Bbm"),
])
def test_held_notes_spell_their_triad(pitches, symbol):
    assert chord_name(recognize_chord(pitches)) == symbol
    assert recognize_chord(pitches) == parse_chord(symbol)


@pytest.mark.parametrize("pitches", [(), (60,), (48, 60, 72)])
def test_one_pitch_class_is_no_chord(pitches):
    assert recognize_chord(pitches) == NO_CHORD


def _block(pitches, start, end):
    return [(p, start, end) for p in pitches]


def test_a_late_change_and_an_early_release_keep_their_beats():
    am, f = (57, 60, 64), (53, 57, 60)
    notes = _block(am, 0.1, 3.9) + _block(f, 4.2, 8.0)  # struck late, released early, the change a 16th late
    assert chords_per_beat(notes, 8, 1.0) == [parse_chord("Am")] * 4 + [parse_chord("F")] * 4
    assert progression_of(notes, 8, 1.0) == "Am:4 F:4"


def test_silent_beats_keep_the_chord_before_and_the_opening_takes_the_first():
    notes = _block((55, 59, 62), 1.0, 1.5) + _block((60, 64, 67), 4.0, 5.0)  # stabs on beats 2 and 5
    assert progression_of(notes, 8, 1.0) == "G:4 C:4"


def test_a_progression_reads_back_in_the_meter_it_was_played_in():
    meter = Meter(6, 8)  # beats are eighths: half a quarter each
    notes = _block((62, 65, 69), 0.0, 1.5) + _block((57, 61, 64), 1.5, 3.0)
    text = progression_of(notes, 6, 0.5)
    assert text == "Dm:3 A:3"
    steps = parse_progression(text, meter, 12)
    assert list(steps) == [parse_chord("Dm")] * 6 + [parse_chord("A")] * 6


def test_nothing_held_is_a_clear_error():
    with pytest.raises(ValueError, match="no chord was held"):
        progression_of([(60, 0.0, 4.0)], 4, 1.0)
