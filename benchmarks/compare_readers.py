"""Does the fast MIDI reader give mido's score for every file of a folder? Counts, and the first differences.

    python benchmarks/compare_readers.py datasets/folk_midi
    python benchmarks/compare_readers.py /data/lmd_full --every 100     # every 100th file

Each file is read with `read_with_mido` and `read_with_symusic`; a score is compared whole (every line's
name, program, drum flag and notes, the meters, tempo, length and chord symbols). "mido only" counts the
files the fast reader leaves to mido (a build reads those with mido, at mido's speed). Exits 1 on any
difference.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from seqvae.codec.midi import MidiReadError, read_with_mido  # noqa: E402
from seqvae.codec.midi_symusic import read_with_symusic, symusic_available  # noqa: E402
from seqvae.data.build import find_midi_files  # noqa: E402


def facts(score) -> tuple:
    lines = [(line.name, line.program, line.is_drum, list(line.notes)) for line in score.lines]
    return lines, score.meters, score.bpm, score.n_steps, score.chords


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("midi_dir", type=Path)
    parser.add_argument("--every", type=int, default=1, help="compare every Nth file only")
    args = parser.parse_args(argv)
    if not symusic_available():
        raise SystemExit("symusic is not installed: pip install symusic")
    files = find_midi_files(args.midi_dir)[:: args.every]
    same = differ = mido_only = unreadable = 0
    for path in files:
        fast = read_with_symusic(path)
        try:
            reference = facts(read_with_mido(path))
        except MidiReadError:
            reference = None
        if fast is None:
            mido_only += 1
            unreadable += reference is None
        elif reference is not None and facts(fast) == reference:
            same += 1
        else:
            differ += 1
            if differ <= 5:
                print(f"differs: {path}", file=sys.stderr)
    print(f"{len(files)} files: {same} the same score with either reader, {differ} different, "
          f"{mido_only} left to mido ({unreadable} of them unreadable for mido too)")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
