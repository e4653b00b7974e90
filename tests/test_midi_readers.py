"""The fast MIDI reader (symusic) gives mido's score exactly, or steps aside for mido."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from seqvae.codec import midi_symusic
from seqvae.codec.meter import Meter
from seqvae.codec.midi import read_midi, read_with_mido, write_notes
from seqvae.codec.midi_score import MidiReadError, NoteArray
from seqvae.codec.midi_symusic import read_with_symusic

pytest.importorskip("symusic")
FIXTURES = Path(__file__).parent.parent / "datasets" / "fixtures"


def facts(score) -> tuple:
    """Everything a score says, notes as plain lists."""
    lines = [(line.name, line.program, line.is_drum, list(line.notes)) for line in score.lines]
    return lines, score.meters, score.bpm, score.n_steps, score.chords


def write_track(path: Path, *tracks: bytes) -> Path:
    """MTrk chunks of raw events (each with its delta), each ended by end-of-track; type 0 for one track."""
    bodies = [events + b"\x00\xff\x2f\x00" for events in tracks]
    path.write_bytes(struct.pack(">4sLHHH", b"MThd", 6, int(len(tracks) > 1), len(tracks), 480)
                     + b"".join(struct.pack(">4sL", b"MTrk", len(body)) + body for body in bodies))
    return path


NOTES = b"\x00\x90\x3c\x40\x83\x60\x80\x3c\x00\x00\x90\x3e\x40\x83\x60\x3e\x00"  # C then D, a quarter each
CASES = {  # name: (track bytes, whether the fast reader vouches for it)
    "note never released": (b"\x00\x90\x3c\x40\x64\x90\x40\x40\x87\x68\xff\x01\x01x", True),
    "pitch held twice at the end": (b"\x00\x90\x3c\x40\x00\x90\x3c\x40\x87\x68\xff\x01\x01x", False),
    "program change between notes": (b"\x00\xc0\x05" + NOTES + b"\x00\xc0\x07" + NOTES, False),
    "two channels, two programs": (b"\x00\xc0\x05\x00\xc1\x06" + NOTES + NOTES.replace(b"\x90", b"\x91")
                                   .replace(b"\x80", b"\x81"), True),
    "drums and a melody": (NOTES.replace(b"\x90", b"\x99").replace(b"\x80", b"\x89") + NOTES, True),
    "latin-1 track name": (b"\x00\xff\x03\x04Caf\xe9" + NOTES, True),
    "ASCII track name": (b"\x00\xff\x03\x04Lead" + NOTES, True),
    "chord text": (b"\x00\xff\x01\x08chord:Am" + NOTES + b"\x00\xff\x01\x07chord:G", True),
    "running status across a meta event": (b"\x00\x90\x3c\x40\x00\xff\x01\x03abc\x00\x3e\x40\x83\x60\x80\x3c\x00"
                                            b"\x00\x3e\x00", True),
    "system messages": (b"\x00\xf1\x10\x00\xf2\x10\x10\x00\xf8" + NOTES, True),
    "meters and tempi": (b"\x00\xff\x58\x04\x06\x03\x18\x08\x00\xff\x51\x03\x07\xa1\x20" + NOTES
                         + b"\x00\xff\x58\x04\x05\x02\x18\x08\x00\xff\x51\x03\x05\x00\x00", True),
    "short time signature": (b"\x00\xff\x58\x02\x03\x02" + NOTES, False),
    "meter denominator past 2**7": (b"\x00\xff\x58\x04\x03\x20\x18\x08" + NOTES, False),
    "unknown key signature": (b"\x00\xff\x59\x02\x09\x00" + NOTES, False),
    "data byte over 127": (b"\x00\x90\x3c\xc0\x83\x60\x80\x3c\x00", False),
    "lyrics": (b"\x00\xff\x05\x02la" + NOTES + b"\x00\xff\x05\x02li", True),
    "0xFF inside a tempo": (b"\x00\xff\x51\x03\x07\xff\x20" + NOTES, True),
    "meta type mido does not know, after a delta": (NOTES + b"\x83\x60\xff\x0a\x01x" + NOTES, False),
    "running status after a clock byte": (b"\x00\x90\x3c\x40\x00\xf8\x00\x3e\x40\x83\x60\x80\x3c\x00", False),
    "a stop byte": (b"\x00\xfc" + NOTES, False),
    "running status after a system exclusive": (b"\x00\x90\x3c\x40\x00\xf0\x02\x01\xf7\x00\x3e\x40"
                                                 b"\x83\x60\x80\x3c\x00\x00\x3e\x00", False),
    "a system exclusive message": (b"\x00\xf0\x05\x7e\x7f\x09\x01\xf7" + NOTES, True),
}
TEMPO_90, TEMPO_140 = b"\x00\xff\x51\x03\x0a\x2c\x2b", b"\x00\xff\x51\x03\x06\x8a\x1b"
METER_34, METER_68 = b"\x00\xff\x58\x04\x03\x02\x18\x08", b"\x00\xff\x58\x04\x06\x03\x18\x08"
MULTI_TRACK = {  # name: (tracks, whether the fast reader vouches for it)
    "conductor and two parts": ([TEMPO_90 + METER_34 + b"\x83\x60" + TEMPO_140[1:], NOTES,
                                 b"\x00\xc1\x21" + NOTES.replace(b"\x90", b"\x91").replace(b"\x80", b"\x81")], True),
    "the same tempo and meter in every track": ([TEMPO_90 + METER_34 + NOTES] * 3, True),
    "differing tempi in two tracks": ([TEMPO_140 + NOTES, TEMPO_90 + NOTES], False),
    "differing meters at one step": ([METER_34 + NOTES, METER_68 + NOTES], False),
    "program set by an earlier track": ([b"\x00\xc0\x05", NOTES], False),
    "program set in the track": ([b"\x00\xc0\x05", b"\x00\xc0\x07" + NOTES], True),
}


@pytest.mark.parametrize("name", list(CASES))
def test_fast_reader_matches_mido_or_steps_aside(tmp_path, name):
    events, vouched = CASES[name]
    path = write_track(tmp_path / "t.mid", events)
    fast = read_with_symusic(path)
    assert (fast is not None) == vouched
    try:
        reference = facts(read_with_mido(path))
    except MidiReadError:
        with pytest.raises(MidiReadError):  # the fast reader never reads what mido refuses
            read_midi(path)
        return
    if fast is not None:
        assert facts(fast) == reference
        assert all(isinstance(line.notes, NoteArray) for line in fast.lines)
    assert facts(read_midi(path)) == reference  # auto: whichever read it, the mido score


@pytest.mark.parametrize("name", list(MULTI_TRACK))
def test_fast_reader_on_several_tracks(tmp_path, name):
    tracks, vouched = MULTI_TRACK[name]
    path = write_track(tmp_path / "t.mid", *tracks)
    fast = read_with_symusic(path)
    assert (fast is not None) == vouched
    if fast is not None:
        assert facts(fast) == facts(read_with_mido(path))
    assert facts(read_midi(path)) == facts(read_with_mido(path))


def test_fixtures_read_the_same_with_either_reader():
    vouched = 0
    for path in sorted(FIXTURES.glob("*.mid")):
        fast = read_with_symusic(path)
        if path.name == "corrupt.mid":
            assert fast is None
            with pytest.raises(MidiReadError):
                read_midi(path)
            continue
        assert fast is not None, path.name
        assert facts(fast) == facts(read_with_mido(path)), path.name
        vouched += 1
    assert vouched == 7


def test_multi_track_file_with_tempo_map_and_chords(tmp_path):
    from seqvae.data.synthetic_midi import synthetic_midi_files

    (path,) = synthetic_midi_files(tmp_path, 1, seed=3, tracks=5, bars=20)
    fast = read_with_symusic(path)
    assert fast is not None and len(fast.lines) == 5 and fast.lines[0].is_drum
    assert facts(fast) == facts(read_with_mido(path))
    tune = tmp_path / "tune.mid"
    write_notes([(i / 2, i / 2 + 0.5, 60 + i % 7, 80) for i in range(32)], [(0, Meter(6, 8)), (8, Meter(2, 4))], tune,
                bpm=96, name="Tune", chords=[(0, "D"), (3, "G"), (6, "A7")])
    fast = read_with_symusic(tune)
    assert fast is not None and [s for _, s in fast.chords] == ["D", "G", "A7"]
    assert facts(fast) == facts(read_with_mido(tune))


def test_without_symusic_or_when_it_fails_mido_reads(tmp_path, monkeypatch):
    path = FIXTURES / "with_drums.mid"
    reference = facts(read_with_mido(path))
    monkeypatch.setitem(vars(midi_symusic), "symusic", None)
    assert read_with_symusic(path) is None and facts(read_midi(path)) == reference

    class Refusing:
        class Score:
            @staticmethod
            def from_midi(data):
                raise RuntimeError("symusic cannot parse this")

    monkeypatch.setitem(vars(midi_symusic), "symusic", Refusing)
    assert read_with_symusic(path) is None and facts(read_midi(path)) == reference


def test_reader_errors_name_the_problem(tmp_path):
    with pytest.raises(ValueError, match="unknown MIDI reader 'fast'.*auto, mido"):
        read_midi(FIXTURES / "with_drums.mid", reader="fast")
    with pytest.raises(MidiReadError, match="no such file"):
        read_midi(tmp_path / "missing.mid")
    (tmp_path / "junk.mid").write_bytes(b"MThd not really")
    assert read_with_symusic(tmp_path / "junk.mid") is None
    with pytest.raises(MidiReadError, match="not a readable MIDI file"):
        read_midi(tmp_path / "junk.mid")


def test_note_array_behaves_like_a_list_of_notes():
    import numpy as np

    from seqvae.codec.events import Note

    notes = NoteArray(*(np.array(column) for column in ([60, 62], [0, 4], [4, 8], [80, 90])))
    assert len(notes) == 2 and notes[1] == Note(62, 4, 8, 90) and notes[-1] == notes[1]
    assert list(notes) == [Note(60, 0, 4, 80), Note(62, 4, 8, 90)] == notes
    assert notes[:1] == [Note(60, 0, 4, 80)] and bool(notes) and not NoteArray(*(np.zeros(0, int),) * 4)
