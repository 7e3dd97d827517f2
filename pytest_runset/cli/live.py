"""``status``, ``pause``, ``unpause``, ``stop``: a live run controlled from another terminal."""

from __future__ import annotations

import argparse

from pytest_runset.cli.common import Usage, counts, one_line, read_report, report_path, text
from pytest_runset.results.report import REPORT_NAME


def cmd_control(args: argparse.Namespace) -> int:
    """``status``, ``pause``, ``unpause``, ``stop``: through the run directory's control files."""
    from pytest_runset.session.live_control import control_run

    run_dir = report_path(args.target, args.output).parent
    try:
        lines, code = control_run(run_dir, args.command, drain=bool(getattr(args, "drain", False)))
    except ValueError as exc:
        raise Usage(str(exc)) from None
    if not lines:  # a run that ended: its report's summary
        report = read_report(run_dir / REPORT_NAME)
        lines = [f"run {text(report.get('run_id'))}: {text(report.get('status'))}"]
        lines.append(counts(report))
    print("\n".join(one_line(line) for line in lines))
    return code


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    for name, help_text in (
        ("status", "what a live run is doing (its final summary once it ended)"),
        ("pause", "freeze every running flow of a live run and start nothing new"),
        ("unpause", "thaw a paused run"),
        ("stop", "stop a live run as Ctrl-C does (--drain: let running flows finish)"),
    ):
        control = commands.add_parser(name, help=help_text)
        control.add_argument(
            "target", nargs="?" if name == "status" else None, default="latest", metavar="RUN"
        )
        control.add_argument("--output", metavar="DIR", help="results directory of the runs")
        if name == "stop":
            control.add_argument("--drain", action="store_true", help="let running flows finish")
        control.set_defaults(func=cmd_control)
