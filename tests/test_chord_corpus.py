"""Chords in the corpus: ABC chord symbols through MIDI into `data build --chords`, inferred where a tune has none."""

from __future__ import annotations

import filecmp
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from seqvae.codec.chords import NO_CHORD, parse_chord, parse_progression, triad_pitch_classes
from seqvae.codec.meter import Meter
from seqvae.codec.midi import read_midi, write_notes
from seqvae.data.build import build_corpus
from seqvae.data.corpus import load_corpus
from seqvae.data.window_chords import chords_per_step

FIXTURES = Path(__file__).parent.parent / "datasets" / "fixtures"


def write_arpeggio_tune(path: Path, progression: str, bars: int, written: str | None, transpose: int = 0) -> None:
    """A 4/4 tune arpeggiating `progression` in eighths; `written` chord symbols go in the file, a bar each."""
    chords = parse_progression(progression, Meter(4, 4), 16 * bars)
    notes = [(s / 4, (s + 2) / 4, 60 + transpose + triad_pitch_classes(chords[s])[(s // 2) % 3], 80)
             for s in range(0, 16 * bars, 2)]
    symbols = [(4 * bar, written.split()[bar % len(written.split())]) for bar in range(bars)] if written else []
    write_notes(notes, [(0, Meter(4, 4))], path, chords=symbols)


def test_chord_text_events_round_trip_and_hold_until_the_next(tmp_path):
    path = tmp_path / "t.mid"
    write_notes([(0, 1, 60, 80), (4, 5, 62, 80)], [(0, Meter(4, 4))], path, chords=[(0, "Am"), (2.5, "G7")])
    score = read_midi(path)
    assert score.chords == [(0, "Am"), (10, "G7")]
    steps = chords_per_step([(2, "Am"), (4, "not a chord"), (6, "G7")], 8)
    assert steps.tolist() == [NO_CHORD] * 2 + [parse_chord("Am")] * 4 + [parse_chord("G")] * 2


def test_abc_chord_symbols_survive_conversion_and_dynamics_do_not(tmp_path):
    pytest.importorskip("music21")
    from seqvae.data.abc_to_midi import convert_abc_text

    text = ('X:1\nT:Chords\nM:4/4\nL:1/4\nK:C\nG|"Am"A c "F"f "G7"g|"f"c "4"d "^rit."e "C/E"c|"N.C."c4|]\n')
    facts = convert_abc_text(text, tmp_path / "t.mid")
    assert facts["chord_symbols"] == 5
    score = read_midi(tmp_path / "t.mid")  # the pickup pads bar 1 by three quarters: chords move with the notes
    assert score.chords == [(16, "Am"), (24, "F"), (28, "G7"), (44, "C/E"), (48, "N.C.")]


def test_build_with_chords_takes_written_chords_and_infers_the_rest(tmp_path):
    midi = tmp_path / "midi"
    midi.mkdir()
    write_arpeggio_tune(midi / "written.mid", "Am F C G", 8, written="Am F C G7")
    write_arpeggio_tune(midi / "bare.mid", "D G A D", 8, written=None, transpose=2)
    result = build_corpus(midi, tmp_path / "built", steps=32, workers=1, progress=False, chords=True,
                          valid_fraction=0.0, test_fraction=0.0)
    corpus = load_corpus(tmp_path / "built")
    train = corpus.split("train")
    assert train.chords is not None and train.chords.dtype == np.uint8 and train.chords.shape == train.events.shape
    meta = json.loads((tmp_path / "built" / "meta.json").read_text())
    assert meta["chords"]["sources"] == {"abc": 7, "inferred": 7} == result.meta["chords"]["sources"]
    assert meta["splits"]["train"]["chord_sources"] == {"abc": 7, "inferred": 7}
    names = corpus.sources
    for row in range(len(train)):
        got = set(np.asarray(train.chords[row]).tolist())
        if names[train.sources[row]] == "written.mid":
            assert got <= {parse_chord(s) for s in ("Am", "F", "C", "G")}
        else:  # inferred from the arpeggio, a whole tone up: E A B E
            assert got <= {parse_chord(s) for s in ("E", "A", "B")}
    assert corpus.split("valid").chords.shape == (0, 32)  # an empty split still has its (empty) chords


def test_build_without_chords_is_unchanged(tmp_path):
    midi = tmp_path / "midi"
    midi.mkdir()
    for f in FIXTURES.glob("*.mid"):
        shutil.copy(f, midi / f.name)
    write_arpeggio_tune(midi / "written.mid", "Am F C G", 8, written="Am F C G")
    build_corpus(midi, tmp_path / "plain", steps=32, workers=1, progress=False)
    build_corpus(midi, tmp_path / "chords", steps=32, workers=1, progress=False, chords=True)
    plain = {p.name for p in (tmp_path / "plain").iterdir()}
    assert not any(name.endswith("_chords.npy") for name in plain)
    assert "chords" not in json.loads((tmp_path / "plain" / "meta.json").read_text())
    for name in plain - {"meta.json"}:
        assert filecmp.cmp(tmp_path / "plain" / name, tmp_path / "chords" / name, shallow=False), name
    assert load_corpus(tmp_path / "plain").split("train").chords is None
    for split in ("train", "valid", "test"):
        loaded = load_corpus(tmp_path / "chords").split(split)
        assert loaded.chords.shape == loaded.events.shape


def test_cli_build_chords_reports_sources(tmp_path, capsys):
    from seqvae.cli.main import main

    midi = tmp_path / "midi"
    midi.mkdir()
    write_arpeggio_tune(midi / "bare.mid", "C G", 4, written=None)
    assert main(["data", "build", str(midi), "--out", str(tmp_path / "b"), "--workers", "1", "--chords"]) == 0
    assert "chords: abc 0 windows, inferred 3 windows" in capsys.readouterr().out


def test_a_few_capitals_at_strain_starts_are_labels_not_chords(tmp_path):
    pytest.importorskip("music21")
    from seqvae.data.abc_to_midi import convert_abc_text

    strains = "|".join(["cdef gabc'"] * 7)
    text = f'X:1\nT:Labels\nM:4/4\nL:1/8\nK:C\n"A"{strains}|"B"{strains}|]\n'
    facts = convert_abc_text(text, tmp_path / "t.mid")
    assert facts["chord_symbols"] == 0 and facts["chord_symbols_dropped_as_labels"] == 2
    assert read_midi(tmp_path / "t.mid").chords == []


def test_flats_come_back_from_music21s_spelling(tmp_path):
    pytest.importorskip("music21")
    from seqvae.data.abc_to_midi import convert_abc_text

    text = 'X:1\nT:Flats\nM:4/4\nL:1/4\nK:F\n"Bb"B4|"Ebm7"e4|"Gm/Bb"G4|"F#dim"f4|"Co"c4|]\n'
    convert_abc_text(text, tmp_path / "t.mid")
    chords = [parse_chord(s) for _, s in read_midi(tmp_path / "t.mid").chords]
    assert chords == [parse_chord(s) for s in ("Bb", "Ebm", "Gm", "F#dim", "Cdim")]  # not B minor, E minor


def test_folk_index_counts_tunes_with_chord_symbols(tmp_path, monkeypatch):
    pytest.importorskip("music21")
    from seqvae.data import folk
    from seqvae.data.abc_tunes import split_abc_tunes

    text = ('X:1\nT:Chorded\nM:4/4\nL:1/4\nK:C\n"C"c e g c|"F"f a c f|"G"g b d g|"C"c4|]\n'
            'X:2\nT:Bare\nM:4/4\nL:1/4\nK:C\nc e g c|f a c f|g b d g|c4|]\n')
    tunes = split_abc_tunes(text, "misc/t.abc", "miscFolk")
    monkeypatch.setattr(folk, "find_folk_tunes", lambda collections: tunes)
    result = folk.convert_folk(tmp_path / "out", workers=1, progress=False)
    index = json.loads(result.index_path.read_text())
    assert index["counts"]["with_chord_symbols"] == 1 == result.with_chord_symbols
    assert [t["chord_symbols"] for t in index["tunes"]] == [4, 0]


def test_chord_symbols_follow_expanded_repeats(tmp_path):
    pytest.importorskip("music21")
    from seqvae.data.abc_to_midi import convert_abc_text

    text = ('X:1\nT:Rep\nM:4/4\nL:1/4\nK:C\n|:"C"c e g c|"F"f a c f|"G"g b d g|"C"c4:|\n'
            '"Am"A c e a|"G7"g b d g|"C"c4|]\n')
    facts = convert_abc_text(text, tmp_path / "t.mid")
    assert facts["repeats"] == "expanded"
    assert [s for _, s in read_midi(tmp_path / "t.mid").chords] == ["C", "F", "G", "C"] * 2 + ["Am", "G7", "C"]
