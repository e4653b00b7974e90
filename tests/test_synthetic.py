"""Synthetic fixtures: deterministic, canonical, musically plausible, and in the built-corpus layout."""

from __future__ import annotations

import json

import numpy as np
import pytest

from seqvae.codec import NOTE_OFF, EventCodec, Meter, read_midi
from seqvae.data.synthetic import synthetic_windows, write_synthetic_corpus
from seqvae.data.synthetic_midi import synthetic_midi_files

CODEC = EventCodec()


@pytest.mark.parametrize("steps", [32, 24, 256, 192])
def test_windows_are_canonical_int8_and_deterministic(steps: int) -> None:
    windows = synthetic_windows(64, steps, seed=3)
    assert windows.dtype == np.int8 and windows.shape == (64, steps)
    assert np.array_equal(windows, synthetic_windows(64, steps, seed=3))
    assert not np.array_equal(windows, synthetic_windows(64, steps, seed=4))
    for row in windows:
        assert np.array_equal(CODEC.canonical(row), row)


def test_windows_look_like_melodies() -> None:
    windows = synthetic_windows(500, 32, seed=0)
    notes = [CODEC.events_to_notes(row) for row in windows]
    pitches = np.array([n.pitch for row in notes for n in row])
    assert pitches.min() >= 55 and pitches.max() <= 84
    assert len(np.unique(pitches)) >= 25
    per_window = np.array([len(row) for row in notes])
    assert per_window.min() >= 1 and 4 <= per_window.mean() <= 16
    assert len({row.tobytes() for row in windows}) >= 480
    assert (windows == NOTE_OFF).any(axis=1).mean() > 0.3  # rests and detached notes
    durations = {n.end - n.start for row in notes for n in row}
    assert {1, 2, 4, 8} <= durations
    intervals = np.concatenate([np.diff([n.pitch for n in row]) for row in notes if len(row) > 1])
    assert np.mean(np.abs(intervals) <= 7) > 0.8  # mostly steps and small leaps, as tunes go


def test_windows_respect_a_narrow_codec_and_refuse_a_too_narrow_one() -> None:
    codec = EventCodec(60, 80)
    windows = synthetic_windows(50, 32, seed=1, codec=codec)
    pitches = [n.pitch for row in windows for n in codec.events_to_notes(row)]
    assert min(pitches) >= 60 and max(pitches) <= 80
    with pytest.raises(ValueError, match="octave"):
        synthetic_windows(5, 32, seed=1, codec=EventCodec(60, 66))
    with pytest.raises(ValueError, match="steps"):
        synthetic_windows(5, 0, seed=1)


@pytest.mark.parametrize(("steps", "meter"), [(32, (4, 4)), (24, (3, 4))])
def test_synthetic_corpus_layout(tmp_path, steps: int, meter: tuple[int, int]) -> None:
    write_synthetic_corpus(tmp_path, 40, 9, 5, steps=steps, seed=2)
    meta = json.loads((tmp_path / "meta.json").read_text())
    assert meta["steps"] == steps
    counts = {split: info["windows"] for split, info in meta["splits"].items()}
    assert counts == {"train": 40, "valid": 9, "test": 5}
    assert meta["codec"] == {"min_pitch": 21, "max_pitch": 108}
    sources = json.loads((tmp_path / "sources.json").read_text())
    seen_sources: list[set[int]] = []
    for split, count in counts.items():
        events = np.load(tmp_path / f"{split}.npy")
        meters = np.load(tmp_path / f"{split}_meter.npy")
        source = np.load(tmp_path / f"{split}_source.npy")
        assert events.dtype == np.int8 and events.shape == (count, steps)
        assert meters.dtype == np.int8 and meters.shape == (count, 2) and (meters == meter).all()
        assert source.dtype == np.int32 and source.shape == (count,) and source.max() < len(sources)
        seen_sources.append(set(source.tolist()))
    assert not (seen_sources[0] & seen_sources[1]) and not (seen_sources[0] & seen_sources[2])
    from seqvae.data.corpus import load_corpus

    corpus = load_corpus(tmp_path)
    assert corpus.steps == steps and len(corpus.split("valid")) == 9
    train = np.load(tmp_path / "train.npy")
    valid = np.load(tmp_path / "valid.npy")
    assert not np.array_equal(train[:9], valid)


def test_synthetic_corpus_refuses_an_unsupported_window(tmp_path) -> None:
    with pytest.raises(ValueError, match="not supported"):
        write_synthetic_corpus(tmp_path, 4, 1, 1, steps=20)


def test_synthetic_midi_files_are_band_like(tmp_path) -> None:
    paths = synthetic_midi_files(tmp_path, 2, seed=5, tracks=8, bars=32)
    assert [p.name for p in paths] == ["synthetic_5_00000.mid", "synthetic_5_00001.mid"]
    score = read_midi(paths[0])
    assert [m for _, m in score.meters] == [Meter(4, 4), Meter(3, 4)]
    assert score.meters[1][0] == 24 * 16  # 3/4 starts on the bar line after 24 bars of 4/4
    assert len(score.lines) == 8
    assert sum(line.is_drum for line in score.lines) == 1
    chords = next(line for line in score.lines if line.name.startswith("chords"))
    starts = [n.start for n in chords.notes]
    assert len(starts) > len(set(starts))  # polyphonic
    assert score.n_steps == 24 * 16 + 8 * 12
    import pretty_midi

    tempo_times, _ = pretty_midi.PrettyMIDI(str(paths[0])).get_tempo_changes()
    assert len(tempo_times) == 2  # a tempo change every 16 bars
    assert paths[0].read_bytes() != paths[1].read_bytes()
