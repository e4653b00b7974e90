"""`seqvae` command line: one subcommand group per module, each registering its own parsers.

Handlers import torch and friends lazily, so `seqvae --help` stays instant.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# Modules under seqvae.cli that each define register(subparsers).
COMMAND_MODULES = ["data_commands", "generate_commands", "personalize_command", "serve_command", "train_commands"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="seqvae", description="A latent-space melody instrument.")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"seqvae.cli.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 0 if args.command is None else 2
    try:
        return int(args.handler(args) or 0)
    except (ValueError, FileNotFoundError, FileExistsError, NotADirectoryError, PermissionError) as exc:
        print(f"seqvae {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
