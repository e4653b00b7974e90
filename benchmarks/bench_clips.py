"""Whole clips: does an 8-bar round trip keep the model's greedy accuracy per window, and what does it cost?

    python benchmarks/bench_clips.py                         # the default model, 32 held-out folk clips of 8 bars
    python benchmarks/bench_clips.py --clips 8 --tunes 120   # a quick look
    python benchmarks/bench_clips.py --model 16bar --bars 16 --json runs/clips16.json
    python benchmarks/bench_clips.py --midi datasets/folk_midi   # an already converted folk folder

Clips: folk tunes from music21's bundled corpus (converted offline, `--tunes` spread evenly over the
collections, as `seqvae data folk --limit` picks them), only those the corpus builder puts in the valid
or test split (held out from training, by the same tune fingerprint), only lines the model's meter
reads (4/4, 2/4, 2/2 ... for the duple models), each cut to its first `--bars` bars: a deterministic
sample.

Accuracy is token accuracy of a greedy reconstruction against what the model was given:
- clip: `clips.reconstruct` of the whole clip (one encode and one decode call), against the clip;
- windows alone: each window as `--bar N` cuts it (a note held in from the window before is dropped)
  reconstructed alone, against that window: the model's own per-window greedy accuracy;
- windows as the clip hears them: the clip's windows (a held note struck again) reconstructed alone.
Ties: of the notes held across a window boundary in the clips, how many the clip's reconstruction
keeps held. Times: the clip round trip against the same windows reconstructed one call at a time.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from seqvae.codec import NO_EVENT, Melody, Note, read_midi  # noqa: E402
from seqvae.data.build import find_midi_files, split_for  # noqa: E402
from seqvae.data.extract import WindowRules, extract_windows  # noqa: E402
from seqvae.data.folk import convert_folk  # noqa: E402
from seqvae.engine import Engine, clips  # noqa: E402

HELD_OUT = ("valid", "test")
FRACTIONS = (0.05, 0.05)  # the corpus builder's default valid and test fractions, as the shipped models used


@dataclass
class ClipsResult:
    model: str
    clips: int
    bars: int
    windows: int  # over all clips (8 bars of 4/4 are 4 windows of the default model, 8 bars of 2/4 are 2)
    clip_accuracy: float
    windows_alone_accuracy: float
    clip_windows_alone_accuracy: float
    ties: int
    ties_kept: int
    ties_window_wise: int  # held notes both windows' own decodes play across the seam
    clip_round_trip_ms: float
    windows_one_by_one_ms: float


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="default", help="shipped model name or checkpoint directory (default: default)")
    p.add_argument("--clips", type=int, default=32, help="held-out clips to measure (default: 32)")
    p.add_argument("--bars", type=int, default=8, help="bars per clip (default: 8)")
    p.add_argument("--tunes", type=int, default=2000,
                   help="folk tunes to convert, spread over the collections (default: 2000; ~10%% are held out)")
    p.add_argument("--midi", default=None, help="a folder of converted folk MIDI files instead of converting")
    p.add_argument("--threads", type=int, default=2, help="CPU threads for torch (default: 2)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    p.add_argument("--repeats", type=int, default=3, help="timed round trips per clip (default: 3)")
    p.add_argument("--json", default=None, help="also write the results to this JSON file")
    return p.parse_args(argv)


def held_out_clips(engine: Engine, folder: Path, count: int, bars: int) -> list[Melody]:
    """The first `count` held-out lines (file order) the model's meter reads, each cut to `bars` bars."""
    rules = WindowRules(steps=engine.steps, codec=engine.codec)
    found: list[Melody] = []
    for path in find_midi_files(folder):
        if len(found) >= count:
            break
        try:
            score = read_midi(path)
            if split_for(extract_windows(score, rules).tune_key, *FRACTIONS) not in HELD_OUT:
                continue
            clip = engine.clip_from_midi(path)
        except ValueError:  # another meter family, a meter change, no melodic line
            continue
        length = bars * clip.meter.steps_per_bar
        if clip.n_steps >= length:
            found.append(Melody(clip.events[:length], meter=clip.meter, bpm=clip.bpm, codec=clip.codec))
    return found


def _cut_as_bar(clip: Melody, steps: int) -> np.ndarray:
    """The clip's windows as `--bar N` reads them: a note sounding into a window from before is dropped."""
    rows = []
    for start in range(0, clip.n_steps, steps):
        notes = [n for n in clip.notes() if start <= n.start < start + steps]
        shifted = [Note(n.pitch, n.start - start, n.end - start, n.velocity) for n in notes]
        rows.append(clip.codec.notes_to_events(shifted, steps))
    return np.stack(rows)


def _reconstruct_rows(engine: Engine, rows: np.ndarray) -> np.ndarray:
    return engine.decode_events(engine.encode_events(rows)[0])


def _median_ms(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def bench_clips(engine: Engine, found: list[Melody], repeats: int) -> ClipsResult:
    steps = engine.steps
    clip_right = alone_right = heard_right = total = 0
    ties = kept = window_wise = 0
    clip_ms, single_ms = [], []
    for clip in found:
        result = clips.reconstruct(engine, clip)
        clip_right += int(np.sum(result.events == clip.events))
        total += clip.n_steps
        cut = _cut_as_bar(clip, steps)
        alone_right += int(np.sum(_reconstruct_rows(engine, cut) == cut))
        heard = clips.split_windows(clip, steps)
        decoded = np.concatenate([_reconstruct_rows(engine, row[None]) for row in heard])
        heard_right += int(np.sum(decoded == heard))
        for k, held in enumerate(clips.layout(clip, steps).held, start=1):
            if held is None:
                continue
            ties += 1
            seam = k * steps
            kept += int(result.events[seam] == NO_EVENT and _sounding(engine, result.events[:seam]) == held)
            window_wise += int(decoded[k, 0] == held and _sounding(engine, decoded[k - 1]) == held)
        clip_ms.append(_median_ms(lambda c=clip: clips.reconstruct(engine, c), repeats))  # per clip
        single_ms.append(_median_ms(lambda h=heard: [_reconstruct_rows(engine, row[None]) for row in h], repeats))
    bars = found[0].n_steps // found[0].meter.steps_per_bar
    windows = sum(clips.window_count(clip.n_steps, steps) for clip in found)
    return ClipsResult(engine.model_name, len(found), bars, windows, clip_right / total, alone_right / total,
                       heard_right / total, ties, kept, window_wise, statistics.median(clip_ms),
                       statistics.median(single_ms))


def _sounding(engine: Engine, events: np.ndarray) -> int | None:
    """The event class of the note still sounding at the end of `events`, or None."""
    notes = engine.codec.events_to_notes(events)
    return engine.codec.pitch_to_class(notes[-1].pitch) if notes and notes[-1].end == len(events) else None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    engine = Engine.load(args.model, device=args.device)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.midi) if args.midi else Path(tmp) / "folk"
        if not args.midi:
            started = time.perf_counter()
            converted = convert_folk(folder, limit=args.tunes, workers=1, progress=False)
            print(f"converted {converted.converted} of {converted.tunes} folk tunes in "
                  f"{time.perf_counter() - started:.0f} s")
        found = held_out_clips(engine, folder, args.clips, args.bars)
    if not found:
        print(f"no held-out clip of {args.bars} bars in {engine.meter} found: convert more tunes (--tunes)")
        return 1
    result = bench_clips(engine, found, args.repeats)
    print(f"{engine.model_name}: {result.clips} held-out folk clips of {result.bars} bars "
          f"({result.windows} windows in all), greedy")
    print(f"  token accuracy  clip round trip {result.clip_accuracy:.4f}   windows alone (as --bar cuts them) "
          f"{result.windows_alone_accuracy:.4f}   the clip's windows alone {result.clip_windows_alone_accuracy:.4f}")
    print(f"  ratio clip / windows alone {result.clip_accuracy / result.windows_alone_accuracy:.4f}")
    print(f"  notes held over a window boundary: {result.ties}; kept held by the clip {result.ties_kept} "
          f"(both windows' own decodes play them: {result.ties_window_wise})")
    speedup = result.windows_one_by_one_ms / result.clip_round_trip_ms
    print(f"  time  clip round trip {result.clip_round_trip_ms:.1f} ms   its windows one call each "
          f"{result.windows_one_by_one_ms:.1f} ms   ratio {speedup:.2f}x")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(asdict(result), indent=2))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
