"""SIGHUP for a whole pytest session: the terminal is gone, and every write to it would fail
with EIO, pytest's own summary included. What went to the terminal now goes nowhere, so that
the run still ends in order: report written, processes stopped, exit code 2."""

from __future__ import annotations

import contextlib
import os
from typing import Any

import pytest

from pytest_runset.engine.interrupts import leave_dead_terminal


def silence_dead_terminal(config: pytest.Config) -> None:
    """Point pytest's terminal writer, and the descriptors its output capture keeps for the
    terminal, at /dev/null (private attributes, looked up defensively)."""
    saved: list[int] = []
    capture: Any = config.pluginmanager.get_plugin("capturemanager")
    global_capturing = getattr(capture, "_global_capturing", None)
    for stream in ("out", "err"):
        target = getattr(getattr(global_capturing, stream, None), "targetfd_save", None)
        if isinstance(target, int):
            saved.append(target)
    leave_dead_terminal(saved)
    terminal: Any = config.pluginmanager.get_plugin("terminalreporter")
    writer = getattr(terminal, "_tw", None)
    if writer is not None and hasattr(writer, "_file"):
        with contextlib.suppress(OSError):
            writer._file = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115 - for good
