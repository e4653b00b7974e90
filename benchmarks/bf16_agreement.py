"""How often a shipped model's greedy decode in bfloat16 is the float32 melody, token for token.

    python benchmarks/bf16_agreement.py                                  # default and triple, 3,000 latents each
    python benchmarks/bf16_agreement.py --models default,triple,16bar,16bar_triple --melodies 1000

`seqvae serve` decodes in bfloat16 where the CPU has AVX512-BF16 and the weights are bfloat16 values, while
`seqvae eval` measures in float32 unless asked; this measures how far apart the two are. The corpora are not
shipped, so the melodies stand in for a test split: per model, N latents drawn from its fitted latent prior (the
kernel density over training latents that `sample` draws from), and the posterior means of the melodies decoded
from those latents at T = 0.5 in float32 (what reconstructing a test melody decodes). Each set is decoded greedily
in bfloat16 and in float32; printed are the share of melodies that agree at every step, the share of tokens
that agree, and for the posterior means the share of their melodies' tokens each arithmetic reconstructs (the
accuracy a musician hears: disagreements at near ties can cost it or not). On a CPU without AVX512-BF16 (or
without the C kernel) there is nothing to compare: it says so and exits 0.
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="default,triple", help="comma-separated shipped models or directories")
    parser.add_argument("--melodies", type=int, default=3000, help="latents per set and model (default 3000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    import torch

    from seqvae.evaluate.precision import agreement_latents, precision_agreement
    from seqvae.models import LatentPrior, load_model

    torch.set_num_threads(args.threads)
    print("$ " + shlex.join(["python", "benchmarks/bf16_agreement.py", *sys.argv[1:]]))
    print(f"{cpu_name()}, {args.threads} threads, torch {torch.__version__}")
    rows = []
    for name in [n.strip() for n in args.models.split(",") if n.strip()]:
        loaded = load_model(name, device="cpu")
        model = loaded.model
        if not model.bf16_decoding_available():
            print(f"{name}: bfloat16 decoding cannot run here (it needs a recurrent decoder, the C kernel and a CPU "
                  "with AVX512-BF16): nothing to compare")
            continue
        prior = LatentPrior.load(loaded.directory, model.config.z_size)
        for latent_set in agreement_latents(model, prior, args.melodies, seed=args.seed):
            started = time.perf_counter()
            agreement = precision_agreement(model, latent_set.z, targets=latent_set.targets).to_dict()
            rows.append({"model": name, "latents": latent_set.label, **agreement,
                         "seconds": time.perf_counter() - started})
    if not rows:
        print("no model could decode in bfloat16 on this machine, so there is no agreement to report (exit 0)")
        return 0
    print(f"{'model':<14}{'latents':<17}{'melodies':>9}{'melodies agree':>16}{'tokens agree':>14}"
          f"{'float32 acc':>13}{'bfloat16 acc':>14}{'seconds':>9}")
    for r in rows:
        accuracy = "".join(f"{r[k]:>{w}.4%}" if r[k] is not None else f"{'-':>{w}}"
                           for k, w in (("float32_accuracy", 13), ("bfloat16_accuracy", 14)))
        print(f"{r['model']:<14}{r['latents']:<17}{r['melodies']:>9}{r['melody_agreement']:>16.2%}"
              f"{r['token_agreement']:>14.4%}{accuracy}{r['seconds']:>9.1f}")
    if args.json:
        args.json.write_text(json.dumps({"cpu": cpu_name(), "threads": args.threads, "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
