"""Chord symbols -> triad classes, and progressions -> per-step chords."""

import numpy as np
import pytest

from seqvae.codec.chords import (
    NO_CHORD,
    NUM_CHORD_CLASSES,
    chord_class,
    chord_name,
    parse_chord,
    parse_progression,
    transpose_chords,
    triad_pitch_classes,
)
from seqvae.codec.meter import Meter


@pytest.mark.parametrize(("symbol", "name"), [
    ("C", "C"), ("F#m", "F#m"), ("G7", "G"), ("Bm7b5", "Bdim"), ("Cmaj7", "C"), ("Dm9", "Dm"),
    ("Csus4", "C"), ("C/E", "C"), ("Bb", "Bb"), ("A#", "Bb"), ("Ebm", "Ebm"), ("Caug", "Caug"), ("C+", "Caug"),
    ("Cdim7", "Cdim"), ("Cm(maj7)", "Cm"), ("G7b9", "G"), ("C6/9", "C"), ("Cadd9", "C"), ("Am", "Am"),
])
def test_symbols_reduce_to_their_triad(symbol, name):
    assert chord_name(parse_chord(symbol)) == name


def test_no_chord_and_class_layout():
    assert parse_chord("N.C.") == NO_CHORD and chord_name(NO_CHORD) == "N.C."
    assert NUM_CHORD_CLASSES == 49
    assert parse_chord("C") == 1 and parse_chord("Cm") == 2 and parse_chord("B") == 45
    assert triad_pitch_classes(parse_chord("Am")) == (9, 0, 4)
    assert triad_pitch_classes(parse_chord("Bdim")) == (11, 2, 5)
    assert triad_pitch_classes(NO_CHORD) == ()
    for cls in range(NUM_CHORD_CLASSES):
        assert parse_chord(chord_name(cls)) == cls
    assert chord_class(7, "major") == parse_chord("G")


@pytest.mark.parametrize("bad", ["H7", "Cxyz", "", "7"])
def test_bad_symbols_list_the_accepted_forms(bad):
    with pytest.raises(ValueError, match="N.C."):
        parse_chord(bad)


def test_bad_classes_are_named():
    with pytest.raises(ValueError, match="0..48"):
        chord_name(49)


def test_progression_one_bar_each_repeats_over_the_window():
    chords = parse_progression("Am F", Meter(4, 4), 64)
    assert chords.dtype == np.uint8 and chords.shape == (64,)
    am, f = parse_chord("Am"), parse_chord("F")
    assert (chords[:16] == am).all() and (chords[16:32] == f).all() and (chords[32:48] == am).all()


def test_progression_in_beats_and_in_compound_meter():
    chords = parse_progression("Am:2 F:2", Meter(4, 4), 32)
    assert (chords[:8] == parse_chord("Am")).all() and (chords[8:16] == parse_chord("F")).all()
    assert (chords[16:24] == parse_chord("Am")).all()
    jig = parse_progression("D:3 A:3", Meter(6, 8), 24)  # a beat of 6/8 is an eighth: 3 of them = 6 steps
    assert (jig[:6] == parse_chord("D")).all() and (jig[6:12] == parse_chord("A")).all()
    assert (parse_progression("D G", Meter(3, 4), 24)[12:] == parse_chord("G")).all()
    longer = parse_progression("C F G C Am", Meter(4, 4), 32)
    assert longer.tolist() == [parse_chord("C")] * 16 + [parse_chord("F")] * 16


@pytest.mark.parametrize("bad", ["", "Am F:2", "Am:0", "Am:x", "Am:1.1", "Am Q"])
def test_bad_progressions_say_what_to_send(bad):
    with pytest.raises(ValueError, match="Am|N.C."):
        parse_progression(bad, Meter(4, 4), 32)


def test_transpose_chords_moves_roots_keeps_quality_and_silence():
    chords = np.array([[parse_chord("Am"), parse_chord("G"), NO_CHORD], [parse_chord("Bdim"), 0, parse_chord("C+")]])
    moved = transpose_chords(chords, np.array([3, -2]))
    assert moved.dtype == np.uint8
    assert [chord_name(c) for c in moved[0]] == ["Cm", "Bb", "N.C."]
    assert [chord_name(c) for c in moved[1]] == ["Adim", "N.C.", "Bbaug"]
    assert (transpose_chords(chords, 12) == chords).all()
    with pytest.raises(ValueError, match="0..48"):
        transpose_chords(np.array([49]), 1)
