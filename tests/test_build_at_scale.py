"""Corpus builds at scale: either MIDI reader, streamed windows, shards and merging give one corpus, byte for byte."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from seqvae.cli.main import main
from seqvae.codec.meter import Meter
from seqvae.codec.midi import write_notes
from seqvae.data import window_store
from seqvae.data.build import build_corpus, parse_shard, shard_of
from seqvae.data.merge import merge_corpora
from seqvae.data.synthetic_midi import synthetic_midi_files

FIXTURES = Path(__file__).parent.parent / "datasets" / "fixtures"
UNTIMED = ("build_seconds", "merged_from", "shard")  # what two builds of the same files may differ in


@pytest.fixture(scope="module")
def midi_dir(tmp_path_factory) -> Path:
    """The fixtures, a few band-like multi-track files and folk-like tunes with chord symbols."""
    root = tmp_path_factory.mktemp("midi")
    shutil.copytree(FIXTURES, root / "fixtures", ignore=shutil.ignore_patterns("*.py"))
    synthetic_midi_files(root / "band", 4, seed=1, tracks=4, bars=24)
    for k in range(4):
        notes = [(i / 2, i / 2 + 0.5, 62 + (i * (k + 2)) % 9, 80) for i in range(64)]
        write_notes(notes, [(0, Meter(4, 4))], root / "folk" / f"tune{k}.mid", name=f"tune {k}",
                    chords=[(4 * bar, ("D", "G", "A7", "Bm")[(bar + k) % 4]) for bar in range(8)])
    return root


def assert_same_corpus(a: Path, b: Path) -> None:
    names = sorted(p.name for p in a.iterdir())
    assert names == sorted(p.name for p in b.iterdir())
    for name in names:
        if name.endswith(".npy") or name == "sources.json":
            assert (a / name).read_bytes() == (b / name).read_bytes(), name
    meta_a, meta_b = (json.loads((d / "meta.json").read_text()) for d in (a, b))
    for meta in (meta_a, meta_b):
        for key in UNTIMED:
            meta.pop(key, None)
        meta["settings"].pop("source")
    assert meta_a == meta_b


@pytest.mark.parametrize("chords", [False, True])
def test_both_readers_build_the_same_corpus(midi_dir, tmp_path, chords):
    fast = build_corpus(midi_dir, tmp_path / "fast", workers=1, progress=False, chords=chords)
    build_corpus(midi_dir, tmp_path / "mido", workers=1, progress=False, chords=chords, reader="mido")
    assert fast.files_used >= 10 and sum(fast.windows.values()) > 50
    assert_same_corpus(tmp_path / "fast", tmp_path / "mido")


def test_deduplicating_bucket_by_bucket_changes_nothing(midi_dir, tmp_path, monkeypatch):
    build_corpus(midi_dir, tmp_path / "whole", workers=1, progress=False)
    monkeypatch.setitem(vars(window_store), "BUCKET_BYTES", 64)  # two-row buckets: hundreds of them
    monkeypatch.setitem(vars(window_store), "CHUNK_BYTES", 7 * 32)
    build_corpus(midi_dir, tmp_path / "buckets", workers=1, progress=False)
    assert_same_corpus(tmp_path / "whole", tmp_path / "buckets")
    assert not list(tmp_path.glob("**/*.raw"))  # the append files are gone


@pytest.mark.parametrize("chords", [False, True])
def test_merged_shards_are_the_whole_build(midi_dir, tmp_path, chords):
    whole = build_corpus(midi_dir, tmp_path / "whole", workers=2, progress=False, chords=chords)
    shards = [build_corpus(midi_dir, tmp_path / f"shard{i}", workers=1, progress=False, chords=chords, shard=(i, 3))
              for i in range(3)]
    assert sum(s.files for s in shards) == whole.files and all(s.files for s in shards)
    merged = merge_corpora([s.out_dir for s in reversed(shards)], tmp_path / "merged")
    assert merged.windows == whole.windows
    assert_same_corpus(tmp_path / "whole", tmp_path / "merged")


def test_shards_are_disjoint_and_stable():
    paths = [f"set/{i:04d}.mid" for i in range(400)]
    owners = [shard_of(p, 4) for p in paths]
    assert owners == [shard_of(p, 4) for p in paths] and sorted(set(owners)) == [0, 1, 2, 3]
    assert parse_shard("3/4") == (3, 4)
    for bad in ("4/4", "1", "a/b", "-1/2"):
        with pytest.raises(ValueError, match="shard"):
            parse_shard(bad)


def test_merge_refuses_what_it_cannot_join(midi_dir, tmp_path):
    a = build_corpus(midi_dir, tmp_path / "a", workers=1, progress=False, shard=(0, 2)).out_dir
    b = build_corpus(midi_dir, tmp_path / "b", workers=1, progress=False, shard=(1, 2), steps=24).out_dir
    with pytest.raises(ValueError, match="two or more"):
        merge_corpora([a], tmp_path / "m")
    with pytest.raises(ValueError, match="different files"):
        merge_corpora([a, a], tmp_path / "m")
    with pytest.raises(ValueError, match="steps 24"):
        merge_corpora([a, b], tmp_path / "m")
    with pytest.raises(ValueError, match="one of the corpora merged"):
        merge_corpora([a, b], a)


def test_cli_shards_and_merge(midi_dir, tmp_path, capsys):
    for i in range(2):
        assert main(["data", "build", str(midi_dir), "--out", str(tmp_path / f"s{i}"), "--shard", f"{i}/2",
                     "--workers", "1", "--reader", "mido"]) == 0
    assert main(["data", "merge", str(tmp_path / "s0"), str(tmp_path / "s1"), "--out", str(tmp_path / "m")]) == 0
    assert "merged" in capsys.readouterr().out
    build_corpus(midi_dir, tmp_path / "whole", workers=1, progress=False)
    assert_same_corpus(tmp_path / "whole", tmp_path / "m")
    assert main(["data", "build", str(midi_dir), "--out", str(tmp_path / "x"), "--shard", "2/2"]) == 2
    assert "0 <= I < N" in capsys.readouterr().err
