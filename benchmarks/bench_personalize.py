"""Personalize: its wall time, and how much closer its prior samples come to a style far from the folk corpus.

    python benchmarks/bench_personalize.py                          # ostinato style, default model, --steps 200
    python benchmarks/bench_personalize.py --style bach --files 40  # Bach chorale soprano lines (music21's corpus)
    python benchmarks/bench_personalize.py --steps 0 --json out.json

A style is made (ostinato: data/synthetic.ostinato_windows, a high, narrow 16th/8th cell no folk tune has) or
picked (bach: the soprano line of music21's bundled chorales, 4/4 and 3/4 alike: a 3/4 one is skipped by a 4/4
model, as a user's would be), and split into the user's files and held-out melodies. `seqvae personalize` runs on
the user's files without and with a short fine-tune (--steps); for the base model and each personal model, N prior
samples (T=0.5, seed 0) are compared per feature with the held-out melodies: the overlap of the two histograms
(seqvae.evaluate.prior, as the model cards' prior figures; 1 = the same distribution).
"""

from __future__ import annotations

import argparse
import os
import sys


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="default", help="model to personalize (default: default)")
    p.add_argument("--style", default="ostinato", choices=("ostinato", "bach"), help="the user's style")
    p.add_argument("--files", type=int, default=12, help="the user's files (ostinato: 4 windows each; default 12)")
    p.add_argument("--held-out", type=int, default=200, help="held-out windows compared with (default: 200)")
    p.add_argument("--steps", type=int, default=200, help="fine-tune steps of the second run (0: skip it)")
    p.add_argument("--samples", type=int, default=256, help="prior samples per model (default: 256)")
    p.add_argument("--threads", type=int, default=2, help="CPU threads (default: 2)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    p.add_argument("--json", default=None, help="also write the results to this JSON file")
    return p.parse_args(argv)


ARGS = parse_args() if __name__ == "__main__" else None
if ARGS is not None:  # thread pools are sized when numpy/torch load, so set them first
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(ARGS.threads)

import json  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from seqvae.codec import Melody, write_midi  # noqa: E402
from seqvae.data.synthetic import ostinato_windows  # noqa: E402
from seqvae.engine import Engine  # noqa: E402
from seqvae.engine.personalize import personalize, read_user_windows  # noqa: E402
from seqvae.evaluate.features import EVAL_FEATURES  # noqa: E402
from seqvae.evaluate.prior import compare_features  # noqa: E402

SHORT = {"note_density": "density", "pitch_range": "range", "mean_interval": "interval", "in_key_ratio": "in key",
         "rest_ratio": "rests"}


def ostinato_style(work: Path, engine: Engine, files: int, held_out: int) -> tuple[list[Path], np.ndarray]:
    """The user's files (4 windows each) and held-out windows of another seed."""
    user = ostinato_windows(4 * files, engine.steps, seed=1, codec=engine.codec)
    paths = [write_midi([Melody(row.astype(np.int64), codec=engine.codec) for row in user[i:i + 4]],
                        work / f"ostinato{i // 4:03d}.mid") for i in range(0, len(user), 4)]
    return paths, ostinato_windows(held_out, engine.steps, seed=2, codec=engine.codec).astype(np.int64)


def bach_style(work: Path, engine: Engine, files: int, held_out: int) -> tuple[list[Path], np.ndarray]:
    """Soprano lines of music21's chorales: the first `files` are the user's, the next ones held out."""
    from music21 import corpus

    paths: list[Path] = []
    held: list[np.ndarray] = []
    for source in corpus.getComposer("bach"):
        if len(paths) >= files and sum(map(len, held)) >= held_out:
            break
        try:
            soprano = corpus.parse(source).parts[0]
            path = Path(soprano.write("midi", fp=str(work / f"{source.stem}.mid")))
        except Exception:  # noqa: BLE001 - a chorale music21 cannot render is simply not used
            continue
        if len(paths) < files:
            paths.append(path)
            continue
        windows = engine.windows_from_midi(path)
        if windows:
            held.append(np.stack([w.melody.events for w in windows]))
    return paths, np.concatenate(held)[:held_out].astype(np.int64)


def overlaps(engine: Engine, held_out: np.ndarray, samples: int) -> dict[str, dict]:
    tokens = engine.decode_events(engine.draw_prior(samples, np.random.default_rng(0)), temperature=0.5, seed=0)
    return {c.feature: {"overlap": c.overlap, "sample_mean": c.sample_mean, "held_out_mean": c.data_mean}
            for c in compare_features(tokens, held_out, engine.codec.min_pitch)}


def main(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    base = Engine.load(args.model, device=args.device)
    with tempfile.TemporaryDirectory(prefix="bench_personalize.") as tmp:
        work = Path(tmp)
        (work / "user").mkdir()
        make = ostinato_style if args.style == "ostinato" else bach_style
        files, held_out = make(work / "user", base, args.files, args.held_out)
        user_windows = len(read_user_windows(base, files).events)
        results = {"model": args.model, "style": args.style, "files": len(files), "user_windows": user_windows,
                   "held_out_windows": len(held_out), "samples": args.samples, "threads": args.threads,
                   "runs": {"default": {"seconds": None, "overlaps": overlaps(base, held_out, args.samples)}}}
        for steps in [0] + ([args.steps] if args.steps else []):
            made = personalize(args.model, files, work / f"personal_{steps}", steps=steps, device=args.device)
            personal = Engine.load(made.directory, device=args.device)
            results["runs"][f"personal, --steps {steps}"] = {
                "seconds": made.seconds, "overlaps": overlaps(personal, held_out, args.samples),
                "prior": made.fit.prior.describe()}
    return results


def report(results: dict) -> None:
    print(f"{results['model']} personalized on {results['files']} {results['style']} files "
          f"({results['user_windows']} windows); {results['samples']} prior samples (T=0.5) against "
          f"{results['held_out_windows']} held-out windows of the style, {results['threads']} threads")
    runs = results["runs"]
    print(f"{'overlap':<22}" + "".join(f"{SHORT[f]:>10}" for f in EVAL_FEATURES) + f"{'mean':>8}{'wall s':>9}")
    default = runs["default"]["overlaps"]
    for name, run in runs.items():
        values = [run["overlaps"][f]["overlap"] for f in EVAL_FEATURES]
        seconds = "" if run["seconds"] is None else f"{run['seconds']:.1f}"
        print(f"{name:<22}" + "".join(f"{v:10.2f}" for v in values) + f"{np.mean(values):8.2f}{seconds:>9}")
        if name != "default":
            ratio = [run["overlaps"][f]["overlap"] / max(default[f]["overlap"], 1e-3) for f in EVAL_FEATURES]
            print(f"{'  x default':<22}" + "".join(f"{r:10.1f}" for r in ratio))
    print("feature means:")
    print(f"{'held-out melodies':<22}" + "".join(f"{default[f]['held_out_mean']:10.2f}" for f in EVAL_FEATURES))
    for name, run in runs.items():
        print(f"{name:<22}" + "".join(f"{run['overlaps'][f]['sample_mean']:10.2f}" for f in EVAL_FEATURES))

if __name__ == "__main__":
    assert ARGS is not None
    figures = main(ARGS)
    report(figures)
    if ARGS.json:
        Path(ARGS.json).write_text(json.dumps(figures, indent=2) + "\n")
        print(f"wrote {ARGS.json}")
