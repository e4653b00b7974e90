"""Key and range masks on the shipped models: are generated notes inside, what do the masks cost, do they hurt?

    python benchmarks/bench_constraints.py                                  # every shipped model, D dorian 57-76
    python benchmarks/bench_constraints.py --models default --n 16 --json runs/constraints.json
    python benchmarks/bench_constraints.py --key "Bb minor" --range 55-79 --data built/folk32 built/folk24

Three figures per model, all from one sitting:
- inside: the share of note-ons inside --key and --range among everything sample, morph, similar, shift and
  infill generate on a constrained view (Engine.constrained), sampled at T=1 (the most adventurous setting
  the CLI's defaults use is 0.5). The masks act inside decoding, so this must be 100 %; the same share of the
  unconstrained model's results is given for scale.
- time: greedy and sampled decodes of --n x 8 prior latents, masked and unmasked, interleaved --repeats times;
  the median of each and their ratio (the target: within 5 %).
- reconstruction: greedy reconstruction accuracy (share of steps equal to the input) of in-key melodies, decoded
  unconstrained and under their own key (the major or minor key holding every note of the melody; melodies
  no such key holds are skipped). A good mask leaves it unchanged: the model already plays in their key. The
  melodies are held-out windows of --data (a built corpus with the model's window; its valid and test splits)
  or, without it, the model's own samples at T=0.5 from seed 0 (a proxy: say which in a report).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from seqvae.codec import Melody  # noqa: E402
from seqvae.codec.events import FIRST_NOTE_ON  # noqa: E402
from seqvae.codec.scales import Key, PitchRange  # noqa: E402
from seqvae.engine import Engine  # noqa: E402

SHIPPED = ("default", "triple", "16bar", "16bar_triple")
HELD_OUT = ("valid", "test")
OWN_KEYS = [Key(root, mode) for mode in ("major", "minor") for root in range(12)]


def note_ons(melodies: list[Melody]) -> list[int]:
    return [m.codec.class_to_pitch(e) for m in melodies for e in m.events if e >= FIRST_NOTE_ON]


def inside_share(engine: Engine, key: Key, pitch_range: PitchRange, n: int) -> dict[str, float | int]:
    """Per operation: how many note-ons the constrained view generated and the share inside key and range; the
    same share of the unconstrained engine's results, for scale."""
    out = generated_inside(engine.constrained(key, pitch_range), engine, key, pitch_range, n)
    free = generated_inside(engine, engine, key, pitch_range, n)
    out.update({f"unconstrained_{name}": value for name, value in free.items() if name.endswith("_inside")})
    return out


def generated_inside(view: Engine, engine: Engine, key: Key, pitch_range: PitchRange, n: int
                     ) -> dict[str, float | int]:
    seeds = engine.sample(4, temperature=0.5, seed=1)  # inputs, from the unconstrained model
    shift = engine.attributes[0] if engine.attributes else None
    per_bar = seeds[0].meter.steps_per_bar
    gap = max(1, engine.steps // per_bar // 4)  # infill regenerates bars 1..gap: 1 of 2 bars, 4 of 16
    results = {
        "sample": view.sample(n, temperature=1.0, seed=2),
        "morph": [view.morph(seeds[0], seeds[1], t, temperature=1.0, seed=3) for t in np.linspace(0, 1, 5)],
        "similar": view.similar(seeds[2], n, amount=0.5, seed=4, temperature=1.0),
        "shift": [] if shift is None else [view.shift(seeds[3], shift, 1.0, temperature=1.0, seed=5)],
        "infill": [view.infill(melody, 1, gap, seed=6 + i, temperature=1.0) for i, melody in enumerate(seeds)],
    }
    out: dict[str, float | int] = {}
    for name, melodies in results.items():
        if name == "infill":  # only the regenerated bars are the model's; the kept ones are the input's
            melodies = [Melody(m.events[:gap * per_bar], meter=m.meter, codec=m.codec) for m in melodies]
        pitches = note_ons(melodies)
        good = sum(pitch_range.low <= p <= pitch_range.high and key.contains(p) for p in pitches)
        out[f"{name}_notes"] = len(pitches)
        out[f"{name}_inside"] = good / len(pitches) if pitches else float("nan")
    return out


def decode_times(engine: Engine, key: Key, pitch_range: PitchRange, rows: int, repeats: int) -> dict[str, float]:
    """Median seconds per decode of `rows` latents, masked and unmasked, taken in turns in one sitting."""
    view = engine.constrained(key, pitch_range)
    z = engine.draw_prior(rows, np.random.default_rng(0))
    out: dict[str, float] = {}
    for temperature in (0.0, 1.0):
        times: dict[str, list[float]] = {"plain": [], "masked": []}
        for _ in range(repeats + 1):  # the first round warms caches and is dropped
            for label, eng in (("plain", engine), ("masked", view)):
                start = time.perf_counter()
                eng.decode_events(z, temperature, seed=0)
                times[label].append(time.perf_counter() - start)
        tag = "greedy" if temperature == 0 else "sampled"
        plain, masked = statistics.median(times["plain"][1:]), statistics.median(times["masked"][1:])
        out[f"{tag}_plain_s"], out[f"{tag}_masked_s"], out[f"{tag}_ratio"] = plain, masked, masked / plain
    return out


def own_key(events: np.ndarray, engine: Engine) -> Key | None:
    pitches = {engine.codec.class_to_pitch(e) % 12 for e in events if e >= FIRST_NOTE_ON}
    if len(pitches) < 3:
        return None
    return next((key for key in OWN_KEYS if pitches <= key.pitch_classes), None)


def test_melodies(engine: Engine, data: list[Path], n: int) -> tuple[np.ndarray, str]:
    """Held-out windows of the first corpus in `data` with the model's window (up to 16 n), else its samples."""
    from seqvae.data.corpus import load_corpus

    for folder in data:
        corpus = load_corpus(folder)
        if corpus.steps == engine.steps:
            rows = np.concatenate([np.asarray(corpus.split(s).events, dtype=np.int64) for s in HELD_OUT])
            picks = np.unique(np.linspace(0, len(rows) - 1, min(16 * n, len(rows))).round().astype(int))
            return rows[picks], f"held-out windows of {folder}"
    melodies = engine.sample(4 * n, temperature=0.5, seed=0)
    return np.stack([m.events for m in melodies]), "the model's own samples (T=0.5, seed 0)"


def reconstruction(engine: Engine, data: list[Path], n: int) -> dict[str, float | int | str]:
    """Greedy reconstruction accuracy of in-key melodies: unconstrained against under their own key."""
    events, source = test_melodies(engine, data, n)
    keyed = [(row, key) for row in events if (key := own_key(row, engine)) is not None]
    if not keyed:
        return {"melodies": 0, "source": source}
    rows = np.stack([row for row, _ in keyed])
    mu, _ = engine.encode_events(rows)
    plain = engine.decode_events(mu)
    masked = np.stack([engine.constrained(key).decode_events(z[None])[0] for (_, key), z in zip(keyed, mu,
                                                                                                   strict=True)])
    return {"melodies": len(rows), "source": source, "plain_accuracy": float((plain == rows).mean()),
            "keyed_accuracy": float((masked == rows).mean()),
            "changed_rows": int((plain != masked).any(axis=1).sum())}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default=",".join(SHIPPED), help=f"comma-separated (default: {','.join(SHIPPED)})")
    p.add_argument("--key", default="D dorian", help="key the views decode in (default: 'D dorian')")
    p.add_argument("--range", dest="pitch_range", default="57-76", help="range (default: 57-76)")
    p.add_argument("--n", type=int, default=8, help="melodies per operation; decode timing uses 8x this (default 8)")
    p.add_argument("--repeats", type=int, default=5, help="timed rounds of each decode (default: 5)")
    p.add_argument("--data", type=Path, nargs="*", default=[],
                   help="built corpora for the reconstruction melodies: each model uses the one with its window")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice)")
    p.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = p.parse_args(argv)
    key, pitch_range = Key.parse(args.key), PitchRange.parse(args.pitch_range)
    if key is None or pitch_range is None:
        raise SystemExit("send a --key and a --range to measure (not off)")
    report = {"key": str(key), "range": str(pitch_range), "n": args.n, "models": {}}
    for name in args.models.split(","):
        engine = Engine.load(name, device="cpu", threads=args.threads)
        started = time.perf_counter()
        result = {**inside_share(engine, key, pitch_range, args.n),
                  **decode_times(engine, key, pitch_range, 8 * args.n, args.repeats),
                  **reconstruction(engine, args.data, args.n)}
        result["seconds"] = time.perf_counter() - started
        report["models"][name] = result
        inside = [result[f"{op}_inside"] for op in ("sample", "morph", "similar", "shift", "infill")]
        notes = sum(result[f"{op}_notes"] for op in ("sample", "morph", "similar", "shift", "infill"))
        print(f"{name:13s} inside {min(inside):7.2%} of {notes} note-ons (worst operation) | decode masked/plain "
              f"greedy {result['greedy_ratio']:.3f} sampled {result['sampled_ratio']:.3f} "
              f"({8 * args.n} rows, {result['greedy_plain_s'] * 1e3:.1f} ms greedy) | reconstruction of "
              f"{result['melodies']} in-key melodies {result.get('plain_accuracy', float('nan')):.4f} -> "
              f"{result.get('keyed_accuracy', float('nan')):.4f} under their key "
              f"({result.get('changed_rows', 0)} changed) | unconstrained: "
              f"{result['unconstrained_sample_inside']:.0%} of sampled note-ons inside", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
