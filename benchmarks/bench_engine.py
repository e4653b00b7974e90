"""Engine speed, the real-time promise: medians of what a live performer waits for.

    python benchmarks/bench_engine.py                      # mel_2bar_small shape, random weights, CPU, 2 threads
    python benchmarks/bench_engine.py --model default      # the shipped model
    python benchmarks/bench_engine.py --configs mel_2bar_small,mel_16bar_hier,mel_2bar_transformer
    python benchmarks/bench_engine.py --device cuda
    python benchmarks/bench_engine.py --baseline run        # measure Magenta on this machine first
    python benchmarks/bench_engine.py --transformer-path mel_2bar_transformer  # torch vs C loop vs the LSTM

Cases (as ../shared/baseline times Magenta's TF 2.9 MusicVAE): sample(1); encode + decode of one
melody; interpolate 8 steps between two melodies (encode both, decode 8); sample(64); and morph with
both endpoints already encoded (a knob turn). Ratios are Magenta's time over ours (above 1 = faster
than Magenta), for mel_2bar_small only; targets are the issue's. Magenta's times come from this
machine's baseline results when there are any (see magenta_baseline.py); the output says plainly when
they are recorded figures from another machine instead. Encode caches are cleared before every timed
call except for morph, whose point is the cache.
"""

from __future__ import annotations

import argparse
import os
import sys

from magenta_baseline import CHOICES, HELP, MagentaBaseline, load_baseline


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None, help="checkpoint name or directory (default: random weights)")
    p.add_argument("--configs", default="mel_2bar_small", help="comma-separated configs for random-weight runs")
    p.add_argument("--threads", type=int, default=2, help="CPU threads (torch, BLAS, OpenMP); default 2")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    p.add_argument("--precision", default="auto", choices=("auto", "float32", "bfloat16"),
                   help="decoding arithmetic (default: auto, as the engine chooses it)")
    p.add_argument("--repeats", type=int, default=100, help="timed calls per case (default: 100)")
    p.add_argument("--warmup", type=int, default=10, help="untimed calls per case first (default: 10)")
    p.add_argument("--json", default=None, help="also write the results to this JSON file")
    p.add_argument("--baseline", default="auto", choices=CHOICES,
                   help=HELP)
    p.add_argument("--transformer-path", default=None, metavar="NAMES",
                   help="instead: these transformer configs (random weights) or trained models through torch and "
                   "the C loop against the LSTM of --model (default: default), sample(1), sample(64) and "
                   "encode+decode (see transformer_path.py)")
    return p.parse_args(argv)


ARGS = parse_args() if __name__ == "__main__" else None
if ARGS is not None:  # thread pools are sized when numpy/torch load, so set them first
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(ARGS.threads)

import json  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import asdict, dataclass  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import transformer_path  # noqa: E402  (after the thread settings: it loads torch)

from seqvae.codec import Melody  # noqa: E402
from seqvae.data.synthetic import synthetic_windows  # noqa: E402
from seqvae.engine import Engine  # noqa: E402
from seqvae.models import build_model, get_config  # noqa: E402

# The targets (ms) for the mel_2bar_small shape, set on the machine of magenta_baseline.RECORDED_MS.
TARGET_MS = {"sample(1)": 1.4, "encode+decode": 3.4, "interpolate 8": 5.6, "sample(64)": 17.0,
             "morph (cached)": 1.5}


@dataclass
class CaseResult:
    model: str
    case: str
    median_ms: float
    p90_ms: float
    magenta_ms: float | None
    speedup_vs_magenta: float | None
    target_ms: float | None
    meets_target: bool | None


def time_case(fn: Callable[[], object], repeats: int, warmup: int, sync: Callable[[], None]) -> list[float]:
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - start) * 1e3)
    return times


def bench_engine(engine: Engine, label: str, repeats: int, warmup: int,
                 magenta: MagentaBaseline | None) -> tuple[list[CaseResult], float]:
    """Every case's timings; against Magenta's and the targets where `magenta` is given (mel_2bar_small)."""
    a, b = (Melody(row, codec=engine.codec, meter=engine.meter) for row in synthetic_windows(2, engine.steps, 7))
    sync = torch.cuda.synchronize if engine.device.startswith("cuda") else (lambda: None)
    clear = engine._cache.clear

    def encode_decode() -> None:
        clear()
        engine.reconstruct(a)

    def interpolate() -> None:
        clear()
        engine.interpolate(a, b, 8)

    knob = iter(np.tile(np.linspace(0.0, 1.0, 97), 1000))
    engine.morph(a, b, 0.5)  # encode and cache both endpoints once, as a live session does
    cases: dict[str, Callable[[], object]] = {
        "sample(1)": lambda: engine.sample(1, temperature=0.5, seed=1),
        "encode+decode": encode_decode,
        "interpolate 8": interpolate,
        "sample(64)": lambda: engine.sample(64, temperature=0.5, seed=1),
        "morph (cached)": lambda: engine.morph(a, b, float(next(knob))),
    }
    results = []
    for case, fn in cases.items():
        times = time_case(fn, repeats if case != "sample(64)" else max(repeats // 4, 10), warmup, sync)
        median = statistics.median(times)
        p90 = float(np.percentile(times, 90))
        magenta_ms = magenta.ms.get(case) if magenta is not None else None
        target = TARGET_MS.get(case) if magenta is not None else None
        if magenta_ms is not None:
            target = magenta.target_ms(case, target)
        results.append(CaseResult(label, case, median, p90, magenta_ms, magenta_ms / median if magenta_ms else None,
                                  target, median <= target if target else None))
    return results, engine_overhead_us(engine, cases["morph (cached)"], repeats)


def engine_overhead_us(engine: Engine, morph: Callable[[], object], repeats: int) -> float:
    """What the engine itself adds to a cached morph: the same call with the model's decode replaced
    by a stub returning finished tokens, so only the engine's own work (cache lookup, slerp, tensor
    conversion, lock, Melody objects) is timed, free of the noise of the decode loop."""
    tokens = engine.model.decode(torch.zeros(1, engine.z_size, device=engine.device))
    engine.model.decode = lambda *args, **kwargs: tokens  # instance attribute shadows the method
    try:
        times = time_case(morph, repeats * 10, 10, lambda: None)
    finally:
        del engine.model.decode
    return statistics.median(times) * 1e3


def print_table(results: list[CaseResult]) -> None:
    print(f"{'model':<22} {'case':<16} {'median ms':>10} {'p90 ms':>8} {'Magenta':>8} {'speedup':>8} "
          f"{'target':>7} {'ok':>4}")
    for r in results:
        magenta = f"{r.magenta_ms:8.1f}" if r.magenta_ms else f"{'-':>8}"
        speed = f"{r.speedup_vs_magenta:7.1f}x" if r.speedup_vs_magenta else f"{'-':>8}"
        target = f"{r.target_ms:7.1f}" if r.target_ms else f"{'-':>7}"
        ok = {True: "yes", False: "NO", None: "-"}[r.meets_target]
        print(f"{r.model:<22} {r.case:<16} {r.median_ms:10.3f} {r.p90_ms:8.3f} {magenta} {speed} {target} {ok:>4}")


def main(args: argparse.Namespace) -> int:
    torch.set_num_threads(args.threads)
    if args.transformer_path:
        names = [n.strip() for n in args.transformer_path.split(",") if n.strip()]
        transformer_path.compare(args.model or "default", names, args.threads, args.repeats, args.warmup)
        return 0
    results: list[CaseResult] = []
    overheads: dict[str, float] = {}
    magenta: MagentaBaseline | None = None

    def magenta_for(compare: bool) -> MagentaBaseline | None:
        """Magenta's times for a mel_2bar_small-shaped model, loaded once (--baseline run measures them)."""
        nonlocal magenta
        if not compare:
            return None
        magenta = magenta or load_baseline(args.baseline)
        return magenta

    if args.model:
        engine = Engine.load(args.model, device=args.device, precision=args.precision)
        compare = engine.config.architecture == "lstm" and engine.steps == 32 and engine.z_size == 256
        label = f"{engine.model_name} {engine.precision}"
        rows, overheads[label] = bench_engine(engine, label, args.repeats, args.warmup, magenta_for(compare))
        results += rows
    else:
        for name in [n.strip() for n in args.configs.split(",") if n.strip()]:
            torch.manual_seed(0)
            engine = Engine(build_model(get_config(name)), device=args.device, precision=args.precision)
            label = f"{name} (random) {engine.precision}"
            compare = name == "mel_2bar_small"
            rows, overheads[label] = bench_engine(engine, label, args.repeats, args.warmup, magenta_for(compare))
            results += rows
    device = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"CPU, {args.threads} threads"
    print(f"seqvae engine benchmark: {device}, torch {torch.__version__}, medians of {args.repeats} calls")
    if magenta is not None:
        print(magenta.describe())
    print_table(results)
    for model, overhead_us in overheads.items():
        print(f"{model}: the engine's own work in a cached morph (model decode stubbed out): {overhead_us:.0f} us")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"device": device, "threads": args.threads, "results": [asdict(r) for r in results],
                       "engine_overhead_us": overheads, "magenta": asdict(magenta) if magenta else None},
                      handle, indent=2)
    failed = [r for r in results if r.meets_target is False]
    if failed:
        print(f"{len(failed)} case(s) above target: {', '.join(r.case for r in failed)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(ARGS))
