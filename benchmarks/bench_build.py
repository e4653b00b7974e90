"""Corpus build throughput with either MIDI reader (mido, and symusic with mido as the fallback), and memory.

    python benchmarks/bench_build.py --folk-dir datasets/folk_midi --band 370 --workers 2
    python benchmarks/bench_build.py --skip-folk --band 370 --scale 370,3700 --json runs/bench_build.json
    python benchmarks/bench_build.py --skip-folk --baseline-src /tmp/old   # also time an older checkout

Each set is built with `build_corpus(..., steps=32, workers=N)` once per reader, each build in a fresh
process, so the peak RSS (resource.getrusage: the build process, and the largest worker) is its own.
Both builds must write the same corpus byte for byte (arrays, sources.json, meta.json but for timing);
the run fails if they do not. Band-like files are generated here (seqvae.data.synthetic_midi: drums,
chords, bass and a lead, tempo changes every 16 bars, 4/4 then 3/4); `--scale` builds copies of them
(each file under several names) to show that memory does not grow with the file count. With
`--baseline-src` a checkout of another commit is timed on the same files (its own reader and build).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAKH_FILES = 176_581
UNTIMED = ("build_seconds", "merged_from", "shard")


@dataclass
class BenchRun:
    set: str
    reader: str
    files: int
    files_used: int
    windows: int
    megabytes: float
    seconds: float
    files_per_second: float
    megabytes_per_second: float
    peak_rss_mb: float  # the build process
    peak_worker_rss_mb: float  # the largest pool worker
    lakh_hours: float  # a Lakh-sized corpus at this rate


def _one(spec: str) -> int:
    """Child mode: one build, its figures as JSON on stdout."""
    job = json.loads(spec)
    from seqvae.data.build import build_corpus

    options = {"reader": job["reader"]} if job["reader"] != "baseline" else {}
    started = time.perf_counter()
    result = build_corpus(job["midi_dir"], job["out"], steps=job["steps"], workers=job["workers"], progress=False,
                          **options)
    seconds = time.perf_counter() - started
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "files": result.files, "used": result.files_used,
                      "windows": sum(result.windows.values()), "rss": own, "worker_rss": workers}))
    return 0


def build(name: str, reader: str, midi_dir: Path, out: Path, args: argparse.Namespace, source: Path) -> BenchRun:
    spec = json.dumps({"reader": reader, "midi_dir": str(midi_dir), "out": str(out), "steps": args.steps,
                       "workers": args.workers})
    env = dict(os.environ, PYTHONPATH=str(source))
    done = subprocess.run([sys.executable, __file__, "--one", spec], env=env, capture_output=True, text=True,
                          check=False)
    if done.returncode:
        raise SystemExit(f"build of {name} with {reader} failed:\n{done.stderr[-2000:]}")
    got = json.loads(done.stdout.strip().splitlines()[-1])
    megabytes = sum(p.stat().st_size for p in midi_dir.rglob("*") if p.is_file()) / 1e6
    rate = got["files"] / got["seconds"]
    return BenchRun(name, reader, got["files"], got["used"], got["windows"], round(megabytes, 1),
                    round(got["seconds"], 2), round(rate, 1), round(megabytes / got["seconds"], 2),
                    round(got["rss"], 1), round(got["worker_rss"], 1), round(LAKH_FILES / rate / 3600, 2))


def same_corpus(a: Path, b: Path) -> bool:
    """Every array and sources.json byte for byte, meta.json but for timing."""
    names = sorted(p.name for p in a.iterdir())
    if names != sorted(p.name for p in b.iterdir()):
        return False
    if any((a / n).read_bytes() != (b / n).read_bytes() for n in names if n != "meta.json"):
        return False
    metas = [json.loads((d / "meta.json").read_text()) for d in (a, b)]
    for meta in metas:
        for key in UNTIMED:
            meta.pop(key, None)
    return metas[0] == metas[1]


def _subset(midi_dir: Path, limit: int | None, into: Path) -> Path:
    """`limit` files spread evenly over the folder, linked into a scratch folder (the whole folder if None)."""
    sys.path.insert(0, str(ROOT))
    from seqvae.data.build import find_midi_files

    files = find_midi_files(midi_dir)
    if not files:
        raise SystemExit(f"no MIDI files under {midi_dir}: run `seqvae data folk {midi_dir}` first")
    if limit is None or limit >= len(files):
        return midi_dir
    into.mkdir(parents=True)
    for index in range(limit):
        path = files[index * len(files) // limit]
        (into / f"{index:06d}_{path.name}").symlink_to(path.resolve())
    return into


def _copies(originals: Path, n: int, into: Path) -> Path:
    """`n` files: the originals again and again, each copy under its own name (a real file, not a link)."""
    files = sorted(originals.glob("*.mid"))
    into.mkdir(parents=True)
    for index in range(n):
        shutil.copyfile(files[index % len(files)], into / f"copy{index:06d}.mid")
    return into


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--folk-dir", type=Path, default=Path("datasets/folk_midi"), help="folk MIDI folder")
    parser.add_argument("--limit", type=int, help="build only N folk files (spread evenly); default all")
    parser.add_argument("--skip-folk", action="store_true", help="only the band-like set")
    parser.add_argument("--band", type=int, default=370, help="band-like multi-track files (0 to skip)")
    parser.add_argument("--tracks", type=int, default=4, help="tracks per band-like file, drums first")
    parser.add_argument("--bars", type=int, default=100)
    parser.add_argument("--scale", help="comma-separated file counts to build from copies of the band-like set "
                                        "with the fast reader, for peak RSS against file count (e.g. 370,3700)")
    parser.add_argument("--baseline-src", type=Path, help="a checkout of another commit to time on the same files")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--steps", type=int, default=32, choices=[32, 256, 24, 192])
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    if args.one:
        return _one(args.one)
    sys.path.insert(0, str(ROOT))
    from seqvae.codec.midi_symusic import symusic_available
    from seqvae.data.synthetic_midi import synthetic_midi_files

    if not symusic_available():
        raise SystemExit("symusic is not installed: pip install symusic (the fast reader needs it)")
    runs: list[BenchRun] = []
    identical: dict[str, bool] = {}
    with tempfile.TemporaryDirectory(prefix="bench_build_") as scratch:
        scratch_dir = Path(scratch)
        sets: list[tuple[str, Path]] = []
        if not args.skip_folk:
            if not args.folk_dir.is_dir():
                raise SystemExit(f"{args.folk_dir} not found: run `seqvae data folk {args.folk_dir}` "
                                 "or pass --skip-folk")
            sets.append(("folk", _subset(args.folk_dir, args.limit, scratch_dir / "folk_subset")))
        if args.band > 0:
            started = time.perf_counter()
            synthetic_midi_files(scratch_dir / "band", args.band, seed=0, tracks=args.tracks, bars=args.bars)
            print(f"generated {args.band} band-like files ({args.tracks} tracks, {args.bars} bars) in "
                  f"{time.perf_counter() - started:.0f} s", file=sys.stderr)
            sets.append((f"band {args.tracks}x{args.bars}", scratch_dir / "band"))
        for index, (name, midi_dir) in enumerate(sets):
            outs = {}
            readers = ["mido", "auto"] + (["baseline"] if args.baseline_src else [])
            for reader in readers:
                outs[reader] = scratch_dir / f"built{index}_{reader}"
                source = args.baseline_src if reader == "baseline" else ROOT
                runs.append(build(name, reader, midi_dir, outs[reader], args, source))
                print(f"  {name}: {reader} {runs[-1].seconds} s", file=sys.stderr)
            identical[name] = same_corpus(outs["mido"], outs["auto"])
            if "baseline" in outs:
                identical[f"{name} (baseline)"] = same_corpus(outs["baseline"], outs["auto"])
            for out in outs.values():
                shutil.rmtree(out)
        scale_runs: list[BenchRun] = []
        if args.scale and args.band > 0:
            for n in (int(x) for x in args.scale.split(",")):
                copies = _copies(scratch_dir / "band", n, scratch_dir / f"copies{n}")
                scale_runs.append(build(f"band copies x{n}", "auto", copies, scratch_dir / f"scaled{n}", args, ROOT))
                shutil.rmtree(copies)
                shutil.rmtree(scratch_dir / f"scaled{n}")
    cpu = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores visible"
    print(f"build throughput, {args.steps}-step windows, --workers {args.workers} ({cpu})")
    print(f"{'set':<18} {'reader':<8} {'files':>6} {'MB':>6} {'windows':>8} {'s':>7} {'files/s':>8} {'MB/s':>6} "
          f"{'RSS MB':>7} {'worker':>7} {'Lakh':>7}")
    for run in runs + scale_runs:
        print(f"{run.set:<18} {run.reader:<8} {run.files:>6} {run.megabytes:>6.1f} {run.windows:>8} "
              f"{run.seconds:>7.2f} {run.files_per_second:>8.1f} {run.megabytes_per_second:>6.2f} "
              f"{run.peak_rss_mb:>7.1f} {run.peak_worker_rss_mb:>7.1f} {run.lakh_hours:>6.2f}h")
    for name in dict.fromkeys(r.set for r in runs):
        rate = {r.reader: r.files_per_second for r in runs if r.set == name}
        line = f"{name}: symusic/mido {rate['auto'] / rate['mido']:.1f}x"
        if "baseline" in rate:
            line += f", symusic/baseline {rate['auto'] / rate['baseline']:.1f}x"
        line += f"; same corpus byte for byte: {'yes' if identical[name] else 'NO'}"
        if f"{name} (baseline)" in identical:
            line += f" (baseline's too: {'yes' if identical[f'{name} (baseline)'] else 'NO'})"
        print(line)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        figures = {"cpu": cpu, "workers": args.workers, "steps": args.steps, "identical": identical,
                   "runs": [asdict(r) for r in runs + scale_runs]}
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0 if all(identical.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
