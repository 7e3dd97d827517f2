"""Who reads this session's results, where that changes how flows are told to pytest.

PyCharm builds its test tree from teamcity-messages' flat names with a *serial* tree manager
(whenever pytest-xdist does not run the session): a ``testStarted`` opens a node, and the next
``testStarted`` before that node's end closes it as a *suite*; the test's own failure then lands
on whichever node is open. Flows run concurrently, so telling pytest that each one started
when it was dispatched (``pytest_runtest_logstart``) interleaves them and breaks that tree. For
such a consumer each flow's start is told only with its result, back to back.
"""

from __future__ import annotations

import os

import pytest

from pytest_runset.session.settings import xdist_distributing

# Set on TeamCity agents, and by PyCharm's test runners before pytest starts.
TEAMCITY_ENV = "TEAMCITY_VERSION"


def serial_results(config: pytest.Config) -> bool:
    """Whether results are consumed serially: teamcity-messages reports this session (its
    ``--teamcity`` option or a TeamCity environment) and pytest-xdist does not distribute it."""
    if xdist_distributing(config):
        return False  # PyCharm reads pytest-xdist sessions with its parallel tree manager
    if getattr(config, "_teamcityReporting", None) is not None:
        return True  # what teamcity-messages' pytest_configure sets once it reports
    option = config.option
    if getattr(option, "no_teamcity", 0):
        return False
    return bool(getattr(option, "teamcity", 0)) or TEAMCITY_ENV in os.environ
