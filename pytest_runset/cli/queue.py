"""``queue URL NAME [--wait]``: a shared queue's progress, and waiting for its end.

The final job of a CI pipeline runs ``pytest-runset queue "$RUNSET_COORDINATOR" "$PIPELINE"
--wait``: it returns once nothing waits or runs in any session (a lost session's flows have
come back and ended), with exit code 0 when every flow passed (or was skipped / xfailed), 1
otherwise. redis-py is needed (``pytest-runset[redis]``); pytest is not.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import TYPE_CHECKING

from pytest_runset.cli.common import FAILED, OK, Usage, one_line

if TYPE_CHECKING:
    from pytest_runset.resources.shared_queue import QueueProgress

# Statuses a queue may end with and still be a success.
PASSING = frozenset({"passed", "skipped", "xfailed", "xpassed"})
POLL_S = 1.0


def describe(info: QueueProgress) -> str:
    """One line of progress."""
    if not info["seeded"]:
        return f"queue {info['name']}: not seeded yet"
    statuses = ", ".join(f"{n} {s}" for s, n in sorted(info["statuses"].items()))
    sessions = ", ".join(
        f"{s['host']} ({s['role']}, {'alive' if s['alive'] else 'gone'})" for s in info["sessions"]
    )
    return one_line(
        f"queue {info['name']} ({info['runset']}): {info['total']} flows, {info['done']} done"
        + (f" ({statuses})" if statuses else "")
        + f", {info['running']} running, {info['pending']} waiting"
        + (f"; sessions: {sessions}" if sessions else "")
        + ("; ended" if info["ended"] else "")
    )


def cmd_queue(args: argparse.Namespace) -> int:
    from pytest_runset.resources.coordinator import (
        CoordinatorError,
        connect,
        parse_url,
        redis_errors,
    )
    from pytest_runset.resources.shared_queue import SharedQueue

    try:
        coordinator = connect(parse_url(args.url, "URL"), ttl=1.0)
        queue = SharedQueue(coordinator, args.name)
    except CoordinatorError as exc:
        raise Usage(str(exc)) from None
    deadline = time.monotonic() + args.timeout if args.timeout else None
    shown = ""
    try:
        while True:
            try:
                progress = queue.progress()
            except redis_errors() as exc:
                raise Usage(coordinator.describe(exc)) from None
            line = describe(progress)
            if line != shown:
                print(line, flush=True)
                shown = line
            if not args.wait:
                if not progress["seeded"]:
                    return FAILED
                break
            if progress["ended"]:
                break
            if deadline is not None and time.monotonic() >= deadline:
                print(f"queue {args.name}: not done after {args.timeout:g}s", file=sys.stderr)
                return FAILED
            time.sleep(POLL_S)
    finally:
        coordinator.close()
    if not progress["ended"]:
        return OK
    failing = {s: n for s, n in progress["statuses"].items() if s not in PASSING}
    return FAILED if failing or progress["done"] < progress["total"] else OK


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    queue = commands.add_parser(
        "queue",
        help="show a shared queue's progress; --wait: wait for its end (exit 0 all passed)",
    )
    queue.add_argument("url", metavar="URL", help="the coordinator (redis:// or rediss://)")
    queue.add_argument("name", metavar="NAME", help="the queue's name (--runset-queue)")
    queue.add_argument(
        "--wait",
        action="store_true",
        help="wait until nothing waits or runs in any session; exit 0 when every flow passed",
    )
    queue.add_argument(
        "--timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="with --wait: give up (exit 1) after this long",
    )
    queue.set_defaults(func=cmd_queue)
