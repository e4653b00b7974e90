"""Decoding speed of a chord model (mel_2bar_chords) on the torch cells and on the fast path, beside `default`'s.

    python benchmarks/bench_chord_decode.py [--threads 2] [--repeats 200] [--init default|random]

Cases, at the model level as in bench_decode.py: sample(1) is one z ~ N(0, I) decoded for 32 steps at
temperature 0.5 with a seed, sample(64) sixty-four of them; the chord model decodes under "Am F C G" on every row.
Rows: the chord model on the torch cells (fast=False), the chord model on the fast path (the C kernel, else
numpy), and the shipped `default` on the fast path; the fast rows are timed in turn within every round, then the
torch row. `--init default` (the default) warm-starts the chord model from `default` through the registry's
init_from, so both have the same (bfloat16-exact) weights and panels and differ only by the chord rows;
`--init random` times random weights. No training is needed: the work does not depend on the values.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def interleaved(cases: dict, repeats: int) -> dict[str, tuple[float, float]]:
    """(median, 10th percentile) ms per case, the cases timed in turn within every round, so a load that comes and
    goes on a shared machine weighs on all of them alike."""
    for fn in cases.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeats):
        for name, fn in cases.items():
            start = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - start) * 1e3)
    return {name: (statistics.median(t), sorted(t)[len(t) // 10]) for name, t in times.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--init", choices=("default", "random"), default="default",
                        help="chord model weights: warm-started from the registry's init_from, or random")
    args = parser.parse_args()
    import torch

    from seqvae.codec import Meter
    from seqvae.codec.chords import parse_progression
    from seqvae.models import build_model, get_config, load_model, native
    from seqvae.models.warm_start import copy_weights

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = get_config("mel_2bar_chords")
    chords_model = build_model(config).eval()
    if args.init == "default":
        copy_weights(chords_model, config.init_from)
    default = load_model("default", device="cpu").model.eval()
    steps, z_size = config.steps, config.z_size
    progression = torch.as_tensor(parse_progression("Am F C G", Meter(4, 4), steps))
    backend = "C kernel" if native.library() is not None else "numpy loop"
    if native.library() is not None:
        backend += ", bfloat16 panels" if native.bfloat16_exact(chords_model.decoder) else ", float32 panels"
    generator = torch.Generator()

    def sampler(model, rows: int, fast: bool, chords: bool):
        """sample(rows): `rows` seeded z's decoded at temperature 0.5, under the progression when `chords`."""
        extra = {"chords": progression.expand(rows, steps)} if chords else {}

        def sample():
            generator.manual_seed(1)
            z = torch.randn(rows, z_size, generator=generator)
            return model.decode(z, temperature=0.5, generator=generator, fast=fast, **extra)
        return sample

    rows = {
        f"{config.name}, torch cells": (chords_model, False, True),
        f"{config.name}, fast path": (chords_model, True, True),
        "default, fast path": (default, True, False),
    }
    check = [sampler(m, 4, fast, chords)() for m, fast, chords in rows.values()]
    same = bool(torch.equal(check[0], check[1]))
    print(f"{config.name} ({args.init} init) vs default, {args.threads} threads, fast backend: {backend}, "
          f"torch {torch.__version__}; chords \"Am F C G\"; fast and torch chord tokens equal: {same}")
    print(f"{'model, path':<36}{'sample(1) ms':>14}{'p10':>8}{'sample(64) ms':>15}{'p10':>8}")
    # The torch rows are timed on their own: torch's worker threads spin on for a while after its last operation
    # and would slow whichever fast row came next.
    one, many = {}, {}
    for paths in ([name for name in rows if rows[name][1]], [name for name in rows if not rows[name][1]]):
        for batch, times, repeats in ((1, one, args.repeats), (64, many, max(10, args.repeats // 10))):
            times.update(interleaved({name: sampler(rows[name][0], batch, *rows[name][1:]) for name in paths},
                                     repeats))
    for name in rows:
        print(f"{name:<36}{one[name][0]:>14.2f}{one[name][1]:>8.2f}{many[name][0]:>15.2f}{many[name][1]:>8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
