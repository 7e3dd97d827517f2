"""The session's settings: resolved once in pytest_configure, kept in config.stash, read by
every layer above the engine (never through plugin.py)."""

from __future__ import annotations

import pytest

from pytest_runset.session.settings import (
    FLOW_EXECUTOR,
    SETTINGS,
    Settings,
    is_runset_path,
    report_paths,
    settings,
)


def test_options_and_ini_settings_are_resolved_once_into_the_stash(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini("[pytest]\nrunset_backstop_margin = 2.5\nrunset_max_restarts = 3\n")
    config = pytester.parseconfigure(
        "--runset-timeout",
        "1m",
        "--runset-retries",
        "2",
        "--runset-global-timeout",
        "90s",
        "--runset-fail-on-flaky",
    )
    assert config.stash[SETTINGS] == Settings(
        timeout_override=60.0,
        retries_override=2,
        max_restarts=3,
        backstop_margin=2.5,
        global_timeout=90.0,
        fail_on_flaky=True,
    )
    assert settings(config) is config.stash[SETTINGS]


def test_without_options_nothing_is_overridden(pytester: pytest.Pytester) -> None:
    config = pytester.parseconfigure()
    resolved = config.stash[SETTINGS]
    assert resolved.timeout_override is None
    assert resolved.retries_override is None
    assert resolved.max_restarts is None
    assert resolved.global_timeout is None
    assert resolved.backstop_margin == 10.0  # the ini default
    assert report_paths(config) == []


@pytest.mark.parametrize(
    ("ini", "message"),
    [
        (
            "runset_max_restarts = many",
            "ini option runset_max_restarts = 'many': expected a number",
        ),
        ("runset_backstop_margin = -1", "ini option runset_backstop_margin = '-1': must not be"),
    ],
)
def test_a_bad_ini_number_is_a_usage_error(
    pytester: pytest.Pytester, ini: str, message: str
) -> None:
    pytester.makeini(f"[pytest]\n{ini}\n")
    with pytest.raises(pytest.UsageError, match=message.replace("(", r"\(")):
        pytester.parseconfigure()


def test_negative_retries_are_a_usage_error(pytester: pytest.Pytester) -> None:
    with pytest.raises(pytest.UsageError, match="--runset-retries: must not be negative"):
        pytester.parseconfigure("--runset-retries", "-1")


def test_flow_items_find_their_executor_in_the_stash_not_by_import(
    pytester: pytest.Pytester,
) -> None:
    config = pytester.parseconfigure()
    executor = config.stash[FLOW_EXECUTOR]
    assert callable(executor.setup)
    assert callable(executor.call)


@pytest.mark.parametrize(
    ("name", "collected"),
    [
        ("run-set.toml", True),
        ("run-set-nightly.toml", True),
        ("smoke.runset.toml", True),
        ("pyproject.toml", False),
        ("runset.toml", False),
    ],
)
def test_run_set_files_are_recognised_by_name(name: str, collected: bool) -> None:
    from pathlib import Path

    assert is_runset_path(Path(name)) is collected


def test_an_empty_backstop_margin_means_the_default_not_zero(pytester: pytest.Pytester) -> None:
    config = pytester.parseconfigure("-o", "runset_backstop_margin=")
    assert config.stash[SETTINGS].backstop_margin == 10.0
    config = pytester.parseconfigure("-o", "runset_backstop_margin=0")
    assert config.stash[SETTINGS].backstop_margin == 0.0
