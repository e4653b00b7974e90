"""`seqvae data ...`: corpus conversion, building and statistics."""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING

from seqvae.cli.folk_command import register_folk
from seqvae.cli.stats_command import register_stats

if TYPE_CHECKING:
    from seqvae.data.build import BuildResult


def register(subparsers: argparse._SubParsersAction) -> None:
    data = subparsers.add_parser("data", help="convert, build and inspect melody corpora")
    data_sub = data.add_subparsers(dest="data_command", metavar="DATA_COMMAND")
    data.set_defaults(handler=lambda args: data.print_help() or 2)

    build = data_sub.add_parser(
        "build",
        help="cut a folder of MIDI files into training windows",
        description="Extract bar-aligned monophonic windows from every MIDI file under MIDI_DIR.",
    )
    build.add_argument("midi_dir", metavar="MIDI_DIR")
    build.add_argument("--out", required=True, metavar="BUILT_DIR", help="output folder (new or empty)")
    build.add_argument("--steps", type=int, default=32, choices=[32, 256, 24, 192], help="window length in 16ths")
    build.add_argument("--meters", choices=["duple", "triple"], help="meter family (implied by --steps)")
    build.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="parallel processes (default: cores)")
    build.add_argument("--min-notes", type=int, help="fewest notes a window may hold (default: one per 8 steps)")
    build.add_argument("--max-gap", type=int, help="longest silence in steps (default: one bar drops the window)")
    build.add_argument("--valid-fraction", type=float, default=0.05)
    build.add_argument("--test-fraction", type=float, default=0.05)
    build.add_argument("--force", action="store_true", help="replace an existing built corpus in --out")
    build.add_argument("--chords", action="store_true",
                       help="also write SPLIT_chords.npy: each window's chords, from the tune's chord symbols "
                            "where it has them, else inferred from the melody")
    build.add_argument("--shard", metavar="I/N",
                       help="build only shard I of N (0 <= I < N): the files whose path hashes to I, for "
                            "`data merge` to join; run the N shards on N machines or processes")
    build.add_argument("--reader", choices=["auto", "mido"], default="auto",
                       help="MIDI reader: auto (symusic where it gives mido's result, else mido; the default) "
                            "or mido alone (the same corpus, slower)")
    build.set_defaults(handler=_build)
    merge = data_sub.add_parser(
        "merge",
        help="join built corpora (the shards of one build) into one",
        description="Merge corpora built from different files with the same options, e.g. every "
                    "`data build --shard I/N`: the result is the corpus one build of all the files gives.",
    )
    merge.add_argument("corpora", nargs="+", metavar="BUILT_DIR")
    merge.add_argument("--out", required=True, metavar="OUT_DIR", help="output folder (new or empty)")
    merge.add_argument("--force", action="store_true", help="replace an existing built corpus in --out")
    merge.set_defaults(handler=_merge)
    register_folk(data_sub)
    register_stats(data_sub)


def _build(args: argparse.Namespace) -> int:
    from seqvae.codec.meter import family_for_window
    from seqvae.data.build import build_corpus, parse_shard

    family = family_for_window(args.steps)
    if args.meters and args.meters != family:
        raise ValueError(f"--steps {args.steps} is a {family} window; use --meters {family} or another --steps")
    if args.workers < 1:
        raise ValueError("--workers must be at least 1")
    result = build_corpus(
        args.midi_dir, args.out, steps=args.steps, workers=args.workers, valid_fraction=args.valid_fraction,
        test_fraction=args.test_fraction, min_notes=args.min_notes, max_gap_steps=args.max_gap, force=args.force,
        chords=args.chords, reader=args.reader, shard=parse_shard(args.shard) if args.shard else None,
    )
    _report("built", result)
    return 0


def _merge(args: argparse.Namespace) -> int:
    from seqvae.data.merge import merge_corpora

    _report("merged", merge_corpora(args.corpora, args.out, force=args.force))
    return 0


def _report(done: str, result: BuildResult) -> None:
    print(f"{done} {result.out_dir}: {result.files_used}/{result.files} files used "
          f"in {result.seconds:.1f} s ({result.files_per_second:.0f} files/s)")
    for split, n in result.windows.items():
        print(f"  {split:5s} {n:8d} windows  {result.meta['splits'][split]['meters']}")
    if "chords" in result.meta:
        print("  chords: " + ", ".join(f"{k} {v} windows" for k, v in result.meta["chords"]["sources"].items()))
    if result.skipped:
        print("  skipped files: " + ", ".join(f"{k} {v}" for k, v in sorted(result.skipped.items())))
    if result.dropped_windows:
        print("  dropped windows: " + ", ".join(f"{k} {v}" for k, v in sorted(result.dropped_windows.items())))
