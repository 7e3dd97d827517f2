"""The ``pytest-runset`` console script: ``validate``, ``list``, ``show``, ``merge``, ``compare``
and the live-run controls ``status``, ``pause``, ``unpause``, ``stop``; ``queue`` (shared queues);
``install-browser`` (a browser for browser flows).

Built on argparse rather than click/typer: the command must start fast (``show`` and ``merge``
do not even load pydantic) and the plugin already depends on enough. Nothing here imports pytest.
Exit codes are pytest's: 0 ok / run passed, 1 run not passed or merge conflicts, 4 usage error
(bad file, bad report, bad arguments), always with a one-line message and never a traceback.
Each command lives in a module of its own with a ``register`` function adding its parser.
"""

from __future__ import annotations

import argparse
import io
import os
import sys

from pytest_runset import __version__
from pytest_runset.cli import compare, install_browser, live, merge, queue, runsets, show
from pytest_runset.cli.common import FAILED, USAGE_ERROR, Parser, Usage, one_line

COMMANDS = (runsets, show, merge, compare, live, queue, install_browser)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="pytest-runset",
        description="Check run-set files and read run reports of pytest-runset.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMANDS:
        module.register(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    # Under a C or POSIX locale stdout is ASCII: "café" is printed as "caf\\xe9", never as a
    # UnicodeEncodeError (stderr already escapes what it cannot encode).
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(errors="backslashreplace")
    parser = build_parser()
    try:
        try:
            args = parser.parse_args(argv)
        except SystemExit as exc:  # --help, --version, usage errors
            return exc.code if isinstance(exc.code, int) else USAGE_ERROR
        try:
            code: int = args.func(args)
        except Usage as exc:
            print(one_line(str(exc)), file=sys.stderr)
            code = USAGE_ERROR
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (``| head``): stop quietly, and keep the interpreter's final
        # flush of stdout from raising again.
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return FAILED
    return code
