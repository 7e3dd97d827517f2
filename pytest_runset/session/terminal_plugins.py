"""Who else draws on the terminal: whether pytest-runset's live status line may be drawn.

The live line (:mod:`.progress`) draws after the reporter's current line and erases itself
before every hook call, which is safe only when the reporter is pytest's own and nobody else
rewrites the line in place. pytest-sugar replaces the reporter and redraws its progress bar on
every result: with both, each redraw of one scrolls the other's. So the live line gives way to
any plugin that replaced pytest's terminal reporter, and to a flow being debugged in the
terminal (:mod:`.debugging`), whose prompt must not be drawn over.
"""

from __future__ import annotations

import pytest

# Plugins known to redraw a line of their own (their registered names).
REDRAWING_PLUGINS = ("sugar", "pytest_sugar")
# Set for a session whose one flow runs on the terminal under the debugger (debugging.py).
DEBUGGING = pytest.StashKey[bool]()


def live_line_allowed(config: pytest.Config) -> bool:
    """False when pytest-sugar (or any plugin that replaced pytest's terminal reporter) is
    active, or a flow runs under the debugger; the live line must then stay off."""
    manager = config.pluginmanager
    if config.stash.get(DEBUGGING, False):
        return False
    if any(manager.hasplugin(name) for name in REDRAWING_PLUGINS):
        return False
    terminal = manager.get_plugin("terminalreporter")
    return terminal is None or type(terminal) is pytest.TerminalReporter
