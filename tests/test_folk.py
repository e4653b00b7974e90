"""Folk ABC -> MIDI: bar alignment (pickups, split bars, meter changes) read back through the codec."""

from __future__ import annotations

import hashlib
import json
from fractions import Fraction

import pytest

pytest.importorskip("music21")

from seqvae.cli.folk_command import COLLECTION_NAMES  # noqa: E402
from seqvae.codec import Meter, read_midi  # noqa: E402
from seqvae.data.abc_to_midi import TuneSkipped, convert_abc_text  # noqa: E402
from seqvae.data.abc_tunes import COLLECTIONS, find_folk_tunes, slug, split_abc_tunes, tune_file_name  # noqa: E402
from seqvae.data.bar_layout import Bar, Tone, layout_bars  # noqa: E402
from seqvae.data.folk import convert_folk, sample_evenly  # noqa: E402


def abc(body: str, meter: str = "4/4", length: str = "1/8", key: str = "G") -> str:
    return f"X:1\nT:Test tune\nM:{meter}\nL:{length}\nK:{key}\n{body}\n"


def convert(tmp_path, text: str):
    path = tmp_path / "tune.mid"
    facts = convert_abc_text(text, path)
    score = read_midi(path)
    notes = [(n.pitch, n.start, n.end) for line in score.lines for n in line.notes]
    return facts, score, notes


def test_pickup_is_padded_to_a_whole_bar(tmp_path) -> None:
    facts, score, notes = convert(tmp_path, abc("D2|G2B2 d2B2|c2A2 F2D2|G8|]"))
    assert score.meters == [(0, Meter(4, 4))]
    assert notes[0] == (62, 12, 16)  # the pickup D sits at the end of a padded first bar
    assert notes[1][1] == 16  # the first full bar starts on the bar line
    assert facts["pickup_quarters"] == 3.0 and facts["bars"] == 4
    assert notes[-1] == (67, 48, 64)


def test_jig_in_six_eight_keeps_its_meter_and_pickup(tmp_path) -> None:
    facts, score, notes = convert(tmp_path, abc("A|d2e f2d|e2c A2A|d3 d2|]", meter="6/8", key="D"))
    assert score.meters == [(0, Meter(6, 8))]
    assert Meter(6, 8).steps_per_bar == 12
    assert notes[0] == (69, 10, 12) and notes[1] == (74, 12, 16)
    bar_starts = {start for _, start, _ in notes if start % 12 == 0}
    assert bar_starts == {12, 24, 36}
    assert facts["meters"] == ["6/8"]


def test_phrase_end_and_next_pickup_share_one_bar_after_repeat_expansion(tmp_path) -> None:
    facts, _, notes = convert(tmp_path, abc("C|E G c2|G3:|", length="1/4", key="C"))
    assert facts["repeats"] == "expanded"
    starts = [start for _, start, _ in notes]
    assert starts == [12, 16, 20, 24, 32, 44, 48, 52, 56, 64]  # second C completes the bar of G3


def test_meter_change_mid_tune_is_written_at_its_bar(tmp_path) -> None:
    body = "G2 A2 B2|c2 B2 A2|\nM:2/4\nG2 A2|B4|]"
    facts, score, notes = convert(tmp_path, abc(body, meter="3/4"))
    assert score.meters == [(0, Meter(3, 4)), (24, Meter(2, 4))]
    assert facts["meters"] == ["3/4", "2/4"]
    assert (71, 32, 40) in notes


def test_unparsed_inline_meter_is_recovered_from_bar_lengths(tmp_path) -> None:
    _, score, _ = convert(tmp_path, abc("G2 A2 B2|[M:2/4] c2 B2|A2 G2|F2 E2|D4|]", meter="3/4"))
    assert score.meters == [(0, Meter(3, 4)), (12, Meter(2, 4))]


def test_grace_notes_dropped_chords_topped_ties_merged(tmp_path) -> None:
    _, _, notes = convert(tmp_path, abc("{a}G2 [DFA]2 B2-B2|c8|d8|]"))
    assert notes == [(67, 0, 4), (69, 4, 8), (71, 8, 16), (72, 16, 32), (74, 32, 48)]


def test_triplets_keep_their_place_in_the_bar(tmp_path) -> None:
    _, _, notes = convert(tmp_path, abc("(3GAB c2 d4|e8|f8|]"))
    assert [n[1] for n in notes] == [0, 1, 3, 4, 8, 16, 32]  # 16th grid rounding of the triplet; bar 2 on 16


def test_unbarred_and_empty_tunes_are_skipped_with_a_reason(tmp_path) -> None:
    with pytest.raises(TuneSkipped) as unbarred:
        convert_abc_text(abc("GABc dedB AGFG", meter="none"), tmp_path / "x.mid")
    assert unbarred.value.reason == "no_bar_lines"
    with pytest.raises(TuneSkipped) as empty:
        convert_abc_text(abc("z8|z8|]"), tmp_path / "y.mid")
    assert empty.value.reason == "no_notes"
    assert not (tmp_path / "x.mid").exists() and not (tmp_path / "y.mid").exists()


def test_layout_gives_an_overfull_bar_its_own_meter() -> None:
    four = Meter(4, 4)
    bars = [
        Bar(Fraction(4), four, [Tone(Fraction(0), Fraction(4), 60)]),
        Bar(Fraction(5), four, [Tone(Fraction(0), Fraction(5), 62)]),
        Bar(Fraction(4), four, [Tone(Fraction(0), Fraction(4), 64)]),
    ]
    layout = layout_bars(bars)
    assert layout.meters == [(0, four), (4, Meter(5, 4)), (9, four)]
    assert layout.notes == [(0, 4, 60), (4, 9, 62), (9, 13, 64)]
    assert layout.length == 13 and layout.bars == 3


def test_split_abc_tunes_carries_the_file_header(tmp_path) -> None:
    text = "% book header\nL:1/8\n\nX:1\nT:First\nM:2/4\nK:D\nAB|\n\nX:2\nT:Second One\nM:C|\nK:G\nGA|\n"
    tunes = split_abc_tunes(text, "misc/book.abc", "miscFolk", first_number=7)
    assert [(t.number, t.reference, t.title, t.meter, t.key) for t in tunes] == [
        (7, "1", "First", "2/4", "D"), (8, "2", "Second One", "C|", "G"),
    ]
    assert tunes[1].text.splitlines()[:3] == ["X:2", "% book header", "L:1/8"]
    assert tune_file_name(tunes[1]) == "miscFolk/0008_second-one.mid"
    assert slug("  Ça Ira! (The 2nd) ") == "ca-ira-the-2nd" and slug("???") == "untitled"


def test_folk_collections_are_found_inside_music21() -> None:
    tunes = find_folk_tunes(["misc", "oneills"])
    assert {t.collection for t in tunes} == {"miscFolk", "oneills1850"}
    assert len(tunes) > 2000
    assert len({tune_file_name(t) for t in tunes}) == len(tunes)
    picked = sample_evenly(tunes, 10)
    assert len(picked) == 10 and {t.collection for t in picked} == {"miscFolk", "oneills1850"}
    assert tuple(COLLECTIONS) == COLLECTION_NAMES  # the CLI's names come from the one table
    with pytest.raises(ValueError, match="unknown folk collection"):
        find_folk_tunes(["nottingham"])


def test_convert_folk_writes_files_and_index(tmp_path) -> None:
    out = tmp_path / "folk"
    result = convert_folk(out, ["misc", "ryans"], workers=1, limit=6, progress=False)
    index = json.loads((out / "folk_index.json").read_text())
    assert result.tunes == 6 == index["counts"]["tunes"]
    assert result.converted == index["counts"]["converted"] == len(index["tunes"]) >= 5
    for entry in index["tunes"]:
        assert (out / entry["file"]).is_file()
        assert entry["collection"] in entry["file"] and entry["meter"] and entry["bars"] > 0
        score = read_midi(out / entry["file"])
        assert score.meters[0][1] is not None and score.bpm == pytest.approx(120.0)
    with pytest.raises(FileExistsError, match="--force"):
        convert_folk(out, ["misc"], workers=1, limit=2, progress=False)
    again = convert_folk(out, ["misc"], workers=1, limit=2, progress=False, force=True)
    assert again.tunes == 2 and not (out / "ryansMammoth").exists()


# Read back with read_midi from files `seqvae data folk` wrote before the folk module was split and its
# MIDI went through codec.midi: (collection, number) -> meters, notes, track name and a digest of every
# (pitch, start, end, velocity). Jigs with pickups and repeats, a mid-tune meter change, triplets.
FOLK_MIDI_BEFORE = {
    ("oneills1850", 722): ([(0, "6/8")], 290, "SADDLE THE PONY", "fbb1ed357972c177"),
    ("oneills1850", 161): ([(0, "3/4"), (144, "2/4"), (160, "3/4")], 79, "The Caves of Cong", "5cd0ffd872fe29d5"),
    ("oneills1850", 1628): ([(0, "2/4")], 248, "Cloone Hornpipe, The", "aacb67c8b6ac758a"),
    ("miscFolk", 13): ([(0, "2/4")], 210, "Rakes of Marlow", "f1f9a3ed610b7438"),
}


def test_folk_midi_reads_back_as_it_did_before_the_split(tmp_path) -> None:
    tunes = {(t.collection, t.number): t for t in find_folk_tunes(["misc", "oneills"])}
    for (collection, number), (meters, n_notes, name, digest) in FOLK_MIDI_BEFORE.items():
        tune = tunes[(collection, number)]
        path = tmp_path / tune_file_name(tune)
        facts = convert_abc_text(tune.text, path, name=tune.title)
        score = read_midi(path)
        notes = [(n.pitch, n.start, n.end, n.velocity) for line in score.lines for n in line.notes]
        assert [(at, str(m)) for at, m in score.meters] == meters, tune.title
        assert score.bpm == pytest.approx(120.0) and [line.program for line in score.lines] == [0]
        assert [line.name for line in score.lines] == [f"{name} (ch 1)"]
        assert len(notes) == n_notes == facts["notes"]
        assert hashlib.sha256(repr(notes).encode()).hexdigest()[:16] == digest, tune.title
