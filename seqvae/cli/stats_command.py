"""`seqvae data stats BUILT_DIR [--plot FILE.png]`: what a built corpus holds."""

from __future__ import annotations

import argparse


def register_stats(data_subparsers: argparse._SubParsersAction) -> None:
    """Add `stats` under `seqvae data`; the data command module calls this."""
    stats = data_subparsers.add_parser(
        "stats",
        help="tables (and histograms) of a built corpus",
        description="Print windows per split and meter, notes per window, pitch range, distinct windows and "
        "skipped files of a corpus written by `seqvae data build`; --plot adds histograms as a PNG.",
    )
    stats.add_argument("built_dir", metavar="BUILT_DIR")
    stats.add_argument("--plot", metavar="FILE.png", help="also write pitch / notes-per-window / meter histograms")
    stats.set_defaults(handler=_stats)


def _stats(args: argparse.Namespace) -> int:
    from seqvae.data.stats import corpus_stats, format_stats, plot_stats

    if args.plot and not args.plot.lower().endswith(".png"):
        raise ValueError(f"--plot {args.plot}: give a file name ending in .png")
    stats = corpus_stats(args.built_dir)
    print(format_stats(stats))
    if args.plot:
        print(f"\nhistograms: {plot_stats(stats, args.plot)}")
    return 0
