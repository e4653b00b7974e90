"""The chord track: triads in a comfortable register, one note-on per change held to the next, and chord symbols
that read back as the file's chords."""

from __future__ import annotations

import numpy as np
import pytest

from seqvae.codec import Melody, Meter, read_midi, write_midi
from seqvae.codec.chord_track import chord_changes, chord_track, triad_voicing
from seqvae.codec.chords import parse_chord, parse_progression
from seqvae.data.synthetic import synthetic_windows


@pytest.mark.parametrize("symbol, pitches", [
    ("C", (52, 55, 60)), ("Am", (52, 57, 60)), ("F", (53, 57, 60)), ("G7", (55, 59, 62)), ("Ebaug", (55, 59, 63)),
    ("Bdim", (53, 59, 62)), ("N.C.", ()),
])
def test_triads_sit_in_the_octave_from_e3(symbol, pitches):
    assert triad_voicing(parse_chord(symbol)) == pitches


def test_changes_are_runs_of_one_chord():
    steps = parse_progression("Am:2 Am:2 F:4", Meter(4, 4), 32)
    assert chord_changes(steps) == [(0, 16, parse_chord("Am")), (16, 32, parse_chord("F"))]
    assert chord_changes(np.zeros(0, dtype=np.uint8)) == []


def test_every_part_restates_its_chord_and_no_chord_is_silent():
    one = parse_progression("C N.C.", Meter(4, 4), 32)
    notes, symbols = chord_track([one, one])
    assert symbols == [(0.0, "C"), (4.0, "N.C."), (8.0, "C"), (12.0, "N.C.")]
    assert notes == [(0.0, 4.0, p, 70) for p in (52, 55, 60)] + [(8.0, 12.0, p, 70) for p in (52, 55, 60)]


def test_a_file_with_its_chord_track_reads_back_melody_chords_and_symbols(tmp_path):
    melodies = [Melody(row) for row in synthetic_windows(2, 32, 3)]
    parts = [parse_progression("Am F", Meter(4, 4), 32), parse_progression("G:2 C:2", Meter(4, 4), 32)]
    score = read_midi(write_midi(melodies, tmp_path / "both.mid", chords=parts))
    melody_line, chord_line = score.lines
    assert [(n.pitch, n.start, n.end) for n in melody_line.notes] == \
        [(n.pitch, n.start + 32 * i, n.end + 32 * i) for i, m in enumerate(melodies) for n in m.notes()]
    assert "chords" in chord_line.name
    held = sorted((n.start, n.end, n.pitch) for n in chord_line.notes)
    assert held[:3] == [(0, 16, 52), (0, 16, 57), (0, 16, 60)]  # Am for a bar, struck once
    assert sorted({n.start for n in chord_line.notes}) == [0, 16, 32, 40, 48, 56]
    assert score.chords == [(0, "Am"), (16, "F"), (32, "G"), (40, "C"), (48, "G"), (56, "C")]


def test_chords_that_do_not_fit_the_melodies_are_refused(tmp_path):
    melody = Melody(synthetic_windows(1, 32, 3)[0])
    with pytest.raises(ValueError, match="2 chord parts for 1 melodies"):
        write_midi(melody, tmp_path / "x.mid", chords=[np.zeros(32), np.zeros(32)])
    with pytest.raises(ValueError, match="send a chord class per step"):
        write_midi(melody, tmp_path / "x.mid", chords=[np.zeros(16, dtype=np.uint8)])
