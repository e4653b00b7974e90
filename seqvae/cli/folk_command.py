"""`seqvae data folk OUT_DIR`: the folk tunes inside music21 as one MIDI file per tune."""

from __future__ import annotations

import argparse
import os

from seqvae.data.abc_tunes import COLLECTIONS

COLLECTION_NAMES = tuple(COLLECTIONS)


def register_folk(data_subparsers: argparse._SubParsersAction) -> None:
    """Add `folk` under `seqvae data`; the data command module calls this."""
    folk = data_subparsers.add_parser(
        "folk",
        help="convert the folk tunes bundled with music21 into MIDI files",
        description="Convert the ABC folk collections inside the installed music21 package (Essen, O'Neill's 1850, "
        "Ryan's Mammoth, Aird's Airs, misc; about 12,950 tunes) into one bar-aligned MIDI file per tune, "
        "plus OUT_DIR/folk_index.json. Nothing is downloaded.",
    )
    folk.add_argument("out_dir", metavar="OUT_DIR", help="output folder (new or empty, or a previous run with --force)")
    folk.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="parallel processes (default: cores)")
    folk.add_argument("--limit", type=int, help="convert only N tunes, spread evenly over the collections")
    folk.add_argument(
        "--collections", default=",".join(COLLECTION_NAMES),
        help=f"comma-separated subset of {','.join(COLLECTION_NAMES)} (default: all)",
    )
    folk.add_argument("--force", action="store_true", help="replace a previous conversion in OUT_DIR")
    folk.set_defaults(handler=_folk)


def _folk(args: argparse.Namespace) -> int:
    from seqvae.data.folk import convert_folk

    if args.workers < 1:
        raise ValueError("--workers must be at least 1")
    collections = [c.strip() for c in args.collections.split(",") if c.strip()]
    if not collections:
        raise ValueError(f"--collections is empty: send a comma-separated subset of {','.join(COLLECTION_NAMES)}")
    result = convert_folk(args.out_dir, collections, workers=args.workers, limit=args.limit, force=args.force)
    print(f"converted {result.converted}/{result.tunes} tunes into {result.out_dir} in {result.seconds:.1f} s "
          f"({result.tunes_per_second:.1f} tunes/s)")
    if result.skipped:
        print("  skipped: " + ", ".join(f"{reason} {n}" for reason, n in sorted(result.skipped.items())))
    print(f"  with chord symbols: {result.with_chord_symbols} tunes (the others get inferred chords in "
          "`data build --chords`)")
    print(f"  index: {result.index_path}")
    print(f"next: seqvae data build {result.out_dir} --out BUILT_DIR --steps 32")
    return 0
