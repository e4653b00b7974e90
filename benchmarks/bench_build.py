"""Build throughput in MIDI files per second: the folk corpus and synthetic band-like multi-track files.

    python benchmarks/bench_build.py                       # folk (datasets/folk_midi) + 200 synthetic files
    python benchmarks/bench_build.py --limit 2000 --synthetic 100 --json runs/bench_build.json

Each set is built with `seqvae.data.build.build_corpus(..., steps=32, workers=2)` into a temporary
folder, and the rate is extrapolated to a Lakh-sized corpus (176,581 files). The folk MIDI comes from
`seqvae data folk datasets/folk_midi`; the synthetic files are generated here (8 tracks, 64 bars, drums,
chords, bass, lead, tempo changes, a meter change), so they cost what pop/rock MIDI files cost.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

LAKH_FILES = 176_581


@dataclass
class BenchRun:
    name: str
    files: int
    files_used: int
    windows: int
    seconds: float
    files_per_second: float
    lakh_hours: float  # at this rate, a Lakh-sized corpus would take this long


def _subset(midi_dir: Path, limit: int | None, into: Path) -> Path:
    """`limit` files spread evenly over the folder, linked into a scratch folder (the whole folder if None)."""
    from seqvae.data.build import find_midi_files

    files = find_midi_files(midi_dir)
    if not files:
        raise SystemExit(f"no MIDI files under {midi_dir}: run `seqvae data folk {midi_dir}` first")
    if limit is None or limit >= len(files):
        return midi_dir
    picked = [files[i * len(files) // limit] for i in range(limit)]
    for index, path in enumerate(picked):
        link = into / f"{index:06d}_{path.name}"
        link.symlink_to(path.resolve())
    return into


def bench(name: str, midi_dir: Path, out_dir: Path, workers: int, steps: int) -> BenchRun:
    from seqvae.data.build import build_corpus

    started = time.perf_counter()
    result = build_corpus(midi_dir, out_dir, steps=steps, workers=workers, progress=False)
    seconds = time.perf_counter() - started  # wall clock, including pool start and writing the arrays
    rate = result.files / seconds
    return BenchRun(name, result.files, result.files_used, sum(result.windows.values()), round(seconds, 2),
                    round(rate, 1), round(LAKH_FILES / rate / 3600, 2))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folk-dir", type=Path, default=Path("datasets/folk_midi"), help="folk MIDI folder")
    parser.add_argument("--limit", type=int, help="build only N folk files (spread evenly); default all")
    parser.add_argument("--synthetic", type=int, default=200, help="synthetic multi-track files (0 to skip)")
    parser.add_argument("--tracks", type=int, default=8)
    parser.add_argument("--bars", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--steps", type=int, default=32, choices=[32, 256, 24, 192])
    parser.add_argument("--skip-folk", action="store_true", help="only the synthetic set")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from seqvae.data.synthetic_midi import synthetic_midi_files

    runs: list[BenchRun] = []
    with tempfile.TemporaryDirectory(prefix="bench_build_") as scratch:
        scratch_dir = Path(scratch)
        if not args.skip_folk:
            if not args.folk_dir.is_dir():
                raise SystemExit(f"{args.folk_dir} not found: run `seqvae data folk {args.folk_dir}` "
                                 "or pass --skip-folk")
            (scratch_dir / "folk_subset").mkdir()
            folk_dir = _subset(args.folk_dir, args.limit, scratch_dir / "folk_subset")
            runs.append(bench("folk", folk_dir, scratch_dir / "folk_built", args.workers, args.steps))
        if args.synthetic > 0:
            started = time.perf_counter()
            synthetic_midi_files(scratch_dir / "synthetic", args.synthetic, seed=0, tracks=args.tracks, bars=args.bars)
            generated = time.perf_counter() - started
            print(f"generated {args.synthetic} synthetic files ({args.tracks} tracks, {args.bars} bars) "
                  f"in {generated:.1f} s", file=sys.stderr)
            runs.append(bench(f"synthetic {args.tracks}x{args.bars}", scratch_dir / "synthetic",
                              scratch_dir / "synthetic_built", args.workers, args.steps))
    cpu = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores visible"
    print(f"build throughput, {args.steps}-step windows, --workers {args.workers} ({cpu})")
    print(f"{'set':<20} {'files':>7} {'used':>7} {'windows':>9} {'seconds':>8} {'files/s':>8} {'Lakh 176k':>10}")
    for run in runs:
        print(f"{run.name:<20} {run.files:>7} {run.files_used:>7} {run.windows:>9} {run.seconds:>8.1f} "
              f"{run.files_per_second:>8.1f} {run.lakh_hours:>8.2f} h")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"cpu": cpu, "workers": args.workers, "steps": args.steps,
                                         "runs": [asdict(r) for r in runs]}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
