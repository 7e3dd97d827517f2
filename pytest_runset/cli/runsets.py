"""``validate`` and ``list``: a run-set file checked, its flows listed."""

from __future__ import annotations

import argparse
import json
import sys

from pytest_runset.cli.common import (
    NAME_WIDTH,
    OK,
    USAGE_ERROR,
    clip,
    load_runset_file,
    one_line,
    table,
)


def cmd_validate(args: argparse.Namespace) -> int:
    from pytest_runset.model.flows import RunsetError

    code = OK
    for file in args.files:
        try:
            runset = load_runset_file(file)
        except RunsetError as exc:
            print(str(exc), file=sys.stderr)
            code = USAGE_ERROR
            continue
        count = len(runset.flows)
        print(f"{one_line(file)}: ok ({count} flow{'' if count == 1 else 's'})")
    return code


def _seconds(value: float) -> str:
    return f"{value:g}"


def cmd_list(args: argparse.Namespace) -> int:
    from pytest_runset.model.flows import RunsetError

    try:
        runset = load_runset_file(args.file)
    except RunsetError as exc:
        print(str(exc), file=sys.stderr)
        return USAGE_ERROR
    if args.json:
        entries = [
            {
                "slug": flow.slug,
                "name": flow.name,
                "kind": flow.kind,
                "command": flow.command if isinstance(flow.command, str) else list(flow.command),
                "shell": flow.shell,
                "cwd": flow.cwd,
                "timeout_s": flow.timeout_s,
                "kill_grace_s": flow.kill_grace_s,
                "retries": flow.retries,
                "tags": list(flow.tags),
                "persona": flow.persona,
                "skip": flow.skip,
                "xfail": flow.xfail,
                "description": flow.description,
                "steps": len(flow.steps),
                "spec": flow.spec,
                "callable": flow.callable_ref,
                "browser": flow.browser,
            }
            for flow in runset.flows
        ]
        print(json.dumps(entries, indent=2, ensure_ascii=False))
        return OK
    if not runset.flows:
        print(f"{one_line(args.file)}: no flows")
        return OK
    rows = []
    for flow in runset.flows:
        reason = f"skip: {flow.skip}" if flow.skip else f"xfail: {flow.xfail}" if flow.xfail else ""
        rows.append(
            [
                flow.slug,
                clip(one_line(flow.name), NAME_WIDTH),
                flow.kind,
                _seconds(flow.timeout_s),
                str(flow.retries),
                ",".join(flow.tags) or "-",
                one_line(flow.persona or "") or "-",
                one_line(reason) or "-",
            ]
        )
    headers = ["SLUG", "NAME", "KIND", "TIMEOUT_S", "RETRIES", "TAGS", "PERSONA", "SKIP/XFAIL"]
    print("\n".join(table(headers, rows, right={3, 4})))
    return OK


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    validate = commands.add_parser("validate", help="check run-set files (exit 4 if any is bad)")
    validate.add_argument("files", nargs="+", metavar="FILE", help="run-set TOML file")
    validate.set_defaults(func=cmd_validate)

    listing = commands.add_parser("list", help="list the flows of a run-set file")
    listing.add_argument("file", metavar="FILE", help="run-set TOML file")
    listing.add_argument("--json", action="store_true", help="print a JSON list instead")
    listing.set_defaults(func=cmd_list)
