"""`seqvae train` and `seqvae eval`: thin wrappers over seqvae.train and seqvae.evaluate."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

from seqvae.models.precision import ACCEPTED, PRECISIONS


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a model on a built corpus (CPU, GPU, or several through torchrun)",
        description="Train a sequence VAE. RUN_DIR gets checkpoint.safetensors (resumable), metrics.csv and "
        "model/ (the latest loadable model). Several processes: torchrun --nproc_per_node N -m seqvae.cli.main "
        "train ... (gloo on CPU, NCCL on GPUs; --batch-size is the global batch).",
    )
    p.add_argument("--config", help="model config name (required for a new run), e.g. mel_2bar_small")
    p.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                   help="change one field of a new run's config, e.g. --set max_beta=2.0 (repeat for more); the run "
                   "records the whole config")
    p.add_argument("--data", required=True, type=Path, help="built corpus directory (seqvae data build)")
    p.add_argument("--out", required=True, type=Path, help="run directory")
    p.add_argument("--steps", type=int, help="total optimizer steps (default: the config's)")
    p.add_argument("--batch-size", type=int, help="global batch size (default: the config's)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--threads", type=int, help="CPU threads for torch")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", choices=("cpu", "cuda"), help="default: CUDA when available")
    p.add_argument("--precision", choices=ACCEPTED, default="auto",
                   help="auto (bfloat16 autocast on GPU, float32 on CPU), float32 or bfloat16; fp32 and bf16 also work")
    p.add_argument("--log-every", type=int, default=10, help="steps between metrics.csv rows")
    p.add_argument("--eval-every", type=int, help="steps between validations (default: the config's)")
    p.add_argument("--checkpoint-every", type=int, help="steps between checkpoints (default: the config's)")
    p.add_argument("--model-dtype", choices=("bfloat16", "float32", "float16"), default="bfloat16",
                   help="weights of RUN_DIR/model (the shippable copy): bfloat16 is half the size and decodes faster "
                   "on CPU; the resumable checkpoint is always float32")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(handler=run_train)

    e = subparsers.add_parser(
        "eval",
        help="measure a model on a corpus split: reconstruction, KL, active units, prior samples, interpolation",
    )
    e.add_argument("checkpoint", help="shipped model name (e.g. default), model directory or run directory")
    e.add_argument("--data", required=True, type=Path, help="built corpus directory")
    e.add_argument("--split", default="test", choices=("train", "valid", "test"))
    e.add_argument("--json", type=Path, help="also write the results here")
    e.add_argument("--limit", type=int, help="use at most this many windows of the split")
    e.add_argument("--samples", type=int, default=1000, help="prior samples for the feature comparison")
    e.add_argument("--temperature", type=float, default=1.0, help="prior sampling temperature")
    e.add_argument("--pairs", type=int, default=50, help="melody pairs for the interpolation check")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--threads", type=int, help="CPU threads for torch")
    e.add_argument("--device", choices=("cpu", "cuda"))
    e.add_argument("--precision", choices=PRECISIONS, default="float32",
                   help="arithmetic of the greedy reconstruction: float32 (default, the figures' reference); "
                   "bfloat16 needs a CPU with AVX512-BF16; auto picks what `seqvae serve` picks by default")
    e.set_defaults(handler=run_eval)


def _positive(name: str, value: int | None) -> None:
    if value is not None and value < 1:
        raise ValueError(f"--{name} must be a positive number, got {value}")


def run_train(args: argparse.Namespace) -> int:
    from seqvae.train import TrainOptions, describe, train

    for name in ("steps", "batch_size", "threads", "log_every", "eval_every", "checkpoint_every"):
        _positive(name.replace("_", "-"), getattr(args, name))
    command = shlex.join(["seqvae", *sys.argv[1:]])
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        command = f"torchrun --nproc_per_node {os.environ.get('LOCAL_WORLD_SIZE', world)} -m seqvae.cli.main " + \
            shlex.join(sys.argv[1:])
    options = TrainOptions(
        data=args.data, out=args.out, config=args.config, settings=tuple(args.settings), train_steps=args.steps,
        batch_size=args.batch_size,
        resume=args.resume, threads=args.threads, seed=args.seed, device=args.device, precision=args.precision,
        log_every=args.log_every, eval_every=args.eval_every, checkpoint_every=args.checkpoint_every,
        progress=not args.no_progress, command=command, model_dtype=args.model_dtype,
    )
    result = train(options)
    if int(os.environ.get("RANK", "0")) == 0:
        print(describe(result))
    return 0


def run_eval(args: argparse.Namespace) -> int:
    import torch

    from seqvae.evaluate import EvalOptions, evaluate_checkpoint, format_report

    for name in ("limit", "threads"):
        _positive(name, getattr(args, name))
    if args.samples < 0 or args.pairs < 0:
        raise ValueError("--samples and --pairs must be >= 0")
    if args.threads:
        torch.set_num_threads(args.threads)
    options = EvalOptions(
        checkpoint=args.checkpoint, data=args.data, split=args.split, limit=args.limit, samples=args.samples,
        temperature=args.temperature, pairs=args.pairs, seed=args.seed, device=args.device, precision=args.precision,
    )
    report = evaluate_checkpoint(options)
    print(format_report(report))
    if args.json:
        report.write_json(args.json)
        print(f"wrote {args.json}")
    return 0
