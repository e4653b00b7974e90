"""Codec: events <-> notes <-> MIDI round trips, meters, and clear errors."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pretty_midi
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seqvae.codec import EventCodec, Melody, Meter, Note, read_midi, write_midi
from seqvae.codec.events import FIRST_NOTE_ON, NO_EVENT, NOTE_OFF
from seqvae.codec.midi import READABLE_SUFFIXES, WRITTEN_SUFFIXES, is_midi_path, write_notes

CODEC = EventCodec()
event_values = st.one_of(
    st.just(NO_EVENT), st.just(NO_EVENT), st.just(NOTE_OFF), st.integers(FIRST_NOTE_ON, CODEC.num_classes - 1)
)


@given(st.lists(event_values, min_size=1, max_size=64))
def test_events_notes_events_is_exact_on_canonical_events(values):
    events = CODEC.canonical(np.array(values))
    notes = CODEC.events_to_notes(events)
    assert np.array_equal(CODEC.notes_to_events(notes, len(events)), events)


@given(st.lists(event_values, min_size=1, max_size=64))
def test_canonical_is_idempotent_and_keeps_notes(values):
    raw = np.array(values)
    once = CODEC.canonical(raw)
    assert np.array_equal(CODEC.canonical(once), once)
    assert CODEC.events_to_notes(once) == CODEC.events_to_notes(raw)


def test_midi_files_are_written_whole_and_takes_are_kept(tmp_path, monkeypatch):
    a = Melody.from_notes([Note(60, 0, 4, 100)], 16)
    b = Melody.from_notes([Note(67, 0, 2, 90)], 16)
    first = write_midi(a, tmp_path / "take.mid", keep_existing=True)
    second = write_midi(b, tmp_path / "take.mid", keep_existing=True)
    assert (first.name, second.name) == ("take.mid", "take-2.mid")
    assert read_midi(first).lines[0].notes[0].pitch == 60 and read_midi(second).lines[0].notes[0].pitch == 67
    assert write_midi(b, tmp_path / "take.mid") == tmp_path / "take.mid"  # a plain write replaces, in one step
    assert read_midi(tmp_path / "take.mid").lines[0].notes[0].pitch == 67

    def crash(self, out):
        out.write(b"MThd half a file")
        raise OSError("disk full")

    monkeypatch.setattr(pretty_midi.PrettyMIDI, "write", crash)
    with pytest.raises(OSError, match="disk full"):
        write_midi(a, tmp_path / "take.mid")
    assert read_midi(tmp_path / "take.mid").lines[0].notes[0].pitch == 67  # the old file is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["take-2.mid", "take.mid"]  # no half file left


@settings(max_examples=40, deadline=None)
@given(
    st.lists(event_values, min_size=32, max_size=32),
    st.sampled_from([Meter(4, 4), Meter(3, 4), Meter(6, 8), Meter(2, 4)]),
    st.floats(40, 240),
    st.integers(0, 127),
)
def test_events_to_midi_file_and_back_is_exact(tmp_path_factory, values, meter, bpm, program):
    events = CODEC.canonical(np.array(values))
    melody = Melody(events, meter=meter, bpm=bpm, program=program)
    path = write_midi(melody, tmp_path_factory.mktemp("rt") / "m.mid")
    score = read_midi(path)
    notes = score.lines[0].notes if score.lines else []
    assert np.array_equal(CODEC.notes_to_events(notes, len(events)), events)
    assert score.meters[0][1] == meter
    assert abs(score.bpm - bpm) < 1e-3
    assert all(line.program == program for line in score.lines)


def test_melodies_back_to_back_keep_their_meters(tmp_path):
    a = Melody(CODEC.notes_to_events([Note(60, 0, 4)], 32), meter=Meter(4, 4))
    b = Melody(CODEC.notes_to_events([Note(62, 0, 4)], 24), meter=Meter(3, 4))
    score = read_midi(write_midi([a, b, b], tmp_path / "ab.mid"))
    assert [(s, str(m)) for s, m in score.meters] == [(0, "4/4"), (32, "3/4")]
    assert [(n.pitch, n.start) for n in score.lines[0].notes] == [(60, 0), (62, 32), (62, 56)]



def test_write_notes_keeps_quarter_timing_and_every_time_signature(tmp_path):
    import mido

    notes = [(Fraction(0), Fraction(1, 3), 60, 90), (Fraction(1, 3), Fraction(2, 3), 62, 90), (4, 6, 64, 70)]
    meters = [(0, Meter(4, 4)), (4, Meter(4, 4)), (6, Meter(2, 4))]  # a repeated 4/4 is a bar line too
    path = write_notes(notes, meters, tmp_path / "n.mid", bpm=90, program=41, name="Ça va")
    score = read_midi(path)
    assert score.meters == [(0, Meter(4, 4)), (16, Meter(4, 4)), (24, Meter(2, 4))]
    assert abs(score.bpm - 90) < 1e-3
    assert [(line.name, line.program) for line in score.lines] == [("Ça va (ch 1)", 41)]
    tick, onsets = 0, []
    for msg in mido.MidiFile(str(path)).tracks[-1]:
        tick += msg.time
        if msg.type == "note_on" and msg.velocity:
            onsets.append((tick, msg.note, msg.velocity))
    assert onsets == [(0, 60, 90), (160, 62, 90), (1920, 64, 70)]  # triplets on whole ticks at 480 per quarter


def test_is_midi_path_reads_every_suffix_in_any_case():
    assert all(is_midi_path(name) for name in ("a.mid", "b.MIDI", "c.Kar", "d.smf", "dir/e.MiD"))
    assert not any(is_midi_path(name) for name in ("a.txt", "b.mid.bak", "mid", "c.midi2"))
    assert set(WRITTEN_SUFFIXES) <= set(READABLE_SUFFIXES)

def test_notes_in_beats_and_seconds():
    melody = Melody(CODEC.notes_to_events([Note(60, 2, 6, 100)], 16), bpm=120, velocity=100)
    assert melody.notes_in_beats() == [(60, 0.5, 1.0, 100)]
    assert melody.notes_in_seconds() == [(60, 0.25, 0.5, 100)]


def test_overlapping_notes_encode_as_a_monophonic_line():
    notes = [Note(60, 0, 8), Note(64, 2, 4), Note(55, 2, 6)]  # a higher and a lower onset at step 2
    events = CODEC.notes_to_events(notes, 8)
    assert [(n.pitch, n.start, n.end) for n in CODEC.events_to_notes(events)] == [(60, 0, 2), (64, 2, 4)]


@pytest.mark.parametrize(
    "meter, steps, family",
    [((4, 4), 16, "duple"), ((2, 2), 16, "duple"), ((2, 4), 8, "duple"), ((3, 4), 12, "triple"),
     ((6, 8), 12, "triple"), ((3, 8), 6, "triple"), ((9, 8), 18, None), ((5, 4), 20, None)],
)
def test_meter_steps_and_family(meter, steps, family):
    m = Meter(*meter)
    assert m.steps_per_bar == steps and m.family == family


def test_bad_input_gets_clear_errors():
    with pytest.raises(ValueError, match="outside 0..89"):
        CODEC.check(np.array([0, 95]))
    with pytest.raises(ValueError, match="not a time signature"):
        Meter.parse("four")
    with pytest.raises(ValueError, match="not playable"):
        Melody(np.zeros(32), bpm=0)
    with pytest.raises(ValueError, match="outside the codec range"):
        CODEC.pitch_to_class(10)
