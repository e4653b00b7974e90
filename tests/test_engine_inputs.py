"""Reading melodies from MIDI files and note lists, and drawing piano rolls (no model needed)."""

from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pretty_midi
import pytest

from seqvae.codec import EventCodec, Melody, Meter, read_midi
from seqvae.engine.inputs import bars_of, melody_from_midi, melody_from_notes, windows_from_midi
from seqvae.engine.pictures import latent_map_png, piano_roll_png, score_png

CODEC = EventCodec()


def _write_file(path: Path, lines: dict[str, tuple[int, list[tuple[int, float, float]]]], bpm: float = 120.0,
                meter: tuple[int, int] = (4, 4), drums: bool = False) -> Path:
    """lines: name -> (program, [(pitch, start_beat, dur_beats)])."""
    pm = pretty_midi.PrettyMIDI(initial_tempo=bpm)
    pm.time_signature_changes.append(pretty_midi.TimeSignature(meter[0], meter[1], 0.0))
    beat = 60.0 / bpm
    for name, (program, notes) in lines.items():
        inst = pretty_midi.Instrument(program=program, name=name)
        for pitch, start, dur in notes:
            inst.notes.append(pretty_midi.Note(90, pitch, start * beat, (start + dur) * beat))
        pm.instruments.append(inst)
    if drums:
        kit = pretty_midi.Instrument(program=0, is_drum=True, name="Drums")
        kit.notes += [pretty_midi.Note(100, 36, i * beat, i * beat + 0.1) for i in range(8)]
        pm.instruments.append(kit)
    pm.write(str(path))
    return path


def _scale(beats: int, start: float = 0.0, pitch: int = 60) -> list[tuple[int, float, float]]:
    return [(pitch + (i % 8), start + i, 1.0) for i in range(beats)]


def test_single_line_two_bars_needs_no_choice(tmp_path):
    path = _write_file(tmp_path / "a.mid", {"Lead": (73, _scale(8))}, bpm=96)
    melody = melody_from_midi(path, 32, CODEC)
    assert melody.n_steps == 32 and melody.meter == Meter(4, 4)
    assert melody.bpm == pytest.approx(96) and melody.program == 73 and melody.velocity == 90
    assert [n.pitch for n in melody.notes()] == [60, 61, 62, 63, 64, 65, 66, 67]
    assert [n.start for n in melody.notes()] == list(range(0, 32, 4))


def test_several_lines_list_the_choices_and_track_picks_one(tmp_path):
    path = _write_file(tmp_path / "band.mid", {"Flute": (73, _scale(8, pitch=72)), "Bass": (32, _scale(8, pitch=40))},
                       drums=True)
    with pytest.raises(ValueError, match=r"2 candidate lines.*1 = 'Flute.*2 = 'Bass") as info:
        melody_from_midi(path, 32, CODEC)
    assert "Drums" not in str(info.value)
    assert melody_from_midi(path, 32, CODEC, track=2).notes()[0].pitch == 40
    assert melody_from_midi(path, 32, CODEC, track="flute").notes()[0].pitch == 72
    assert melody_from_midi(path, 32, CODEC, track="2").program == 32
    with pytest.raises(ValueError, match="track 3 does not exist; send 1..2"):
        melody_from_midi(path, 32, CODEC, track=3)
    with pytest.raises(ValueError, match="matches no line"):
        melody_from_midi(path, 32, CODEC, track="violin")


def test_long_line_asks_for_a_bar_and_is_windowed_there(tmp_path):
    path = _write_file(tmp_path / "long.mid", {"Lead": (0, _scale(32))})  # 8 bars of quarter notes
    with pytest.raises(ValueError, match=r"spans bars 1-8.*hears 2 bars \(32 steps\).*--bar N.*1-8"):
        melody_from_midi(path, 32, CODEC)
    window = melody_from_midi(path, 32, CODEC, bar=3)
    assert [n.pitch for n in window.notes()] == [60 + (i % 8) for i in range(8, 16)]
    tail = melody_from_midi(path, 32, CODEC, bar=8)  # runs past the end: padded with silence
    assert len(tail.notes()) == 4 and tail.n_steps == 32
    with pytest.raises(ValueError, match=r"bar 9 does not exist; send 1..8 \(the file has 8 bars\)"):
        melody_from_midi(path, 32, CODEC, bar=9)


def test_rests_before_the_tune_start_the_window_at_its_first_bar(tmp_path):
    path = _write_file(tmp_path / "late.mid", {"Lead": (0, _scale(8, start=8.0))})  # starts in bar 3
    melody = melody_from_midi(path, 32, CODEC)
    assert melody.notes()[0].start == 0 and len(melody.notes()) == 8


def test_meter_that_does_not_fill_the_window_is_explained(tmp_path):
    path = _write_file(tmp_path / "waltz.mid", {"Lead": (0, _scale(6))}, meter=(3, 4))
    with pytest.raises(ValueError, match=r"3/4, whose bars do not fill this model's 32-step window"):
        melody_from_midi(path, 32, CODEC)
    triple = melody_from_midi(path, 24, CODEC)
    assert triple.meter == Meter(3, 4) and len(triple.notes()) == 6


def test_drums_only_and_broken_files_are_explained(tmp_path):
    pm = pretty_midi.PrettyMIDI()
    kit = pretty_midi.Instrument(program=0, is_drum=True)
    kit.notes.append(pretty_midi.Note(100, 36, 0, 0.2))
    pm.instruments.append(kit)
    pm.write(str(tmp_path / "drums.mid"))
    with pytest.raises(ValueError, match="only drum notes"):
        melody_from_midi(tmp_path / "drums.mid", 32, CODEC)
    (tmp_path / "junk.mid").write_bytes(b"not midi at all")
    with pytest.raises(ValueError, match="not a readable MIDI file"):
        melody_from_midi(tmp_path / "junk.mid", 32, CODEC)


def test_polyphony_keeps_the_top_line_and_out_of_range_pitches_fold(tmp_path):
    chords = [(60, 0.0, 2.0), (64, 0.0, 2.0), (67, 0.0, 2.0), (110, 2.0, 2.0)]
    path = _write_file(tmp_path / "chords.mid", {"Piano": (0, chords)})
    melody = melody_from_midi(path, 32, CODEC)
    assert [(n.pitch, n.start, n.end) for n in melody.notes()] == [(67, 0, 8), (98, 8, 16)]


def test_windows_cover_every_line_without_overlap(tmp_path):
    path = _write_file(tmp_path / "band.mid", {"Flute": (73, _scale(16, pitch=72)), "Bass": (32, _scale(8, pitch=40))})
    windows = windows_from_midi(path, 32, CODEC)
    assert [(w.track, w.bar) for w in windows] == [(1, 1), (1, 3), (2, 1)]
    assert windows[1].label == "band.mid track 1 bar 3"
    assert [n.pitch for n in windows[1].melody.notes()][:2] == [72, 73]
    assert [(w.track, w.bar) for w in windows_from_midi(path, 32, CODEC, track=2)] == [(2, 1)]


def test_bars_follow_meter_changes(tmp_path):
    pm = pretty_midi.PrettyMIDI(initial_tempo=120)
    pm.time_signature_changes += [pretty_midi.TimeSignature(4, 4, 0.0), pretty_midi.TimeSignature(3, 4, 4.0)]
    inst = pretty_midi.Instrument(0)
    inst.notes += [pretty_midi.Note(80, 60, t * 0.5, t * 0.5 + 0.4) for t in range(16)]
    pm.instruments.append(inst)
    pm.write(str(tmp_path / "change.mid"))
    bars = bars_of(read_midi(tmp_path / "change.mid"))
    assert [(b.start, str(b.meter)) for b in bars] == [(0, "4/4"), (16, "4/4"), (32, "3/4"), (44, "3/4"),
                                                        (56, "3/4")]
    assert str(melody_from_midi(tmp_path / "change.mid", 24, CODEC, bar=3).meter) == "3/4"


def test_melody_from_notes_rounds_to_the_grid_and_checks_input():
    melody = melody_from_notes([(60, 0, 1, 70), (64, 1.02, 0.5, 90), (67, 7.5, 4, 110)], 32, CODEC, Meter(4, 4),
                               bpm=90)
    assert [(n.pitch, n.start, n.end) for n in melody.notes()] == [(60, 0, 4), (64, 4, 6), (67, 30, 32)]
    assert melody.velocity == 90 and melody.bpm == 90
    for notes, message in [
        ([(60, 8.0, 1, 80)], "outside this model's window of 8 beats"),
        ([(60, -1, 1, 80)], "outside this model's window"),
        ([(60, 0, 0, 80)], "positive number of beats"),
        ([(130, 0, 1, 80)], "outside 21..108"),
        ([(60, 0, 1, 0)], "not a MIDI velocity"),
        ([(60, 0, 1)], r"\(pitch, start_beat, duration_beats, velocity\)"),
    ]:
        with pytest.raises(ValueError, match=message):
            melody_from_notes(notes, 32, CODEC, Meter(4, 4))


def test_pictures_are_written(tmp_path):
    rng = np.random.default_rng(0)
    melodies = [melody_from_notes([(60 + i, i, 1, 80) for i in range(8)], 32, CODEC, Meter(4, 4)) for _ in range(3)]
    one = piano_roll_png(melodies, tmp_path / "row.png", row_titles=["a path"])
    grid = piano_roll_png([melodies[:2], melodies[1:]], tmp_path / "grid.png", title="grid")
    single = piano_roll_png(melodies[0], tmp_path / "one.png")
    path = _write_file(tmp_path / "band.mid", {"Flute": (73, _scale(16, pitch=72)), "Bass": (32, _scale(8, pitch=40))})
    score = score_png(read_midi(path), tmp_path / "score.png")
    latent = latent_map_png(rng.standard_normal((30, 2)), tmp_path / "map.png", [0.6, 0.2],
                            groups=[f"f{i % 3}" for i in range(30)])
    values = latent_map_png(rng.standard_normal((30, 2)), tmp_path / "map2.png", [0.6, 0.2],
                            values=rng.random(30), value_name="density")
    for png in (one, grid, single, score, latent, values):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 2000
    pixels = mpimg.imread(str(single))[..., :3]
    note_blue = np.all(np.abs(pixels - np.array([0x1F, 0x77, 0xB4]) / 255) < 0.05, axis=-1)
    assert note_blue.sum() > 200  # the eight notes are drawn
    with pytest.raises(ValueError, match="nothing to draw"):
        piano_roll_png([], tmp_path / "none.png")
    assert isinstance(melodies[0], Melody)
