"""The ``ncsn`` command: parse arguments, dispatch to a command module, turn user errors into
one-line messages (exit 2).

A closed stdout (``ncsn noise-levels ... | head -c 10``) ends the command quietly with exit
141, as a shell reports a process killed by SIGPIPE (128 + 13): stdout is pointed at
``os.devnull`` so that Python's final flush cannot print a BrokenPipeError traceback.

Each command module exposes ``register(subparsers)``, which adds its parsers and sets
``func`` (a callable taking the parsed namespace and returning an exit code or None).
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import typing

from ncsn import __version__
from ncsn.errors import UserError

COMMAND_MODULES = ("toy", "train", "sample", "convert", "export", "evaluate", "configs", "doctor",
                   "likelihood", "noise_levels", "pretrained", "classifier", "posthoc")


class _Parser(argparse.ArgumentParser):
    """argparse whose mistakes are one line (``ncsn sample: error: ...``) and exit 2, like
    every other user error, with a pointer to ``--help`` instead of the usage block."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="ncsn",
        description="Noise Conditional Score Networks: train, sample, inpaint, evaluate.",
    )
    parser.add_argument("--version", action="version", version=f"ncsn {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(f"ncsn.cli.{name}").register(sub)
    return parser


def _silence_stdout() -> None:
    """Point stdout's descriptor at ``os.devnull``: the reader has gone, and the interpreter's
    exit-time flush must not raise again."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # a replaced stdout (tests) has no descriptor
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:  # --help, --version and argument mistakes
        return int(stop.code or 0)
    try:
        code = args.func(args)
        sys.stdout.flush()  # a closed pipe fails here, inside the handler below
    except BrokenPipeError:
        _silence_stdout()
        return 128 + signal.SIGPIPE
    except UserError as err:
        print(f"ncsn {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as stop:  # SIGINT, or SIGINT/SIGTERM caught by the trainer
        print(f"ncsn {args.command}: interrupted", file=sys.stderr)
        return 128 + getattr(stop, "signum", signal.SIGINT)
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
