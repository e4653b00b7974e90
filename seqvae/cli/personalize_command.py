"""`seqvae personalize FILES_OR_DIR... --out DIR`: a personal model from a musician's own MIDI files."""

from __future__ import annotations

import argparse
import shlex
import sys

# Plain numbers, so `seqvae --help` does not import the engine.
MIN_WINDOWS = 2  # seqvae.engine.personalize.MIN_WINDOWS
ATTRIBUTE_MIN_WINDOWS = 8  # seqvae.engine.personalize.ATTRIBUTE_MIN_WINDOWS
SHOWN_SKIPS = 10  # skipped files named on the terminal; all of them are in personalized.json


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "personalize", help="a personal model from your own MIDI files: its samples sound like your melodies",
        description="Refit a model's latent prior and attribute vectors on the windows of your MIDI files (every "
        "melodic line, every window the model hears: 2 bars for the 2-bar models), optionally fine-tuning its "
        f"weights too, into a new model folder that every command and `seqvae serve` load. It needs at least "
        f"{MIN_WINDOWS} windows; below {ATTRIBUTE_MIN_WINDOWS} the base model's attribute vectors are kept. "
        "Files that give no window are skipped, and said why.")
    p.add_argument("inputs", nargs="+", metavar="FILE_OR_DIR", help="MIDI files, or folders searched for .mid/.midi")
    p.add_argument("--model", default="default", help="the model to personalize: shipped name or checkpoint "
                   "directory (default: default; 3/4 melodies need a triple one, e.g. triple)")
    p.add_argument("--out", required=True, help="new folder for the personal model (never overwritten)")
    p.add_argument("--steps", type=int, default=0,
                   help="also fine-tune the weights for this many steps (default: 0, the prior and attribute vectors "
                   "only; a few hundred help sets of dozens of melodies or more)")
    p.add_argument("--learning-rate", type=float, default=None,
                   help="fine-tune learning rate, constant (default: 1e-4)")
    p.add_argument("--track", default=None,
                   help="use only this line of each file: a number or part of its name (default: every line)")
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: CUDA if available)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice)")
    p.add_argument("--seed", type=int, default=0, help="seed of the fit and the fine-tune (default: 0)")
    p.set_defaults(handler=cmd_personalize)


def cmd_personalize(args: argparse.Namespace) -> int:
    import torch
    from tqdm import tqdm

    from seqvae.engine.personalize import check_new_directory, midi_inputs, personalize

    if args.threads is not None:
        if not 1 <= args.threads <= 256:
            raise ValueError(f"--threads {args.threads}: send a whole number from 1 to 256")
        torch.set_num_threads(args.threads)
    if args.steps < 0:
        raise ValueError(f"--steps {args.steps}: send 0 (no fine-tune) or a positive number of steps")
    check_new_directory(args.out)  # before any reading
    files = midi_inputs(args.inputs)
    command = shlex.join(["seqvae", "personalize", *args.inputs, "--model", str(args.model), "--out", args.out,
                          *(["--steps", str(args.steps)] if args.steps else []),
                          *(["--track", str(args.track)] if args.track is not None else []), "--seed", str(args.seed)])
    with tqdm(total=len(files), desc="reading", unit="file", disable=len(files) < 16) as bar:
        made = personalize(args.model, files, args.out, steps=args.steps, learning_rate=args.learning_rate,
                           seed=args.seed, device=args.device, command=command, on_file=bar.update,
                           track=args.track)
    user, fit = made.user, made.fit
    reasons = list(user.skipped.values())
    for reason in reasons[:SHOWN_SKIPS]:
        print(f"skipped {reason}", file=sys.stderr)
    if len(reasons) > SHOWN_SKIPS:
        print(f"skipped {len(reasons) - SHOWN_SKIPS} more files: every reason is in "
              f"{made.directory / 'personalized.json'}", file=sys.stderr)
    print(f"read {fit.windows} windows from {len(user.per_file)} file(s)"
          + (f" ({len(user.skipped)} skipped, see above)" if user.skipped else ""))
    if made.fine_tune_steps:
        print(f"fine-tuned the weights for {made.fine_tune_steps} steps")
    print(f"latent prior: {fit.prior.describe()}")
    if fit.vectors is None:
        print("attribute vectors: none (the base model has none and too few windows to fit them)")
    else:
        print(f"attribute vectors: refitted {', '.join(fit.refitted) or 'none'}"
              + (f"; kept from the base model: {', '.join(fit.from_base)}" if fit.from_base else ""))
    size = sum(p.stat().st_size for p in made.directory.iterdir()) / 1e6
    print(f"wrote {made.directory} ({size:.1f} MB) in {made.seconds:.1f} s; play it with "
          f"`seqvae sample --model {made.directory}` or `seqvae serve --model {made.directory}`")
    return 0
