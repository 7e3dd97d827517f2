"""``merge``: reports of shards (or of sessions of one queue) joined into one report."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pytest_runset.cli.common import FAILED, OK, Usage, counts, one_line, read_report


def cmd_merge(args: argparse.Namespace) -> int:
    from pytest_runset.results.html import html_path_for
    from pytest_runset.results.jsonfile import write_json_atomic
    from pytest_runset.results.merge import MergeError, Shard, check_report, merge_reports
    from pytest_runset.results.report import write_html_beside

    out = Path(args.output)
    if html_path_for(out) == out:
        raise Usage(f"-o {out}: name the JSON report to write (its .html page goes beside it)")
    shards: list[Shard] = []
    seen: dict[Path, str] = {}
    for number, file in enumerate(args.reports, start=1):
        path = Path(file)
        report = read_report(path)
        try:
            check_report(path, report)
        except MergeError as exc:
            raise Usage(str(exc)) from None
        real = path.resolve()
        if real in seen:
            raise Usage(f"{file}: given twice (also as {seen[real]})")
        seen[real] = file
        shards.append(Shard(path=path, report=report, number=number))
    if out.resolve() in seen:
        raise Usage(f"-o {out}: is one of the reports being merged; choose another file")
    try:
        merged = merge_reports(shards, out, force=args.force)
    except MergeError as exc:
        raise Usage(str(exc)) from None
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(out, merged.report)
    except OSError as exc:
        raise Usage(f"-o {out}: cannot write: {exc.strerror or exc}") from None
    for line in [*merged.notes, *merged.conflicts]:
        print(one_line(line), file=sys.stderr)
    page = write_html_beside(merged.report, out)
    print(
        f"merged {len(shards)} report{'' if len(shards) == 1 else 's'}: "
        f"{counts(merged.report)}, "
        f"status {merged.report['status']} -> {one_line(str(out))}"
        + (f" (and {one_line(str(html_path_for(out)))})" if page else "")
    )
    if merged.conflicts:
        count = len(merged.conflicts)
        print(f"{count} conflict{'' if count == 1 else 's'} between the reports", file=sys.stderr)
        return FAILED
    return OK


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    merge = commands.add_parser(
        "merge",
        help="combine reports of shards of one run-set into one report (exit 1 on conflicts)",
    )
    merge.add_argument("reports", nargs="+", metavar="REPORT", help="a shard's report.json")
    merge.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="OUT",
        help="the merged report.json to write (its HTML page is written beside it)",
    )
    merge.add_argument(
        "--force",
        action="store_true",
        help="merge reports of different run-sets (or of changed run-set files) anyway",
    )
    merge.set_defaults(func=cmd_merge)
