"""The xdist controller's own parts: which run-set files it loads, and its worker count."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_runset.xdist.controller import controller_runsets, xdist_worker_count

FLOW = '[[flows]]\nname = "a"\ncommand = ["true"]\n'


def place(root: Path, relative: str, text: str = FLOW) -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_run_sets_below_a_directory_are_found_as_pytest_would_collect_them(
    pytester: pytest.Pytester,
) -> None:
    root = pytester.path
    wanted = [place(root, "run-set.toml"), place(root, "suite/nightly.runset.toml")]
    place(root, ".hidden/run-set.toml")  # norecursedirs: '.*'
    place(root, "build/run-set.toml")  # norecursedirs: 'build'
    place(root, "env/run-set.toml")
    (root / "env" / "pyvenv.cfg").write_text("")  # a virtualenv
    # A run directory: its workspaces hold copies of the run-set, never run-sets to run.
    place(root, "runset-results/r1/flow/workspace/run-set.toml")
    (root / "runset-results" / "r1" / "journal.jsonl").write_text("")
    place(root, "other.toml")
    config = pytester.parseconfigure(str(root))
    found = controller_runsets(config)
    assert sorted(found) == sorted(str(path.resolve()) for path in wanted)


def test_runset_option_files_and_positional_files_are_loaded_once(
    pytester: pytest.Pytester,
) -> None:
    named = place(pytester.path, "checks.toml")  # not a run-set name: only --runset makes it one
    positional = place(pytester.path, "b/run-set.toml")
    config = pytester.parseconfigure("--runset", str(named), str(positional), str(named))
    assert sorted(controller_runsets(config)) == sorted(
        [str(named.resolve()), str(positional.resolve())]
    )


def test_a_broken_collected_run_set_is_left_to_the_workers_collection(
    pytester: pytest.Pytester,
) -> None:
    broken = '[[flows]]\nname = "a"\ncommand = ["true"]\ntypo = 1\n'
    place(pytester.path, "run-set.toml", broken)
    place(pytester.path, "ok.runset.toml", '[[flows]]\nname = "b"\ncommand = ["true"]\n')
    config = pytester.parseconfigure(str(pytester.path))
    # The workers collect it and report its collection error (as for a Python syntax error).
    assert [Path(path).name for path in controller_runsets(config)] == ["ok.runset.toml"]


def test_a_broken_run_set_named_with_runset_is_one_usage_error_line(
    pytester: pytest.Pytester,
) -> None:
    place(pytester.path, "run-set.toml", '[[flows]]\nname = "a"\ncommand = ["true"]\ntypo = 1\n')
    with pytest.raises(pytest.UsageError) as caught:
        pytester.parseconfigure("--runset", str(pytester.path / "run-set.toml"))
    assert "typo" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_the_worker_count_follows_the_tx_specs(pytester: pytest.Pytester) -> None:
    config = pytester.parseconfig()
    config.option.tx = ["3*popen", "popen", "ssh=host//python=python3"]
    assert xdist_worker_count(config) == 5
    config.option.tx = []
    assert xdist_worker_count(config) == 1
