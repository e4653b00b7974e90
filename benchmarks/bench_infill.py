"""Infill speed and quality: the latent search (seqvae/engine/infill.py) against the z optimiser it replaced.

    python benchmarks/bench_infill.py                                # default model, 150 held-out folk windows
    python benchmarks/bench_infill.py --windows 20 --sizes 8/8,12/8,16/16 --json runs/infill.json
    python benchmarks/bench_infill.py --data datasets/built/folk32   # held-out windows of a built corpus

Held-out windows are the valid and test splits of a folk corpus, the splits the shipped model did not
train on (the split is a hash of each tune, so a small build agrees with the full one). Without --data a
small corpus is converted from music21's bundled tunes (--tunes, spread evenly over the collections) into
a temporary folder and deleted afterwards; --windows of its held-out windows are taken evenly spaced.

Each window gets bar 1 and bar 2 infilled by both methods with the same seed. Quality of the regenerated
bar: its mean log-likelihood per step under the model given the result's own posterior (a fully forced,
scored decode), the share of its notes in the key that best fits the original window, how far its note
count is from the original bar's, how often it came out empty, and how often a kept step sounds different
from the original (the old method continued a note held into a kept bar with whatever pitch its gap ended
on). Speed: p50/p99 of an infill call over the same windows.

OPTIMISER BASELINE: `optimiser_infill` below is a copy of the method the search replaced (Engine.infill before
it: Adam on z over the kept bars' teacher-forced likelihood plus a Gaussian prior term, alternating with
decoding a new gap, 2 rounds of 30 iterations), kept here only to compare against.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from seqvae.codec import NO_EVENT, NOTE_OFF  # noqa: E402
from seqvae.codec.events import FIRST_NOTE_ON  # noqa: E402
from seqvae.engine import Engine  # noqa: E402
from seqvae.engine.infill import EXPLORE, REFINE, infill_events  # noqa: E402
from seqvae.evaluate.features import KEY_MASKS  # noqa: E402

HELD_OUT = ("valid", "test")


def optimiser_infill(engine: Engine, events: np.ndarray, start: int, end: int, seed: int, temperature: float,
                     iterations: int = 30, rounds: int = 2, prior_weight: float = 0.1) -> np.ndarray:
    """THE BASELINE BEING REPLACED: the old Engine.infill's z optimiser, as it was (no boundary fix)."""
    keep = np.ones(engine.steps, dtype=bool)
    keep[start:end] = False
    blank = events.copy()
    blank[start:end] = NO_EVENT
    blank[start] = NOTE_OFF
    blank = engine.codec.canonical(blank)
    (z0,) = engine.encode_events(blank[None])[0]
    device = torch.device(engine.device)
    forced = torch.as_tensor(events[None], device=device)
    mask = torch.as_tensor(keep[None], device=device)
    keep_t = torch.from_numpy(keep).to(device)
    generator = torch.Generator(device=device).manual_seed(seed) if temperature > 0 else None
    z = torch.tensor(z0[None], device=device, requires_grad=True)

    def decode_now() -> torch.Tensor:
        return engine.model.decode(z.detach(), temperature=temperature, generator=generator, forced=forced,
                                   forced_mask=mask, precision=engine.precision)

    tokens = decode_now()
    for _ in range(rounds):
        optimiser = torch.optim.Adam([z], lr=0.05)
        for _ in range(iterations):
            with torch.enable_grad():
                logits = engine.model.logits(tokens, z)[0]
                nll = F.cross_entropy(logits[keep_t].float(), tokens[0][keep_t], reduction="sum")
                loss = nll + prior_weight * 0.5 * (z * z).sum()
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
            optimiser.step()
        tokens = decode_now()
    return tokens[0].cpu().numpy()


def held_out_windows(data: Path | None, tunes: int, windows: int, steps: int) -> np.ndarray:
    """`windows` evenly spaced held-out windows [n, steps] of a built corpus (built here when `data` is None)."""
    from seqvae.data.corpus import load_corpus

    scratch = None
    if data is None:
        from seqvae.data.build import build_corpus
        from seqvae.data.folk import convert_folk

        scratch = Path(tempfile.mkdtemp(prefix="seqvae_infill_"))
        print(f"converting {tunes} folk tunes from music21 and building {steps}-step windows in {scratch} ...")
        convert_folk(scratch / "midi", limit=tunes, progress=False)
        build_corpus(scratch / "midi", scratch / "built", steps=steps, progress=False)
        data = scratch / "built"
    try:
        corpus = load_corpus(data)
        if corpus.steps != steps:
            raise SystemExit(f"{data} holds {corpus.steps}-step windows; the model reads {steps}")
        rows = np.concatenate([np.asarray(corpus.split(s).events, dtype=np.int64) for s in HELD_OUT])
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    if len(rows) == 0:
        raise SystemExit("no held-out windows: build from more tunes (--tunes) or pass another --data")
    picks = np.unique(np.linspace(0, len(rows) - 1, min(windows, len(rows))).round().astype(int))
    return rows[picks]


@dataclass
class BarQuality:
    log_likelihood: float  # mean per step of the regenerated bar, under the result's posterior
    in_key: float | None  # share of its onsets in the original window's key; None without onsets
    note_gap: int  # |onsets - the original bar's onsets|
    empty: bool
    changed: bool  # the bar sounds different from the original's
    repeats: bool  # the bar sounds as a kept bar next to it does: a copy, not a new bar
    kept_sound_broken: bool  # some kept step sounds different from the original


def bar_quality(engine: Engine, original: np.ndarray, result: np.ndarray, start: int, end: int) -> BarQuality:
    codec = engine.codec
    mu, _ = engine.encode_events(result[None])
    _, log_probs = engine.decode_scored(mu, forced=result[None], mask=np.ones((1, engine.steps), bool))
    pitch_classes = (original[original >= FIRST_NOTE_ON] - FIRST_NOTE_ON + codec.min_pitch) % 12
    key = KEY_MASKS[int(np.argmax(KEY_MASKS[:, pitch_classes].sum(axis=1)))]
    bar = result[start:end]
    onsets = bar[bar >= FIRST_NOTE_ON]
    in_key = float(key[(onsets - FIRST_NOTE_ON + codec.min_pitch) % 12].mean()) if len(onsets) else None
    original_onsets = int((original[start:end] >= FIRST_NOTE_ON).sum())
    new_sound, old_sound = codec.sounding_pitches(result), codec.sounding_pitches(original)
    kept = np.ones(engine.steps, dtype=bool)
    kept[start:end] = False
    width = end - start
    neighbours = [new_sound[a:a + width] for a in (start - width, end) if 0 <= a and a + width <= engine.steps]
    return BarQuality(float(log_probs[0, start:end].mean()), in_key, abs(len(onsets) - original_onsets),
                      len(onsets) == 0, not np.array_equal(new_sound[start:end], old_sound[start:end]),
                      any(np.array_equal(new_sound[start:end], n) for n in neighbours),
                      not np.array_equal(new_sound[kept], old_sound[kept]))


@dataclass
class MethodResult:
    method: str
    p50_ms: float
    p99_ms: float
    log_likelihood: float
    in_key: float
    note_gap: float
    empty: float
    changed: float
    repeats: float
    kept_sound_broken: float


def run_method(engine: Engine, name: str, infill, windows: np.ndarray, temperature: float
               ) -> tuple[MethodResult, list[BarQuality]]:
    """Infill bars 1 and 2 of every window (seed = window index); time each call and score each bar (the
    scores in window order, bar 1 then bar 2)."""
    per_bar = engine.meter.steps_per_bar
    infill(windows[0], 0, per_bar, 0, temperature)  # untimed: the first call builds what later ones reuse
    times, scores = [], []
    for index, original in enumerate(windows):
        for bar in (1, 2):
            start, end = (bar - 1) * per_bar, bar * per_bar
            began = time.perf_counter()
            result = infill(original, start, end, index, temperature)
            times.append((time.perf_counter() - began) * 1e3)
            scores.append(bar_quality(engine, original, result, start, end))
    keyed = [s.in_key for s in scores if s.in_key is not None]
    return MethodResult(
        name, statistics.median(times), float(np.percentile(times, 99)),
        float(np.mean([s.log_likelihood for s in scores])), float(np.mean(keyed)) if keyed else float("nan"),
        float(np.mean([s.note_gap for s in scores])), float(np.mean([s.empty for s in scores])),
        float(np.mean([s.changed for s in scores])), float(np.mean([s.repeats for s in scores])),
        float(np.mean([s.kept_sound_broken for s in scores]))), scores


def paired_in_key(scores: list[BarQuality], base: list[BarQuality]) -> tuple[float, float]:
    """Mean and standard error of the in-key difference, paired by window: each window's mean difference over
    its bars where both methods placed a note (the two bars of a window are not independent draws)."""
    per_window = []
    for i in range(0, len(scores), 2):
        pairs = [(a.in_key, b.in_key) for a, b in zip(scores[i:i + 2], base[i:i + 2], strict=True)
                 if a.in_key is not None and b.in_key is not None]
        if pairs:
            per_window.append(float(np.mean([a - b for a, b in pairs])))
    if len(per_window) < 2:
        return float("nan"), float("nan")
    return float(np.mean(per_window)), float(np.std(per_window, ddof=1) / np.sqrt(len(per_window)))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="default", help="checkpoint name or directory (default: default)")
    p.add_argument("--data", type=Path, default=None, help="a built corpus to take held-out windows from")
    p.add_argument("--tunes", type=int, default=400, help="folk tunes to convert when there is no --data")
    p.add_argument("--windows", type=int, default=150, help="held-out windows to infill (default 150)")
    p.add_argument("--sizes", default=f"{EXPLORE}/{REFINE}",
                   help="comma-separated search sizes to compare, each EXPLORE/REFINE latents (default "
                        f"{EXPLORE}/{REFINE}, the engine's), e.g. 8/8,12/8,16/16")
    p.add_argument("--temperature", type=float, default=0.5, help="infill temperature (default 0.5)")
    p.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    p.add_argument("--skip-optimiser", action="store_true", help="only the search (the optimiser is slow)")
    p.add_argument("--json", type=Path, default=None, help="also write the results to this JSON file")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    engine = Engine.load(args.model, device="cpu")
    windows = held_out_windows(args.data, args.tunes, args.windows, engine.steps)
    held = int((windows[:, engine.meter.steps_per_bar] == NO_EVENT).sum())
    print(f"{engine}; {len(windows)} held-out windows x bars 1 and 2, temperature {args.temperature:g}, "
          f"{args.threads} threads; {held} windows hold a note or a rest over the bar line into bar 2")

    def search(explore: int, refine: int):
        return lambda events, start, end, seed, t: infill_events(engine, events, start, end, t, seed, explore, refine)

    try:
        sizes = [tuple(int(n) for n in size.split("/")) for size in args.sizes.split(",")]
    except ValueError:
        p.error(f"--sizes {args.sizes!r}: send EXPLORE/REFINE pairs such as 12/8,16/16")
    if any(len(size) != 2 for size in sizes):
        p.error(f"--sizes {args.sizes!r}: send EXPLORE/REFINE pairs such as 12/8,16/16")
    methods = [(f"search {e}/{r}", search(e, r)) for e, r in sizes]
    if not args.skip_optimiser:
        methods.append(("optimiser (baseline)", lambda events, start, end, seed, t:
                        optimiser_infill(engine, events, start, end, seed, t)))
    runs = [run_method(engine, name, fn, windows, args.temperature) for name, fn in methods]
    results = [result for result, _ in runs]
    print(f"{'method':<22}{'p50 ms':>8}{'p99 ms':>8}{'bar LL':>8}{'in key':>8}{'|dN|':>7}{'empty':>7}"
          f"{'changed':>8}{'repeat':>7}{'kept broken':>12}")
    for r in results:
        print(f"{r.method:<22}{r.p50_ms:>8.1f}{r.p99_ms:>8.1f}{r.log_likelihood:>8.3f}{r.in_key:>8.1%}"
              f"{r.note_gap:>7.2f}{r.empty:>7.1%}{r.changed:>8.1%}{r.repeats:>7.1%}{r.kept_sound_broken:>12.1%}")
    if not args.skip_optimiser:
        base, base_scores = runs[-1]
        for r, scores in runs[:-1]:
            mean, error = paired_in_key(scores, base_scores)
            print(f"{r.method}: {base.p50_ms / r.p50_ms:.1f}x faster at p50 than the optimiser, bar LL "
                  f"{r.log_likelihood - base.log_likelihood:+.3f}, in key {r.in_key - base.in_key:+.1%} (paired by "
                  f"window {mean:+.1%} +- {error:.1%} s.e.), |dN| {r.note_gap - base.note_gap:+.2f}")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"model": args.model, "windows": len(windows),
                                         "temperature": args.temperature, "threads": args.threads,
                                         "held_into_bar_2": held,
                                         "results": [asdict(r) for r in results]}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
