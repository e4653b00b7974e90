"""Model-level inference speed on the mel_2bar_small shape, against Magenta's MusicVAE figures.

    python benchmarks/bench_decode.py [--threads 2] [--repeats 200] [--backend auto|numpy|torch] [--checkpoint NAME]
                                      [--baseline auto|run|results|recorded]

Cases (what the engine's sample(1), reconstruct, sample(8) and sample(64) cost in the model):
  sample(1)       one z ~ N(0, I) decoded for 32 steps at temperature 0.5 with a seed
  encode+decode   one melody encoded, its mu decoded greedily
  decode(8)       eight z's, greedy
  decode(64)      sixty-four z's, greedy
Prints median and 10th percentile in ms, Magenta's figure (interpolate 8 for decode(8), sample(64) for
decode(64)), the speed-up over it and the issue's target. Magenta's figures come from this machine's
../shared/baseline results when there are any, else recorded ones, which the output says (magenta_baseline.py).
Random weights are fine for timing (the work does not depend on the values).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

from magenta_baseline import CHOICES, HELP, load_baseline

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# (Magenta's case, the target in ms on the machine of magenta_baseline.RECORDED_MS)
REFERENCE = {
    "sample(1)": ("sample(1)", 1.4), "encode+decode": ("encode+decode", 3.4), "decode(8)": ("interpolate 8", 5.6),
    "decode(64)": ("sample(64)", 17.0),
}


def measure(fn, repeats: int) -> tuple[float, float]:
    for _ in range(max(3, repeats // 20)):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    times.sort()
    return statistics.median(times), times[len(times) // 10]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--backend", choices=("auto", "numpy", "torch"), default="auto",
                        help="auto: the C kernel when it builds; numpy: the numpy loop; torch: the reference cells")
    parser.add_argument("--checkpoint", help="time a saved model instead of random mel_2bar_small weights")
    parser.add_argument("--weights", choices=("bfloat16", "float32"), default="bfloat16",
                        help="random weights rounded to bfloat16 values, as `seqvae train` ships them (default), or "
                        "full float32")
    parser.add_argument("--baseline", choices=CHOICES, default="auto",
                        help=HELP)
    args = parser.parse_args()
    magenta = load_baseline(args.baseline)
    if args.backend == "numpy":
        os.environ["SEQVAE_NATIVE"] = "0"
    import torch

    from seqvae.models import build_model, get_config, load_model, native

    torch.set_num_threads(args.threads)
    if args.checkpoint:
        model = load_model(args.checkpoint, device="cpu").model
    else:
        torch.manual_seed(0)
        model = build_model(get_config("mel_2bar_small")).eval()
        if args.weights == "bfloat16":
            with torch.no_grad():
                for p in model.parameters():
                    p.copy_(p.to(torch.bfloat16).float())
    fast = args.backend != "torch"
    backend = "torch cells" if not fast else ("C kernel" if native.library() is not None else "numpy loop")
    if fast and native.library() is not None:
        backend += ", bfloat16 panels" if native.bfloat16_exact(model.decoder) else ", float32 panels"
    z_size, steps = model.config.z_size, model.config.steps
    melody = torch.randint(0, model.config.num_classes, (1, steps))
    generator = torch.Generator()
    z8, z64 = torch.randn(8, z_size), torch.randn(64, z_size)

    def sample_one():
        generator.manual_seed(1)
        z = torch.randn(1, z_size, generator=generator)
        return model.decode(z, temperature=0.5, generator=generator, fast=fast)

    cases = {
        "sample(1)": sample_one,
        "encode+decode": lambda: model.decode(model.encode(melody, fast=fast)[0], fast=fast),
        "decode(8)": lambda: model.decode(z8, fast=fast),
        "decode(64)": lambda: model.decode(z64, fast=fast),
    }
    print(f"{model.config.name}, {args.threads} threads, backend: {backend}, torch {torch.__version__}")
    print(magenta.describe())
    print(f"{'case':<16}{'median ms':>10}{'p10 ms':>9}{'Magenta ms':>12}{'speed-up':>10}{'target ms':>11}  met")
    for name, fn in cases.items():
        repeats = args.repeats if name != "decode(64)" else max(10, args.repeats // 4)
        median, p10 = measure(fn, repeats)
        case, target = REFERENCE[name]
        reference, target = magenta.ms[case], magenta.target_ms(case, target)
        print(f"{name:<16}{median:>10.2f}{p10:>9.2f}{reference:>12.1f}{reference / median:>9.2f}x{target:>11.1f}  "
              f"{'yes' if median <= target else 'no'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
