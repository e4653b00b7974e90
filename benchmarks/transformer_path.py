"""The transformer decode path (`bench_engine.py --transformer-path`): the transformer decoder through torch and
through its C loop, against the LSTM, in one run.

    python benchmarks/bench_engine.py --transformer-path mel_2bar_transformer
    python benchmarks/bench_engine.py --transformer-path mel_2bar_transformer,mel_16bar_transformer --repeats 10
    python benchmarks/bench_engine.py --transformer-path transformer    # the shipped, trained transformer

A config name gets random weights, measured twice on the fast path: as built (float32) and rounded to bfloat16, as
`seqvae train` saves a checkpoint, which lets the kernel stream bfloat16 panels. A shipped model's name (or a
checkpoint directory) gets its trained weights, through torch and through the engine's own path. Cases: sample(1),
sample(64), encode + decode of one melody (encode cache cleared). The engines take turns call by call, so a busy
machine slows them alike; the ratio column is each median over the LSTM's for the same case.
"""

from __future__ import annotations

import functools
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from seqvae.codec import Melody
from seqvae.data.synthetic import synthetic_windows
from seqvae.engine import Engine
from seqvae.models import build_model, get_config
from seqvae.models.checkpoint import shipped_models

CASES = ("sample(1)", "sample(64)", "encode+decode")


def transformer_engines(name: str) -> dict[str, Engine]:
    """A trained model (shipped name or directory) through torch and through the engine's own path; a config's
    random weights through torch, the C loop on float32 weights, and the C loop on them rounded to bfloat16."""
    if name in shipped_models() or Path(name).is_dir():
        trained = Engine.load(name, device="cpu")
        through_torch = Engine.load(name, device="cpu", precision="float32")  # torch has no bfloat16 arithmetic
        model = through_torch.model
        model.decode = functools.partial(type(model).decode, model, fast=False)
        return {f"{name} torch": through_torch, f"{name} fast ({trained.precision})": trained}
    engines = {}
    for label in ("torch", "fast", "fast, bf16 weights"):
        torch.manual_seed(0)
        model = build_model(get_config(name))
        if label == "torch":  # an instance attribute shadows the method: every decode takes the torch path
            model.decode = functools.partial(type(model).decode, model, fast=False)
        if "bf16" in label:
            with torch.no_grad():
                for p in model.parameters():
                    p.copy_(p.to(torch.bfloat16).float())
        engine = Engine(model, device="cpu")
        engines[f"{name} {label} ({engine.precision})"] = engine
    return engines


def case_calls(engine: Engine) -> dict[str, Callable[[], object]]:
    melody = Melody(synthetic_windows(1, engine.steps, 7)[0], codec=engine.codec, meter=engine.meter)

    def encode_decode() -> None:
        engine._cache.clear()
        engine.reconstruct(melody)

    return {"sample(1)": lambda: engine.sample(1, temperature=0.5, seed=1),
            "sample(64)": lambda: engine.sample(64, temperature=0.5, seed=1), "encode+decode": encode_decode}


def medians(engines: dict[str, Engine], repeats: int, warmup: int) -> dict[tuple[str, str], float]:
    """Median ms per (engine, case), the engines taking turns call by call."""
    calls = {label: case_calls(engine) for label, engine in engines.items()}
    out = {}
    for case in CASES:
        times: dict[str, list[float]] = {label: [] for label in engines}
        for i in range(warmup + (repeats if case != "sample(64)" else max(repeats // 3, 5))):
            for label in engines:
                start = time.perf_counter()
                calls[label][case]()
                if i >= warmup:
                    times[label].append((time.perf_counter() - start) * 1e3)
        out.update({(label, case): statistics.median(t) for label, t in times.items()})
    return out


def compare(lstm_name: str, transformers: list[str], threads: int, repeats: int, warmup: int) -> None:
    """Print every engine's medians and their ratios to the LSTM's."""
    lstm = Engine.load(lstm_name, device="cpu")
    lstm_label = f"{lstm.model_name} (LSTM, {lstm.precision})"
    engines = {lstm_label: lstm}
    for name in transformers:
        engines.update(transformer_engines(name))
    results = medians(engines, repeats, warmup)
    print(f"seqvae transformer decode path: CPU, {threads} threads, torch {torch.__version__}, medians of "
          f"{repeats} calls ({max(repeats // 3, 5)} for sample(64))")
    print(f"{'engine':<46} " + " ".join(f"{case:>14} {'ratio':>6}" for case in CASES))
    for label in engines:
        cells = []
        for case in CASES:
            ms = results[(label, case)]
            cells.append(f"{ms:11.2f} ms {ms / results[(lstm_label, case)]:5.1f}x")
        print(f"{label:<46} " + " ".join(cells))
