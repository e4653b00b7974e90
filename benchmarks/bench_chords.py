"""Does a chord model play over the chords? The chord-tone ratio of its samples against the real melodies'.

    python benchmarks/bench_chords.py --data datasets/built/folk32c                 # chords vs default, test split
    python benchmarks/bench_chords.py --data DIR --model runs/chords --windows 2000 --json runs/chord_fit.json

The chord-tone ratio (seqvae.evaluate.chord_fit): of the notes starting on a beat under a chord, the share whose
pitch class is in that step's triad, pooled over notes; +- is one standard error over windows. Rows, all on the
same --windows windows of --split (a corpus built with `seqvae data build --chords`):
- real: the split's melodies under their own chords (written or inferred);
- model samples: latents from the model's prior under each window's chords (with a chord bank, p(z | chords):
  seqvae.models.chord_bank; --no-bank for the unconditional prior) decoded at --temperature under those chords;
- the unconditioned --baseline on the same latents' draws and the same chords (it hears no chords);
- moved by a fifth: the same windows' chords moved up 7 semitones, the model's samples under them, measured
  against the moved chords (the ratio should hold); the real melodies against the moved chords show how far a
  melody that ignores the chords falls.
Then fixed progressions ("Am F", "C G"): --fixed samples under each, as the issue measured the default. Last,
how near each set lies to the training split (seqvae.evaluate.copying, 20,000 training windows as they are, so a
copy moved to another key is not caught): a chord bank draws near training windows, and this says how near.
Targets: the model within 0.05 of real; moved within 0.05 of real.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from seqvae.codec.chords import parse_progression, transpose_chords  # noqa: E402
from seqvae.codec.meter import Meter  # noqa: E402
from seqvae.data.corpus import load_corpus  # noqa: E402
from seqvae.engine import Engine  # noqa: E402
from seqvae.evaluate.chord_fit import ChordFit, beat_steps, chord_fit  # noqa: E402
from seqvae.evaluate.copying import copying_report  # noqa: E402

FIFTH = 7


def samples(engine: Engine, n: int, temperature: float, seed: int, chords: np.ndarray | None) -> np.ndarray:
    z = engine.draw_prior(n, np.random.default_rng(seed), chords=chords)
    return engine.decode_events(z, temperature, seed, chords=chords)


def row(name: str, fit: ChordFit, real: float | None) -> dict:
    out = {"row": name, "ratio": fit.ratio, "se": fit.standard_error(), "notes": int(fit.counted.sum())}
    if real is not None:
        out["minus_real"] = fit.ratio - real
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="built corpus with chords (seqvae data build --chords)")
    p.add_argument("--model", default="chords", help="chord model (default: the shipped chords)")
    p.add_argument("--baseline", default="default", help="unconditioned model to compare (default: default)")
    p.add_argument("--split", default="test")
    p.add_argument("--windows", type=int, default=2000)
    p.add_argument("--temperature", type=float, default=0.5)
    p.add_argument("--fixed", type=int, default=32, help="samples per fixed progression")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-bank", action="store_true", help="sample the chord model from its unconditional prior")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)

    corpus = load_corpus(args.data)
    model, baseline = Engine.load(args.model), Engine.load(args.baseline)
    if args.no_bank:
        model.chord_bank = None
    split = corpus.split(args.split)
    index = np.sort(np.random.default_rng(args.seed).choice(len(split), min(args.windows, len(split)),
                                                            replace=False))
    events = np.asarray(split.events[index], dtype=np.int64)
    chords = corpus.chords_of(args.split, index, model.model_name)
    meters = np.asarray(split.meters[index])
    beats = np.array([beat_steps(Meter(int(a), int(b))) for a, b in meters])
    moved = transpose_chords(chords, FIFTH)
    n, t, s = len(events), args.temperature, args.seed
    min_pitch = model.codec.min_pitch

    real = chord_fit(events, chords, beats, min_pitch)
    rows = [row("real melodies, own chords", real, None)]
    own = samples(model, n, t, s, chords)
    plain = samples(baseline, n, t, s, None)
    rows.append(row(f"{args.model} samples, own chords", chord_fit(own, chords, beats, min_pitch), real.ratio))
    rows.append(row(f"{args.baseline} samples (no chords heard)", chord_fit(plain, chords, beats, min_pitch),
                    real.ratio))
    rows.append(row(f"{args.model} samples, chords moved a fifth", chord_fit(samples(model, n, t, s, moved), moved,
                                                                              beats, min_pitch), real.ratio))
    rows.append(row("real melodies against moved chords", chord_fit(events, moved, beats, min_pitch), real.ratio))
    for progression in ("Am F", "C G"):
        for engine, name in ((model, args.model), (baseline, args.baseline)):
            view = engine.with_chords(progression) if engine.chord_classes else engine
            fixed = np.tile(parse_progression(progression, Meter(4, 4), model.steps), (args.fixed, 1))
            tokens = samples(view, args.fixed, t, s, None)
            rows.append(row(f"{name}, {args.fixed} samples over {progression!r}", chord_fit(tokens, fixed, 4,
                                                                                           min_pitch), None))

    print(f"chord-tone ratio on {n} {args.split} windows of {corpus.path}, T={t} (on-beat notes under a chord)")
    print(f"{'':52} {'ratio':>7} {'+-':>6} {'notes':>7} {'- real':>7}")
    for r in rows:
        delta = f"{r['minus_real']:+7.3f}" if "minus_real" in r else ""
        print(f"{r['row']:52} {r['ratio']:7.3f} {r['se']:6.3f} {r['notes']:7d} {delta:>7}")
    train = corpus.split("train")
    reference = np.asarray(train.events[np.random.default_rng(args.seed).choice(len(train), min(20000, len(train)),
                                                                              replace=False)], dtype=np.int64)
    copying = {name: vars(copying_report(tokens, reference)) for name, tokens in
               (("real", events), (args.model, own), (args.baseline, plain))}
    print("nearest of 20,000 training windows (share of steps that differ; exact copies):")
    for name, report in copying.items():
        print(f"  {name:50} {report['mean_distance']:.3f}  {report['exact_copies']:.1%}")
    if args.json:
        Path(args.json).write_text(json.dumps({"windows": n, "split": args.split, "temperature": t, "rows": rows,
                                               "copying": copying}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
