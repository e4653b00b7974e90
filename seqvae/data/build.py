"""A folder of MIDI files -> a built corpus: flat int8 window arrays per split, plus meta.json.

Work is parallel over files and every file's fate is counted: one bad file never stops a build.
Splits are decided per tune (by a transposition-invariant fingerprint), never per window, so no
tune leaks from train into valid or test, and copies of a tune in several files share a split.
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
from seqvae.codec.midi import MidiReadError, is_midi_path, read_midi
from seqvae.data.corpus import FORMAT_VERSION, META_NAME, SPLITS, save_index, save_split
from seqvae.data.extract import WindowRules, extract_windows, unique_rows
from seqvae.data.window_chords import CHORD_SOURCES


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


def split_for(key: str, valid_fraction: float, test_fraction: float) -> str:
    """Deterministic split of a tune from its fingerprint alone (not file order or worker count)."""
    bucket = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big") % 10_000 / 10_000
    if bucket < test_fraction:
        return "test"
    if bucket < test_fraction + valid_fraction:
        return "valid"
    return "train"


def _process_file(job: tuple[str, WindowRules]):
    path, rules = job
    try:
        score = read_midi(path)
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
) -> BuildResult:
    """Build a corpus of `steps`-step windows from every MIDI file under `midi_dir`.

    With `chords`, each split also gets SPLIT_chords.npy: every window's chord per step, from the file's chord
    symbols where it has them, else inferred from the melody; meta.json counts the windows of each source.
    """
    midi_dir, out_dir = Path(midi_dir), Path(out_dir)
    if not 0 <= valid_fraction < 1 or not 0 <= test_fraction < 1 or valid_fraction + test_fraction >= 1:
        raise ValueError("valid and test fractions must each be in [0, 1) and leave room for train")
    _check_out_dir(out_dir, force)
    rules = WindowRules(steps=steps, min_notes=min_notes, max_gap_steps=max_gap_steps, codec=codec or EventCodec(),
                        chords=chords)
    files = find_midi_files(midi_dir)
    if not files:
        raise FileNotFoundError(f"no MIDI files (.mid, .midi) found under {midi_dir}")
    workers = max(1, workers or os.cpu_count() or 1)
    started = time.perf_counter()
    skipped: Counter = Counter()
    dropped: Counter = Counter()
    per_split: dict[str, list] = {s: [] for s in SPLITS}
    split_files: Counter = Counter()
    sources: list[str] = []
    jobs = [(str(f), rules) for f in files]
    with tqdm(total=len(files), desc="build", unit="file", disable=not progress, mininterval=0.5) as bar:
        for index, (reason, file_dropped, extraction) in enumerate(_run(jobs, workers)):
            bar.update(1)
            dropped.update(file_dropped)
            if reason is not None:
                skipped[reason] += 1
                continue
            split = split_for(extraction.tune_key, valid_fraction, test_fraction)
            per_split[split].append((len(sources), extraction))
            split_files[split] += 1
            sources.append(files[index].relative_to(midi_dir).as_posix())
    tmp = out_dir.with_name(out_dir.name + ".building")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    counts: dict[str, dict] = {}
    for split in SPLITS:
        counts[split] = _write_split(tmp, split, per_split[split], rules.steps, dropped, chords)
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
    if chords:
        meta["chords"] = {
            "classes": "0 no chord, then root * 4 + (major, minor, augmented, diminished) + 1, roots from C",
            "sources": {source: sum(counts[s]["chord_sources"][source] for s in SPLITS) for source in CHORD_SOURCES},
        }
    save_index(tmp, meta, sources)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    tmp.rename(out_dir)
    return BuildResult(
        out_dir, len(files), len(sources), {s: counts[s]["windows"] for s in SPLITS},
        dict(skipped), dict(dropped), seconds, meta,
    )


def _run(jobs: list, workers: int):
    """Results in file order; a process pool when it pays."""
    if workers == 1 or len(jobs) < 8:
        yield from map(_process_file, jobs)
        return
    with get_context("spawn" if os.name == "nt" else "fork").Pool(workers) as pool:
        yield from pool.imap(_process_file, jobs, chunksize=8)


def _write_split(tmp: Path, split: str, items: list, steps: int, dropped: Counter, chords: bool) -> dict:
    windows = np.zeros((0, steps), dtype=np.int8)
    meters = np.zeros((0, 2), dtype=np.int8)
    sources = np.zeros(0, dtype=np.int32)
    chord_rows = np.zeros((0, steps), dtype=np.uint8)
    given = np.zeros(0, dtype=bool)
    if items:
        windows = np.concatenate([e.windows for _, e in items])
        meters = np.concatenate([e.meters for _, e in items])
        sources = np.concatenate([np.full(len(e.windows), i, dtype=np.int32) for i, e in items])
        if chords:
            chord_rows = np.concatenate([e.chords for _, e in items])
            given = np.concatenate([e.chords_given for _, e in items])
            windows, meters, sources, chord_rows, given, n_dupes = unique_rows(
                windows, meters, sources, chord_rows, given)
        else:
            windows, meters, sources, n_dupes = unique_rows(windows, meters, sources)
        dropped["duplicate"] += n_dupes
    save_split(tmp, split, windows, meters, sources, chord_rows if chords else None)
    meter_counts = Counter(f"{n}/{d}" for n, d in meters.tolist())
    counts = {"windows": int(len(windows)), "meters": dict(sorted(meter_counts.items()))}
    if chords:
        counts["chord_sources"] = {"abc": int(given.sum()), "inferred": int(len(given) - given.sum())}
    return counts


def _check_out_dir(out_dir: Path, force: bool) -> None:
    if not out_dir.exists():
        return
    if not out_dir.is_dir():
        raise NotADirectoryError(f"{out_dir} exists and is not a folder; choose another --out")
    if not any(out_dir.iterdir()):
        return
    if not (out_dir / META_NAME).exists():
        raise FileExistsError(f"{out_dir} holds files that are not a built corpus; choose an empty or new --out")
    if not force:
        raise FileExistsError(f"{out_dir} already holds a built corpus; pass --force to rebuild it")
