"""`data stats`: counts that match the arrays, skip reasons from meta.json, a PNG that opens."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

from seqvae.cli.stats_command import register_stats
from seqvae.codec import EventCodec
from seqvae.data.stats import corpus_stats, format_stats, pitch_name, plot_stats
from seqvae.data.synthetic import write_synthetic_corpus

CODEC = EventCodec()


@pytest.fixture
def corpus_dir(tmp_path):
    path = tmp_path / "built"
    write_synthetic_corpus(path, 60, 10, 8, steps=32, seed=1)
    train = np.load(path / "train.npy")
    train[5:9] = train[0]  # four duplicates of window 0: 60 windows, 56 distinct
    np.save(path / "train.npy", train)
    meters = np.load(path / "train_meter.npy")
    meters[:20] = (2, 4)
    np.save(path / "train_meter.npy", meters)
    meta = json.loads((path / "meta.json").read_text())
    meta["files"] = {"found": 30, "used": 27, "skipped": {"unreadable": 2, "no_windows:too_few_notes": 1}}
    meta["windows_dropped"] = {"gap": 7}
    (path / "meta.json").write_text(json.dumps(meta))
    return path


def test_counts_match_the_arrays(corpus_dir) -> None:
    stats = corpus_stats(corpus_dir)
    train = np.load(corpus_dir / "train.npy")
    assert stats.splits["train"].windows == 60 and stats.splits["train"].distinct == 56
    assert stats.windows == 78 and stats.distinct_all == 74
    assert stats.splits["train"].meters == {"2/4": 20, "4/4": 40}
    assert stats.meters == {"2/4": 20, "4/4": 58}
    notes = np.array([len(CODEC.events_to_notes(row)) for row in train])
    assert stats.splits["train"].notes_mean == pytest.approx(notes.mean())
    assert (stats.splits["train"].notes_min, stats.splits["train"].notes_max) == (notes.min(), notes.max())
    all_rows = np.concatenate([np.load(corpus_dir / f"{s}.npy") for s in ("train", "valid", "test")])
    pitches = [n.pitch for row in all_rows for n in CODEC.events_to_notes(row)]
    assert stats.pitch_counts.sum() == len(pitches)
    assert stats.pitch_counts[60] == pitches.count(60)
    assert stats.notes_per_window.sum() == 78
    assert stats.splits["train"].pitch_low == min(n.pitch for row in train for n in CODEC.events_to_notes(row))
    assert stats.skipped == {"unreadable": 2, "no_windows:too_few_notes": 1}
    assert stats.files == {"found": 30, "used": 27}


def test_table_shows_splits_meters_and_skips(corpus_dir) -> None:
    text = format_stats(corpus_stats(corpus_dir))
    assert "train" in text and "60" in text and "56" in text
    assert "2/4" in text and "4/4" in text and "58" in text
    assert "unreadable" in text and "no_windows:too_few_notes" in text and "gap" in text
    assert "30 found, 27 used" in text
    assert pitch_name(60) == "C4" and pitch_name(69) == "A4"


def test_plot_writes_a_png(corpus_dir, tmp_path) -> None:
    path = plot_stats(corpus_stats(corpus_dir), tmp_path / "plots" / "hist.png")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    with pytest.raises(ValueError, match=".png"):
        plot_stats(corpus_stats(corpus_dir), tmp_path / "hist.jpg")


def test_empty_split_is_reported_not_crashed(tmp_path) -> None:
    write_synthetic_corpus(tmp_path, 12, 0, 3, steps=24, seed=0)
    stats = corpus_stats(tmp_path)
    assert stats.splits["valid"].windows == 0 and stats.splits["valid"].pitch_low is None
    assert "valid" in format_stats(stats) and stats.meters == {"3/4": 15}


def test_not_a_corpus_gives_a_clear_error(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="data build"):
        corpus_stats(tmp_path)


def test_cli_prints_table_and_writes_plot(corpus_dir, tmp_path, capsys) -> None:
    parser = argparse.ArgumentParser()
    register_stats(parser.add_subparsers())
    args = parser.parse_args(["stats", str(corpus_dir), "--plot", str(tmp_path / "h.png")])
    assert args.handler(args) == 0
    out = capsys.readouterr().out
    assert "distinct" in out and "histograms:" in out and (tmp_path / "h.png").is_file()
    bad = parser.parse_args(["stats", str(corpus_dir), "--plot", str(tmp_path / "h.pdf")])
    with pytest.raises(ValueError, match=".png"):
        bad.handler(bad)
