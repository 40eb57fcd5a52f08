"""The ``fastconv`` command: one subcommand per module in fastconv/commands/.

Each module defines ``register(subparsers)``, which adds its parser and sets
``func`` to a ``run(args) -> int``. Modules are imported only to register, and
their heavy imports happen inside ``run``.
"""
from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = ("info", "check", "bench", "train", "summary", "filter", "explain")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fastconv", description="fastconv: CNN kernels, benchmarks and demos")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"fastconv.commands.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"fastconv.commands.{name}":
                continue  # not part of this build
            raise
        module.register(sub)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
