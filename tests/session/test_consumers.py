"""When results are consumed serially (PyCharm's serial tree): teamcity-messages reports the
session and pytest-xdist does not run it."""

from __future__ import annotations

import pytest

from pytest_runset.session.consumers import TEAMCITY_ENV, serial_results

pytest.importorskip("teamcity")


@pytest.fixture(autouse=True)
def no_teamcity_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TEAMCITY_ENV, raising=False)


def test_teamcity_option_or_environment_means_serial(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert not serial_results(pytester.parseconfigure())
    assert serial_results(pytester.parseconfigure("--teamcity"))
    monkeypatch.setenv(TEAMCITY_ENV, "LOCAL")  # what PyCharm's runners set
    assert serial_results(pytester.parseconfigure())
    assert not serial_results(pytester.parseconfigure("--no-teamcity"))


def test_not_serial_inside_xdist(pytester: pytest.Pytester) -> None:
    config = pytester.parseconfigure("--teamcity")
    config.workerinput = {}  # type: ignore[attr-defined]
    assert not serial_results(config)
