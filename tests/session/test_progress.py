"""The live status line: drawn and erased without touching pytest's lines, on TTYs only.

Unit tests drive :class:`LiveStatus` against a small terminal model; the end-to-end tests run
pytest on a real pseudo-terminal (and, for the non-TTY side, through pytester's pipes).
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import signal
import struct
import sys
import termios
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest

from pytest_runset.session.progress import (
    Counts,
    LiveStatus,
    live_status,
    longest_running,
    status_texts,
)

_COLOUR = re.compile(r"\x1b\[[0-9;]*m")
_CONTROL = re.compile(r"\x1b\[(\d*)([A-Za-z])")


class Screen:
    """Just enough of a terminal: printable text, CR, LF, erase-to-end (K), cursor back (D)."""

    def __init__(self) -> None:
        self.lines: list[list[str]] = [[]]
        self.row = 0
        self.col = 0

    def feed(self, raw: str) -> None:
        text = _COLOUR.sub("", raw)
        index = 0
        while index < len(text):
            char = text[index]
            if char == "\x1b":
                match = _CONTROL.match(text, index)
                assert match is not None, f"unexpected escape {text[index : index + 8]!r}"
                amount = int(match.group(1) or 1)
                if match.group(2) == "K":
                    del self.lines[self.row][self.col :]
                elif match.group(2) == "D":
                    self.col = max(0, self.col - amount)
                else:
                    raise AssertionError(f"unexpected escape {match.group(0)!r}")
                index = match.end()
                continue
            if char == "\r":
                self.col = 0
            elif char == "\n":
                self.row += 1
                self.col = 0
                if self.row == len(self.lines):
                    self.lines.append([])
            else:
                line = self.lines[self.row]
                if self.col < len(line):
                    line[self.col] = char
                else:
                    line.extend(" " * (self.col - len(line)))
                    line.append(char)
                self.col += 1
            index += 1

    @property
    def text(self) -> list[str]:
        return ["".join(line).rstrip() for line in self.lines]


class FakeReporter:
    """The reporter's side of the interface: its own line so far, and the screen width."""

    def __init__(self, width: int = 80) -> None:
        self.screen = Screen()
        self.line = ""
        self.width = width
        self.raw: list[str] = []

    def write(self, text: str) -> None:
        """What pytest writes (tracked by its writer)."""
        self.screen.feed(text)
        self.line = (self.line + text).rsplit("\n", 1)[-1]

    def write_raw(self, text: str) -> None:
        """What the status writes (not tracked)."""
        self.raw.append(text)
        self.screen.feed(text)

    def status(self) -> LiveStatus:
        return LiveStatus(self.write_raw, column=lambda: len(self.line), width=lambda: self.width)


COUNTS = Counts(running=2, queued=5, done=3, total=10)


def test_status_texts_say_running_queued_and_done() -> None:
    assert status_texts(COUNTS) == [
        "runset: 2 running / 5 queued / 3 of 10 done",
        "2 running / 5 queued / 3/10 done",
        "2 running / 5 queued",
    ]


def test_status_on_an_empty_line_is_erased_back_to_an_empty_line() -> None:
    reporter = FakeReporter()
    reporter.write("collected 10 items\n")
    status = reporter.status()
    status.show(COUNTS)
    assert reporter.screen.text[-1] == "runset: 2 running / 5 queued / 3 of 10 done"
    assert status.visible
    status.hide()
    assert reporter.screen.text == ["collected 10 items", ""]
    assert reporter.screen.col == 0
    assert not status.visible
    reporter.write("[gw0] [ 10%] PASSED run-set.toml::login 0.20s\n")
    assert reporter.screen.text[-2] == "[gw0] [ 10%] PASSED run-set.toml::login 0.20s"


def test_status_after_dots_is_erased_back_to_the_dots() -> None:
    reporter = FakeReporter()
    reporter.write("run-set.toml ..F")
    status = reporter.status()
    status.show(COUNTS)
    assert reporter.screen.text == ["run-set.toml ..F  runset: 2 running / 5 queued / 3 of 10 done"]
    status.hide()
    assert reporter.screen.text == ["run-set.toml ..F"]
    assert reporter.screen.col == len("run-set.toml ..F")
    reporter.write(".")
    assert reporter.screen.text == ["run-set.toml ..F."]


def test_new_counts_redraw_in_place_and_the_same_counts_write_nothing() -> None:
    reporter = FakeReporter()
    reporter.write("run-set.toml .")
    status = reporter.status()
    status.show(COUNTS)
    writes = len(reporter.raw)
    status.show(COUNTS)
    assert len(reporter.raw) == writes
    status.show(Counts(running=1, queued=5, done=4, total=10))
    assert reporter.screen.text == ["run-set.toml .  runset: 1 running / 5 queued / 4 of 10 done"]
    status.hide()
    status.hide()
    assert reporter.screen.text == ["run-set.toml ."]


def test_a_crowded_line_gets_a_shorter_status_or_none() -> None:
    reporter = FakeReporter(width=50)
    reporter.write("run-set.toml ..")
    status = reporter.status()
    status.show(COUNTS)
    # 34 columns left (one kept spare): the middle form fits exactly.
    assert reporter.screen.text == ["run-set.toml ..  2 running / 5 queued / 3/10 done"]
    status.hide()
    reporter.write("." * 30)
    status.show(COUNTS)
    assert reporter.screen.text == ["run-set.toml .." + "." * 30]
    assert not status.visible


def test_live_status_is_off_without_a_tty_or_when_disabled(pytester: pytest.Pytester) -> None:
    # pytester's in-process terminal writes to a capture buffer: not a TTY.
    config = pytester.parseconfigure()
    assert live_status(config) is None
    pytester.makeini("[pytest]\nrunset_live_status = false\n")
    assert pytester.parseconfigure().getini("runset_live_status") is False


# -- end to end -----------------------------------------------------------------------------
FLOWS = """
[runset]
name = "progress"
[[flows]]
name = "alpha"
command = ["sleep", "0.5"]
[[flows]]
name = "beta"
command = ["sh", "-c", "sleep 0.5; exit 1"]
[[flows]]
name = "gamma"
command = ["sleep", "0.5"]
[[flows]]
name = "delta"
command = ["sh", "-c", "exit 77"]
"""
STATUS = re.compile(r"\d+ running / \d+ queued")


def run_on_pty(cwd: Path, *args: str, columns: int = 120, timeout: float = 120.0) -> str:
    """Run ``python -m pytest args`` with a pseudo-terminal as stdin/stdout/stderr."""
    env = {**os.environ, "TERM": "xterm", "COLUMNS": str(columns), "LINES": "40"}
    env.pop("NO_COLOR", None)
    # pytest-sugar, when installed, takes over a terminal's output (and the live line gives
    # way to it): these tests read pytest's own.
    argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:sugar", *args]
    pid, fd = pty.fork()
    if pid == 0:  # the child: pytest on the terminal
        try:
            os.chdir(cwd)
            os.execve(sys.executable, argv, env)
        finally:
            os._exit(127)
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 1.0)
            if not ready:
                continue
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        if time.monotonic() >= deadline:
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(fd)
    return b"".join(chunks).decode("utf-8", "replace")


def test_tty_shows_a_live_status_that_leaves_pytests_lines_intact(
    pytester: pytest.Pytester, write_runset: Callable[..., Path]
) -> None:
    write_runset(FLOWS)
    raw = run_on_pty(pytester.path, "--runset", "run-set.toml", "--runset-workers", "2")
    drawn = set(re.findall(r"runset: \d+ running / \d+ queued / \d+ of 4 done", raw))
    assert "runset: 0 running / 0 queued / 4 of 4 done" in drawn, raw
    assert any(not status.startswith("runset: 0 running") for status in drawn), drawn
    screen = Screen()
    screen.feed(raw)
    final = screen.text
    assert not [line for line in final if STATUS.search(line)], final
    dots = [line for line in final if line.startswith("run-set.toml ")]
    assert len(dots) == 1, final
    assert re.fullmatch(r"run-set\.toml [.Fs]{4} +\[100%\]", dots[0]), dots
    assert sorted(dots[0].split()[1]) == sorted("..Fs")
    assert any(re.match(r"=+ 1 failed, 2 passed, 1 skipped in ", line) for line in final)


def test_tty_verbose_prints_one_line_per_flow_with_worker_status_and_duration(
    pytester: pytest.Pytester, write_runset: Callable[..., Path]
) -> None:
    write_runset(FLOWS)
    raw = run_on_pty(pytester.path, "--runset", "run-set.toml", "--runset-workers", "2", "-v")
    assert STATUS.search(raw), raw
    screen = Screen()
    screen.feed(raw)
    final = screen.text
    assert not [line for line in final if STATUS.search(line)], final
    # Result lines, not the "[gw1] runset worker" header over a failure's details.
    results = [line for line in final if re.match(r"\[gw\d\] \[", line)]
    pattern = r"\[gw[01]\] \[ *\d+%\] (PASSED|FAILED|SKIPPED) run-set\.toml::(\w+) \d+\.\d\ds"
    assert len(results) == 4, final
    seen = {}
    for line in results:
        match = re.fullmatch(pattern, line)
        assert match is not None, line
        seen[match.group(2)] = match.group(1)
    assert seen == {"alpha": "PASSED", "beta": "FAILED", "gamma": "PASSED", "delta": "SKIPPED"}


def test_tty_status_can_be_turned_off(
    pytester: pytest.Pytester, write_runset: Callable[..., Path]
) -> None:
    write_runset(FLOWS)
    raw = run_on_pty(
        pytester.path,
        "--runset",
        "run-set.toml",
        "--runset-workers",
        "2",
        "-o",
        "runset_live_status=false",
    )
    assert "1 failed, 2 passed, 1 skipped" in raw
    assert not STATUS.search(raw)
    assert "\x1b[K" not in raw


@pytest.mark.parametrize("verbosity", [(), ("-v",), ("--color=yes",)])
def test_no_status_ever_when_stdout_is_not_a_tty(
    pytester: pytest.Pytester, write_runset: Callable[..., Path], verbosity: tuple[str, ...]
) -> None:
    write_runset(FLOWS)
    result = pytester.runpytest_subprocess(
        "--runset", "run-set.toml", "--runset-workers", "2", *verbosity
    )
    assert result.ret == 1
    output = result.stdout.str()
    assert not STATUS.search(output)
    assert "\x1b[K" not in output
    assert "\r" not in output
    if verbosity == ("-v",):
        result.stdout.re_match_lines(
            [r"\[gw[01]\] \[ *\d+%\] PASSED run-set\.toml::alpha \d+\.\d\ds$"], consecutive=False
        )
        result.stdout.re_match_lines(
            [r"\[gw[01]\] \[ *\d+%\] SKIPPED run-set\.toml::delta \d+\.\d\ds$"]
        )
    elif not verbosity:
        result.stdout.re_match_lines([r"run-set\.toml [.Fs]{4} +\[100%\]$"])


# -- the longest-running flows, by name --------------------------------------------------------
NAMED = Counts(3, 5, 3, 10, longest=(("login", 12), ("checkout", 8), ("search", 0)))


def test_the_status_names_the_longest_running_flows_and_drops_names_first() -> None:
    assert status_texts(NAMED) == [
        "runset: 3 running / 5 queued / 3 of 10 done / login 12s, checkout 8s, search 0s",
        "runset: 3 running / 5 queued / 3 of 10 done / login 12s, checkout 8s, \u2026",
        "runset: 3 running / 5 queued / 3 of 10 done / login 12s, \u2026",
        "runset: 3 running / 5 queued / 3 of 10 done",
        "3 running / 5 queued / 3/10 done",
        "3 running / 5 queued",
    ]


@pytest.mark.parametrize(
    ("width", "shown"),
    [
        # One column is kept spare: a line filled to the last column wraps on some terminals.
        (80, "runset: 3 running / 5 queued / 3 of 10 done / login 12s, checkout 8s, search 0s"),
        (79, "runset: 3 running / 5 queued / 3 of 10 done / login 12s, checkout 8s, \u2026"),
        (60, "runset: 3 running / 5 queued / 3 of 10 done / login 12s, \u2026"),
        (58, "runset: 3 running / 5 queued / 3 of 10 done"),
    ],
)
def test_the_named_status_fits_the_terminal_width(width: int, shown: str) -> None:
    reporter = FakeReporter(width=width)
    status = reporter.status()
    status.show(NAMED)
    assert reporter.screen.text == [shown]
    assert len(shown) < width


def test_elapsed_times_and_odd_names_are_short_and_harmless() -> None:
    counts = Counts(2, 0, 0, 2, longest=(("a\x1b[2J" + "b" * 40, 3725), ("pay", 185)))
    assert status_texts(counts)[0] == (
        "runset: 2 running / 0 queued / 0 of 2 done / "
        "a?[2Jbbbbbbbbbbbbbbbbbb\u2026 1h02m, pay 3m05s"
    )


def test_longest_running_orders_flows_by_time_on_their_worker() -> None:
    flows = [
        SimpleNamespace(flow=SimpleNamespace(name=name), dispatched_at=started)
        for name, started in (("quick", 99.5), ("login", 88.0), ("checkout", 92.2), ("b", 92.9))
    ]
    assert longest_running(flows, now=100.0) == (  # type: ignore[arg-type]
        ("login", 12),
        ("b", 7),
        ("checkout", 7),
        ("quick", 0),
    )


LONG_FLOWS = """
[[flows]]
name = "slow checkout"
command = ["sleep", "3"]
[[flows]]
name = "quick"
command = ["true"]
"""


def test_tty_status_names_the_running_flow_with_its_time(
    pytester: pytest.Pytester, write_runset: Callable[..., Path]
) -> None:
    write_runset(LONG_FLOWS)
    raw = run_on_pty(pytester.path, "--runset", "run-set.toml", "--runset-workers", "2")
    seconds = {int(s) for s in re.findall(r" / slow checkout (\d)s", raw)}
    # Redrawn as the seconds pass, not only when a flow starts or ends.
    assert {1, 2} <= seconds, raw
    screen = Screen()
    screen.feed(raw)
    assert not [line for line in screen.text if "slow checkout" in line], screen.text
