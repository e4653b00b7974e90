"""Extraction and corpus building on the MIDI fixtures and on generated files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from seqvae.codec import EventCodec, Melody, Meter, Note, read_midi, write_midi
from seqvae.data.build import build_corpus, split_for
from seqvae.data.corpus import load_corpus
from seqvae.data.extract import WindowRules, extract_windows, skyline

FIXTURES = Path(__file__).parent.parent / "datasets" / "fixtures"
CODEC = EventCodec()


def notes_of(events: np.ndarray) -> list[tuple[int, int, int]]:
    return [(n.pitch, n.start, n.end) for n in CODEC.events_to_notes(events)]


def test_tempo_changes_do_not_move_the_grid():
    score = read_midi(FIXTURES / "tempo_changes.mid")
    starts = [n.start for n in score.lines[0].notes]
    assert starts == list(range(0, 128, 4))  # one onset every quarter, whatever the tempo
    windows = extract_windows(score, WindowRules(steps=32)).windows
    assert len(windows) > 0
    assert all((w[::4] >= 2).all() for w in windows)


def test_meter_change_splits_windows_by_family():
    score = read_midi(FIXTURES / "meter_change.mid")
    duple = extract_windows(score, WindowRules(steps=32))
    triple = extract_windows(score, WindowRules(steps=24))
    assert duple.meters.tolist() and all(m == [4, 4] for m in duple.meters.tolist())
    assert triple.meters.tolist() and all(m == [3, 4] for m in triple.meters.tolist())
    # 4 bars of 4/4 give at most 3 two-bar windows; 4 bars of 3/4 at most 3 as well.
    assert len(duple.windows) <= 3 and len(triple.windows) <= 3


def test_skyline_keeps_the_highest_note_and_restrikes_lower_ones():
    score = read_midi(FIXTURES / "overlapping.mid")
    window = extract_windows(score, WindowRules(steps=32, min_notes=1)).windows[0]
    assert notes_of(window.astype(np.int64)) == [(60, 0, 2), (64, 2, 4), (67, 4, 12), (48, 12, 16), (72, 16, 20),
                                                 (55, 20, 32)]


def test_skyline_marks_repeated_top_pitch_as_new_onset():
    top, struck = skyline([Note(60, 0, 4), Note(60, 4, 8)], 8)
    assert top.tolist() == [60] * 8 and struck[[0, 4]].all() and not struck[[1, 2, 3, 5]].any()


def test_drums_are_ignored():
    score = read_midi(FIXTURES / "with_drums.mid")
    windows = extract_windows(score, WindowRules(steps=32)).windows
    pitches = {p for w in windows for p, _, _ in notes_of(w.astype(np.int64))}
    assert pitches and min(pitches) >= 60  # the drum notes (36..40) never appear


def test_held_note_is_restruck_at_window_start():
    events = CODEC.notes_to_events([Note(60, 0, 4), Note(62, 4, 24), Note(64, 24, 32)] * 1, 64)
    melody = Melody(events, meter=Meter(4, 4))
    score_notes = melody.notes()
    from seqvae.codec.midi import Line, MidiScore

    score = MidiScore([Line("x", 0, False, score_notes)], [(0, Meter(4, 4))], 120.0, 64)
    windows = extract_windows(score, WindowRules(steps=32, min_notes=1, max_gap_steps=64)).windows
    second = windows[1].astype(np.int64)  # starts at bar 2, inside the held 62
    assert notes_of(second)[0] == (62, 0, 8)


def test_octave_transposition_into_range_and_drop_when_impossible():
    narrow = EventCodec(48, 72)
    from seqvae.codec.midi import Line, MidiScore

    high = [Note(84 + (i % 3), i * 4, i * 4 + 4) for i in range(8)]
    wide = [Note(40 if i % 2 else 90, i * 4, i * 4 + 4) for i in range(8)]
    for notes, expect in ((high, 1), (wide, 0)):
        score = MidiScore([Line("x", 0, False, notes)], [(0, Meter(4, 4))], 120.0, 32)
        result = extract_windows(score, WindowRules(steps=32, codec=narrow))
        assert len(result.windows) == expect
    assert result.dropped["pitch_range"] == 1


def _copy_fixtures(dst: Path) -> None:
    dst.mkdir()
    for f in FIXTURES.glob("*.mid"):
        shutil.copy(f, dst / f.name)


def test_build_skips_bad_files_by_reason_and_loads(tmp_path):
    midi = tmp_path / "midi"
    _copy_fixtures(midi)
    result = build_corpus(midi, tmp_path / "built", steps=32, workers=1, progress=False)
    assert result.skipped["unreadable"] == 1
    assert result.skipped["empty"] == 1
    assert result.skipped["drums_only"] == 1
    corpus = load_corpus(tmp_path / "built")
    total = sum(len(corpus.split(s)) for s in ("train", "valid", "test"))
    assert total == sum(result.windows.values()) > 0
    meta = json.loads((tmp_path / "built" / "meta.json").read_text())
    assert meta["files"]["skipped"]["unreadable"] == 1 and meta["steps"] == 32
    train = corpus.split("train")
    assert train.events.dtype == np.int8 and train.events.shape[1] == 32
    assert len(set(map(bytes, np.asarray(train.events)))) == len(train)  # no duplicate windows


def _tune(seed: int, transpose: int = 0) -> Melody:
    rng = np.random.default_rng(seed)
    notes = []
    for bar in range(8):
        for beat in range(4):
            start = bar * 16 + beat * 4
            notes.append(Note(int(60 + transpose + rng.integers(-7, 8)), start, start + 3))
    return Melody.from_notes(notes, 128, meter=Meter(4, 4))


def test_split_is_deterministic_and_duplicate_tunes_share_a_split(tmp_path):
    midi = tmp_path / "midi"
    for i in range(40):
        write_midi(_tune(i), midi / f"tune{i:02d}.mid")
    for i in range(10):  # the same tunes again, transposed, under other names
        write_midi(_tune(i, transpose=5), midi / "copies" / f"copy{i:02d}.mid")
    a = build_corpus(midi, tmp_path / "a", workers=2, progress=False, valid_fraction=0.2, test_fraction=0.2)
    b = build_corpus(midi, tmp_path / "b", workers=1, progress=False, valid_fraction=0.2, test_fraction=0.2)
    ca, cb = load_corpus(a.out_dir), load_corpus(b.out_dir)
    for split in ("train", "valid", "test"):
        assert np.array_equal(ca.split(split).events, cb.split(split).events)
    sources = ca.sources
    split_of_source = {}
    for split in ("train", "valid", "test"):
        for idx in np.unique(ca.split(split).sources):
            assert sources[idx] not in split_of_source, "a file's windows landed in two splits"
            split_of_source[sources[idx]] = split
    for i in range(10):
        assert split_of_source[f"tune{i:02d}.mid"] == split_of_source[f"copies/copy{i:02d}.mid"]
    assert {"train", "valid", "test"} <= set(split_of_source.values())


def test_split_for_is_stable():
    assert split_for("abc", 0.05, 0.05) == split_for("abc", 0.05, 0.05)
    counts = {s: 0 for s in ("train", "valid", "test")}
    for i in range(2000):
        counts[split_for(str(i), 0.1, 0.1)] += 1
    assert 150 < counts["test"] < 250 and 150 < counts["valid"] < 250


def test_build_refuses_to_overwrite_other_data(tmp_path):
    midi = tmp_path / "midi"
    _copy_fixtures(midi)
    out = tmp_path / "out"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not a built corpus"):
        build_corpus(midi, out, workers=1, progress=False)
    assert (out / "precious.txt").read_text() == "keep me"
    build_corpus(midi, tmp_path / "built", workers=1, progress=False)
    with pytest.raises(FileExistsError, match="--force"):
        build_corpus(midi, tmp_path / "built", workers=1, progress=False)
    build_corpus(midi, tmp_path / "built", workers=1, progress=False, force=True)


def test_cli_build_reports_counts(tmp_path, capsys):
    from seqvae.cli.main import main

    midi = tmp_path / "midi"
    _copy_fixtures(midi)
    assert main(["data", "build", str(midi), "--out", str(tmp_path / "b"), "--steps", "24", "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert "skipped files" in out and "unreadable 1" in out
    assert main(["data", "build", str(midi), "--out", str(tmp_path / "c"), "--steps", "24", "--meters", "duple"]) == 2
    assert main(["data", "build", str(tmp_path / "nowhere"), "--out", str(tmp_path / "d")]) == 2


def test_load_corpus_errors_name_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="seqvae data build"):
        load_corpus(tmp_path)


def test_meter_change_after_the_last_note_is_harmless():
    from seqvae.codec.midi import Line, MidiScore

    notes = [Note(60 + i % 5, i * 4, i * 4 + 4) for i in range(16)]
    score = MidiScore([Line("x", 0, False, notes)], [(0, Meter(4, 4)), (90, Meter(3, 4))], 120.0, 64)
    assert extract_windows(score, WindowRules(steps=32)).windows.shape == (3, 32)


def test_map_walk_and_data_build_accept_the_same_files(tmp_path):
    from seqvae.cli.generate_commands import _midi_files  # `seqvae map`'s folder walk
    from seqvae.data.build import find_midi_files

    midi = tmp_path / "midi"
    names = ["a.mid", "b.MID", "c.kar", "d.Midi", "e.SMF", "sub/f.midi", "g.txt", "h.mid.bak", "mid"]
    for name in names:
        (midi / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(FIXTURES / "jig_6_8.mid", midi / name)
    (midi / "folder.mid").mkdir()
    expected = {"a.mid", "b.MID", "c.kar", "d.Midi", "e.SMF", "sub/f.midi"}
    built = {p.relative_to(midi).as_posix() for p in find_midi_files(midi)}
    mapped = {p.relative_to(midi).as_posix() for p in _midi_files(str(midi), None)}
    assert built == mapped == expected
    assert build_corpus(midi, tmp_path / "built", steps=24, workers=1, progress=False).files == len(expected)
