"""GPU figures in one run: decode latency and throughput, the OSC round trip, training speed.

    python benchmarks/bench_gpu.py                                   # everything, on cuda, full sizes
    python benchmarks/bench_gpu.py --parts decode --batches 1000,8000,64000
    python benchmarks/bench_gpu.py --device cpu --batches 64,256 --bars16-batches 16 --train-batch 32 \
        --train-steps 5 --osc-requests 50 --osc-seconds 2              # the same code, small, on a CPU

Parts (--parts, comma-separated):
  decode  sample(1) and morph (a greedy decode of one latent) latency, p50/p99 over --repeats calls; then
          2-bar melodies/s through Engine.decode_events at each of --batches (sampled at 0.5, tokens back on the
          host; the goal is >= 100,000 melodies/s); then the shipped `16bar` model's melodies/s at --bars16-batches.
  osc     `seqvae serve --device DEVICE` as a subprocess: /seqvae/morph and /seqvae/sample round trips on loopback
          (bench_osc.py's client) and the replies/s of --osc-clients concurrent clients (micro-batched).
  train   examples/s of the real trainer at --train-batch for each of --train-configs (--train-warmup steps first,
          not timed; bfloat16 autocast on a GPU), on --data or a synthetic corpus built offline.
On CUDA the engine decodes the LSTM models through CUDA graphs (seqvae/models/cuda_graph_decode.py); the
first call of each batch bucket records its graph, so every figure comes after warm-up calls.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

PARTS = ("decode", "osc", "train")
GOAL_MELODIES_PER_S = 100_000


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu (default: cuda)")
    p.add_argument("--parts", default=",".join(PARTS), help=f"comma list of {', '.join(PARTS)} (default: all)")
    p.add_argument("--model", default="default", help="2-bar model (default: the shipped default)")
    p.add_argument("--repeats", type=int, default=200, help="timed calls per latency figure (default: 200)")
    p.add_argument("--batches", default="1000,8000,64000", help="2-bar throughput batch sizes")
    p.add_argument("--bars16-batches", default="1000,8000", help="16bar throughput batch sizes")
    p.add_argument("--osc-requests", type=int, default=500, help="round trips per OSC request type (default: 500)")
    p.add_argument("--osc-clients", type=int, default=4, help="concurrent OSC clients (default: 4)")
    p.add_argument("--osc-seconds", type=float, default=5.0, help="seconds of each OSC throughput run (default: 5)")
    p.add_argument("--train-configs", default="mel_2bar_small,mel_2bar_transformer")
    p.add_argument("--train-batch", type=int, default=512, help="training batch (default: 512)")
    p.add_argument("--train-steps", type=int, default=200, help="timed training steps per config (default: 200)")
    p.add_argument("--train-warmup", type=int, default=20, help="untimed training steps first (default: 20)")
    p.add_argument("--data", default=None, help="built 2-bar corpus to train on (default: a synthetic one)")
    p.add_argument("--threads", type=int, default=2, help="CPU threads for torch (default: 2)")
    args = p.parse_args(argv)
    args.parts = [part.strip() for part in args.parts.split(",") if part.strip()]
    unknown = sorted(set(args.parts) - set(PARTS))
    if unknown:
        p.error(f"unknown parts {unknown}: choose from {', '.join(PARTS)}")
    try:
        args.batches = [int(b) for b in args.batches.split(",") if b]
        args.bars16_batches = [int(b) for b in args.bars16_batches.split(",") if b]
    except ValueError:
        p.error("--batches and --bars16-batches are comma-separated whole numbers, e.g. 1000,8000")
    return args


def synchronize(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def latency_ms(fn, repeats: int, device: str, warmup: int = 20) -> tuple[float, float]:
    """(p50, p99) of `fn` in milliseconds, after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        synchronize(device)
        times.append((time.perf_counter() - started) * 1e3)
    return statistics.median(times), percentile(times, 0.99)


def melodies_per_second(engine, batch: int, device: str, rounds: int = 3) -> float:
    """Best of `rounds` sampled decodes of `batch` latents, tokens back on the host, after one warm-up."""
    z = np.random.default_rng(0).standard_normal((batch, engine.z_size)).astype(np.float32)
    engine.decode_events(z, temperature=0.5, seed=0)  # records the graphs of this batch's buckets
    best = float("inf")
    for seed in range(rounds):
        started = time.perf_counter()
        engine.decode_events(z, temperature=0.5, seed=seed)
        synchronize(device)
        best = min(best, time.perf_counter() - started)
    return batch / best


def run_decode(args: argparse.Namespace) -> None:
    from seqvae.engine import Engine

    engine = Engine.load(args.model, device=args.device, threads=args.threads)
    print(f"\n[decode] {engine}")
    z = np.random.default_rng(1).standard_normal((1, engine.z_size)).astype(np.float32)
    for label, fn in (("sample(1), temperature 0.5", lambda: engine.sample(1, temperature=0.5, seed=1)),
                      ("morph decode(1), greedy", lambda: engine.decode_events(z))):
        p50, p99 = latency_ms(fn, args.repeats, args.device)
        print(f"  {label:<28} p50 {p50:7.3f} ms   p99 {p99:7.3f} ms   ({args.repeats} calls)")
    for batch in args.batches:
        rate = melodies_per_second(engine, batch, args.device)
        goal = "met" if rate >= GOAL_MELODIES_PER_S else "not met"
        print(f"  2-bar, batch {batch:>6}: {rate:12,.0f} melodies/s   (goal >= {GOAL_MELODIES_PER_S:,}: {goal})")
    long = Engine.load("16bar", device=args.device, threads=args.threads)
    for batch in args.bars16_batches:
        print(f"  16-bar ({long.steps} steps), batch {batch:>6}: "
              f"{melodies_per_second(long, batch, args.device):10,.0f} melodies/s")


def run_osc(args: argparse.Namespace) -> None:
    from bench_osc import ServerProcess, measure_latency, measure_throughput

    with tempfile.TemporaryDirectory() as scratch:
        server = ServerProcess(args.model, Path(scratch) / "exports", threads=args.threads, device=args.device)
        try:
            print(f"\n[osc] {server.banner}")
            for request in ("/seqvae/morph", "/seqvae/sample"):
                times = measure_latency(server.port, request, args.osc_requests)
                print(f"  {request:<15} round trip p50 {percentile(times, 0.5):6.2f} ms   "
                      f"p99 {percentile(times, 0.99):6.2f} ms   ({len(times)} requests)")
            for request in ("/seqvae/morph", "/seqvae/sample"):
                rate = measure_throughput(server.port, request, args.osc_clients, args.osc_seconds)
                print(f"  {request:<15} {args.osc_clients} clients: {rate:8.0f} replies/s")
        finally:
            server.stop()


def run_train(args: argparse.Namespace) -> None:
    from seqvae.data.synthetic import write_synthetic_corpus
    from seqvae.train import TrainOptions, train

    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        data = Path(args.data) if args.data else write_synthetic_corpus(
            work / "corpus", max(4 * args.train_batch, 2048), 256, 64, steps=32, seed=0).directory
        print(f"\n[train] batch {args.train_batch}, {args.train_steps} timed steps after {args.train_warmup}, on "
              f"{'--data ' + str(data) if args.data else 'a synthetic 2-bar corpus'}, device {args.device}")
        for name in args.train_configs.split(","):
            common = dict(data=data, out=work / name, batch_size=args.train_batch, device=args.device.split(":")[0],
                          threads=args.threads, progress=False, eval_every=10**9, checkpoint_every=10**9,
                          log_every=10**9)
            train(TrainOptions(config=name, train_steps=args.train_warmup, **common))
            result = train(TrainOptions(resume=True, train_steps=args.train_warmup + args.train_steps, **common))
            print(f"  {name:<22} {result.examples_per_second:10,.0f} examples/s")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    from seqvae.models.device import pick_device

    device = pick_device(args.device)  # a clear error on a machine without the GPU asked for
    what = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {args.threads} threads"
    print(f"bench_gpu: {what}; torch {torch.__version__}; parts {', '.join(args.parts)}")
    for part, run in (("decode", run_decode), ("osc", run_osc), ("train", run_train)):
        if part in args.parts:
            run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
