"""A folder of MIDI files -> a built corpus: flat int8 window arrays per split, plus meta.json.

Work is parallel over files and every file's fate is counted: one bad file never stops a build.
Splits are decided per tune (by a transposition-invariant fingerprint), never per window, so no
tune leaks from train into valid or test, and copies of a tune in several files share a split.
Windows stream to disk as files finish (window_store), so memory does not grow with the file count;
`shard=(i, n)` builds the files whose path hashes to i of n, for `merge` to join (see docs/benchmarks.md).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from collections import Counter
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from tqdm import tqdm

from seqvae.codec.events import EventCodec
from seqvae.codec.midi import MIDI_READERS, MidiReadError, is_midi_path, read_midi
from seqvae.data.corpus import FORMAT_VERSION, SPLITS, check_out_dir, publish, save_index
from seqvae.data.extract import WindowRules, extract_windows
from seqvae.data.window_chords import CHORD_SOURCES
from seqvae.data.window_store import SplitWriter

IN_FLIGHT = 2048  # files handed to the pool at a time: bounds the finished results waiting in memory


@dataclass
class BuildResult:
    out_dir: Path
    files: int
    files_used: int
    windows: dict[str, int]
    skipped: dict[str, int]
    dropped_windows: dict[str, int]
    seconds: float
    meta: dict = field(repr=False, default_factory=dict)

    @property
    def files_per_second(self) -> float:
        return self.files / self.seconds if self.seconds > 0 else float("inf")


def find_midi_files(midi_dir: Path) -> list[Path]:
    """Every MIDI file below a folder, in a stable order (relative path)."""
    if not midi_dir.is_dir():
        raise NotADirectoryError(f"{midi_dir} is not a folder of MIDI files")
    found = [p for p in midi_dir.rglob("*") if is_midi_path(p) and p.is_file()]
    return sorted(found, key=lambda p: p.relative_to(midi_dir).as_posix())


def shard_of(relative_path: str, count: int) -> int:
    """Which of `count` shards builds a file: a hash of its path under MIDI_DIR, so any machine agrees."""
    return int.from_bytes(hashlib.blake2b(relative_path.encode(), digest_size=8).digest(), "big") % count


def parse_shard(text: str) -> tuple[int, int]:
    """'2/8' -> (2, 8): shard 2 of 8, counted from 0; a clear error for anything else."""
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise ValueError(f"shard {text!r} is not I/N: send e.g. 0/4 (the first of 4 shards)") from None
    if not 0 <= index < count:
        raise ValueError(f"shard {text!r} needs 0 <= I < N: the shards of 4 are 0/4, 1/4, 2/4 and 3/4")
    return index, count


def split_for(key: str, valid_fraction: float, test_fraction: float) -> str:
    """Deterministic split of a tune from its fingerprint alone (not file order or worker count)."""
    bucket = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big") % 10_000 / 10_000
    if bucket < test_fraction:
        return "test"
    if bucket < test_fraction + valid_fraction:
        return "valid"
    return "train"


def _process_file(job: tuple[str, WindowRules, str]):
    path, rules, reader = job
    try:
        score = read_midi(path, reader)
    except MidiReadError:
        return "unreadable", Counter(), None
    except Exception:  # a parser bug on hostile data is still just a skipped file
        return "unreadable", Counter(), None
    if not any(line.notes for line in score.lines):
        return "empty", Counter(), None
    if all(line.is_drum for line in score.lines if line.notes):
        return "drums_only", Counter(), None
    try:
        extraction = extract_windows(score, rules)
    except Exception as exc:  # noqa: BLE001 - counted, reported by type
        return f"extract_error:{type(exc).__name__}", Counter(), None
    if len(extraction.windows) == 0:
        reasons = extraction.dropped
        main = reasons.most_common(1)[0][0] if reasons else "no_melody"
        return f"no_windows:{main}", extraction.dropped, None
    return None, extraction.dropped, extraction


def build_corpus(
    midi_dir: str | Path,
    out_dir: str | Path,
    steps: int = 32,
    workers: int | None = None,
    valid_fraction: float = 0.05,
    test_fraction: float = 0.05,
    min_notes: int | None = None,
    max_gap_steps: int | None = None,
    codec: EventCodec | None = None,
    force: bool = False,
    progress: bool = True,
    chords: bool = False,
    reader: str = "auto",
    shard: tuple[int, int] | None = None,
) -> BuildResult:
    """Build a corpus of `steps`-step windows from every MIDI file under `midi_dir`.

    With `chords`, each split also gets SPLIT_chords.npy: every window's chord per step, from the file's chord
    symbols where it has them, else inferred from the melody; meta.json counts the windows of each source.
    `reader` is read_midi's (the same corpus either way); `shard=(i, n)` builds only shard i of n.
    """
    midi_dir, out_dir = Path(midi_dir), Path(out_dir)
    if not 0 <= valid_fraction < 1 or not 0 <= test_fraction < 1 or valid_fraction + test_fraction >= 1:
        raise ValueError("valid and test fractions must each be in [0, 1) and leave room for train")
    if reader not in MIDI_READERS:
        raise ValueError(f"unknown MIDI reader {reader!r}: use one of {', '.join(MIDI_READERS)}")
    if shard is not None and not 0 <= shard[0] < shard[1]:
        raise ValueError(f"shard {shard[0]} of {shard[1]} does not exist: use 0 <= index < count")
    check_out_dir(out_dir, force)
    rules = WindowRules(steps=steps, min_notes=min_notes, max_gap_steps=max_gap_steps, codec=codec or EventCodec(),
                        chords=chords)
    files = find_midi_files(midi_dir)
    if not files:
        raise FileNotFoundError(f"no MIDI files (.mid, .midi) found under {midi_dir}")
    if shard is not None:
        files = [f for f in files if shard_of(f.relative_to(midi_dir).as_posix(), shard[1]) == shard[0]]
    workers = max(1, workers or os.cpu_count() or 1)
    started = time.perf_counter()
    skipped: Counter = Counter()
    dropped: Counter = Counter()
    split_files: Counter = Counter()
    sources: list[str] = []
    tmp = out_dir.with_name(out_dir.name + ".building")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    writers = {split: SplitWriter(tmp, split, rules.steps, chords) for split in SPLITS}
    jobs = [(str(f), rules, reader) for f in files]
    with tqdm(total=len(files), desc="build", unit="file", disable=not progress, mininterval=0.5) as bar:
        for index, (reason, file_dropped, extraction) in enumerate(_run(jobs, workers)):
            bar.update(1)
            dropped.update(file_dropped)
            if reason is not None:
                skipped[reason] += 1
                continue
            split = split_for(extraction.tune_key, valid_fraction, test_fraction)
            source = np.full(len(extraction.windows), len(sources), dtype=np.int32)
            writers[split].append(extraction.windows, extraction.meters, source, extraction.chords,
                                  extraction.chords_given)
            split_files[split] += 1
            sources.append(files[index].relative_to(midi_dir).as_posix())
    counts: dict[str, dict] = {}
    for split in SPLITS:
        counts[split], duplicates = writers[split].finish(tmp, split)
        if writers[split].rows:  # as unique_rows over the split's windows counted them
            dropped["duplicate"] += duplicates
        counts[split]["files"] = split_files[split]
    seconds = time.perf_counter() - started
    meta = {
        "format": FORMAT_VERSION,
        "steps": rules.steps,
        "family": rules.family,
        "codec": {"min_pitch": rules.codec.min_pitch, "max_pitch": rules.codec.max_pitch},
        "settings": {
            "source": str(midi_dir),
            "min_notes": rules.needed_notes,
            "max_gap_steps": max_gap_steps if max_gap_steps is not None else "one bar",
            "valid_fraction": valid_fraction,
            "test_fraction": test_fraction,
            "hop": "one bar",
        },
        "files": {"found": len(files), "used": len(sources), "skipped": dict(sorted(skipped.items()))},
        "splits": counts,
        "windows_dropped": dict(sorted(dropped.items())),
        "build_seconds": round(seconds, 2),
    }
    if shard is not None:
        meta["shard"] = {"index": shard[0], "count": shard[1]}
    if chords:
        meta["chords"] = chords_meta(counts)
    save_index(tmp, meta, sources)
    publish(tmp, out_dir)
    return BuildResult(
        out_dir, len(files), len(sources), {s: counts[s]["windows"] for s in SPLITS},
        dict(skipped), dict(dropped), seconds, meta,
    )


def chords_meta(counts: dict[str, dict]) -> dict:
    """meta.json's "chords": what the classes are and how many windows' chords came from each source."""
    return {
        "classes": "0 no chord, then root * 4 + (major, minor, augmented, diminished) + 1, roots from C",
        "sources": {source: sum(counts[s]["chord_sources"][source] for s in SPLITS) for source in CHORD_SOURCES},
    }


def _run(jobs: list, workers: int):
    """Results in file order; a process pool when it pays."""
    if workers == 1 or len(jobs) < 8:
        yield from map(_process_file, jobs)
        return
    with get_context("spawn" if os.name == "nt" else "fork").Pool(workers) as pool:
        for begin in range(0, len(jobs), IN_FLIGHT):  # imap buffers every result a slow parent has not taken
            yield from pool.imap(_process_file, jobs[begin : begin + IN_FLIGHT], chunksize=8)
