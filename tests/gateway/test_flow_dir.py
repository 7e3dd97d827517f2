"""A flow directory opened once: the plugin's files replace what a flow planted and never go
through a link, whatever the flow did to its directory. Real directories, links and FIFOs."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import execnet
import pytest

import pytest_runset.gateway.worker
from conftest import flow_spec
from pytest_runset.gateway import flow_dir
from pytest_runset.gateway.flow_dir import FlowDir, UnsafeName, attempt_dir, split_name


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    """Somewhere outside the flow directory that must never change."""
    outside = tmp_path / "victim"
    outside.mkdir()
    (outside / "precious.txt").write_text("keep me\n")
    return outside


@pytest.fixture
def opened(tmp_path: Path) -> Iterator[FlowDir]:
    handle = flow_dir.open_for_attempt(str(tmp_path / "run" / "flow"))
    yield handle
    flow_dir.release(handle.path)


def _untouched(victim: Path) -> None:
    assert sorted(p.name for p in victim.iterdir()) == ["precious.txt"]
    assert (victim / "precious.txt").read_text() == "keep me\n"


def test_a_link_planted_at_a_name_is_replaced_and_its_target_untouched(
    opened: FlowDir, victim: Path
) -> None:
    here = Path(opened.path)
    for name in ("result.json", "failure.png", "trace.zip"):
        (here / name).symlink_to(victim / "precious.txt")
        opened.write_bytes(name, b"ours")
        assert not (here / name).is_symlink()
        assert (here / name).read_bytes() == b"ours"
    _untouched(victim)
    # No temp file is left behind.
    assert sorted(p.name for p in here.iterdir()) == ["failure.png", "result.json", "trace.zip"]


def test_a_link_on_the_way_to_a_subdirectory_is_refused(opened: FlowDir, victim: Path) -> None:
    (Path(opened.path) / "shots").symlink_to(victim)
    with pytest.raises(OSError, match="is a symbolic link, not followed"):
        opened.write_bytes("shots/list.png", b"png")
    _untouched(victim)
    opened.write_bytes("more/shots/list.png", b"png")
    assert (Path(opened.path) / "more" / "shots" / "list.png").read_bytes() == b"png"


def test_a_directory_swapped_for_a_link_is_still_written_in_the_original(
    opened: FlowDir, victim: Path
) -> None:
    path = Path(opened.path)
    moved = path.with_name("flow-moved")
    path.rename(moved)
    path.symlink_to(victim, target_is_directory=True)
    with attempt_dir(str(path)) as directory:
        assert directory is opened
        directory.write_bytes("result.json", b"{}")
    _untouched(victim)
    assert (moved / "result.json").read_bytes() == b"{}"
    problem = opened.problem()
    assert problem is not None
    assert f"the flow replaced its directory {path} (the original is now {moved})" in problem
    # Opening the path afresh refuses the link.
    with pytest.raises(OSError, match="is a symbolic link, not followed"):
        FlowDir.open(str(path))


def test_a_removed_directory_is_written_nowhere(opened: FlowDir, victim: Path) -> None:
    path = Path(opened.path)
    path.rmdir()
    path.symlink_to(victim, target_is_directory=True)
    with pytest.raises(FileNotFoundError):
        opened.write_bytes("result.json", b"{}")
    _untouched(victim)
    problem = opened.problem()
    assert problem is not None
    assert problem.startswith(f"the flow removed its directory {path}")


def test_a_directory_left_in_place_has_no_problem(opened: FlowDir) -> None:
    opened.write_bytes("result.json", b"{}")
    assert opened.problem() is None


def test_appending_and_reading_refuse_links_and_special_files(
    opened: FlowDir, victim: Path
) -> None:
    here = Path(opened.path)
    (here / "stdout.log").symlink_to(victim / "precious.txt")
    with pytest.raises(OSError, match="Too many levels of symbolic links"):
        opened.open_append("stdout.log")
    with pytest.raises(OSError, match="Too many levels of symbolic links"):
        opened.open_read("stdout.log")
    os.mkfifo(here / "fifo")
    with pytest.raises(OSError, match="not a regular file"):
        opened.open_read("fifo")  # refused at once, not blocking
    with opened.open_append("stderr.log") as log:
        log.write(b"line\n")
    with opened.open_read("stderr.log") as log:
        assert log.read() == b"line\n"
    _untouched(victim)


def test_files_are_listed_without_following_links(opened: FlowDir, victim: Path) -> None:
    here = Path(opened.path)
    (here / "a.png").write_bytes(b"")
    (here / "shots").mkdir()
    (here / "shots" / "b.png").write_bytes(b"")
    (here / ".hidden").mkdir()
    (here / ".hidden" / "c").write_bytes(b"")
    (here / "elsewhere").symlink_to(victim, target_is_directory=True)
    assert opened.files() == ["a.png", "shots/b.png"]


@pytest.mark.parametrize("name", ["", "/etc/passwd", "../x", "a/../../x", "..", "."])
def test_names_that_leave_the_directory_are_refused(name: str) -> None:
    with pytest.raises(UnsafeName):
        split_name(name)


def test_a_link_in_place_of_the_directory_is_never_opened(tmp_path: Path, victim: Path) -> None:
    link = tmp_path / "flow"
    link.symlink_to(victim, target_is_directory=True)
    with pytest.raises(OSError, match="is a symbolic link, not followed"):
        flow_dir.open_for_attempt(str(link))
    assert flow_dir.opened(str(link)) is None
    _untouched(victim)


# -- through a real worker gateway ----------------------------------------------------------------

CALLABLES = """
import os, subprocess, sys

def swap(flow_dir, env):
    os.rename(flow_dir, str(flow_dir) + ".moved")
    os.symlink(env["VICTIM"], flow_dir)
    print("after the swap", env["SECRET_VALUE"])
    subprocess.run(["sh", "-c", "echo child $SECRET_VALUE >&2"], check=True)
"""


@pytest.fixture
def worker() -> Iterator[Any]:
    gateway = execnet.makegateway("popen")
    channel = gateway.remote_exec(pytest_runset.gateway.worker)
    channel.send({"sys_path": []})
    kind, _ = channel.receive(60)
    assert kind == "ready"
    yield channel
    gateway.exit()


def _finished(channel: Any) -> dict[str, Any]:
    while True:
        kind, data = channel.receive(60)
        if kind == "finished":
            result: dict[str, Any] = data
            return result


def _command(tmp_path: Path, victim: Path, script: str) -> dict[str, Any]:
    cookie = f"rs-test-flowdir-{uuid.uuid4().hex}"
    spec = flow_spec(tmp_path, 1, cookie, ["sh", "-c", script], timeout=60, grace=1)
    spec["env"]["VICTIM"] = str(victim)
    return spec


def test_a_command_that_swaps_its_directory_for_a_link_writes_nothing_there(
    worker: Any, tmp_path: Path, victim: Path
) -> None:
    script = 'mv "$RUNSET_FLOW_DIR" "$RUNSET_FLOW_DIR.moved"; ln -s "$VICTIM" "$RUNSET_FLOW_DIR"'
    spec = _command(tmp_path, victim, script + "; echo after the swap")
    worker.send(("run", spec))
    result = _finished(worker)
    _untouched(victim)
    moved = Path(spec["flow_dir"] + ".moved")
    assert json.loads((moved / "result.json").read_text()) == result
    assert (moved / "stdout.log").read_text() == "after the swap\n"
    assert result["status"] == "passed"
    assert any(
        warning.startswith(f"the flow replaced its directory {spec['flow_dir']} (the original")
        for warning in result["warnings"]
    ), result["warnings"]


def test_a_callable_that_swaps_its_directory_writes_nothing_there_and_masks_its_output(
    worker: Any, tmp_path: Path, victim: Path
) -> None:
    (tmp_path / "swapflows.py").write_text(CALLABLES)
    flow = tmp_path / "swap"
    secret = f"s3cr3t-{uuid.uuid4().hex[:8]}"
    spec = {
        "flow_id": f"rs-test-flowdir-{uuid.uuid4().hex}",
        "kind": "callable",
        "name": "swap",
        "slug": "swap",
        "attempt": 1,
        "cwd": str(tmp_path),
        "env": {"VICTIM": str(victim), "SECRET_VALUE": secret},
        "flow_dir": str(flow),
        "run_dir": str(tmp_path),
        "report_path": str(flow / "flow-report.json"),
        "timeout_s": 60,
        "kill_grace_s": 1,
        "secrets": [secret],
        "callable": "swapflows:swap",
        "params": ["flow_dir", "env"],
        "root": str(tmp_path),
        "base_url": "",
        "browser": None,
    }
    worker.send(("run", spec))
    result = _finished(worker)
    assert result["status"] == "passed", result
    _untouched(victim)
    moved = Path(f"{flow}.moved")
    assert (moved / "result.json").exists()
    assert (moved / "stdout.log").read_text() == "after the swap ***\n"
    assert (moved / "stderr.log").read_text() == "child ***\n"
    assert any("replaced its directory" in warning for warning in result["warnings"])


def test_a_flow_that_removes_its_directory_gets_nothing_written_elsewhere(
    worker: Any, tmp_path: Path, victim: Path
) -> None:
    spec = _command(
        tmp_path, victim, 'rm -rf "$RUNSET_FLOW_DIR"; ln -s "$VICTIM" "$RUNSET_FLOW_DIR"'
    )
    worker.send(("run", spec))
    result = _finished(worker)
    _untouched(victim)
    assert any(
        warning.startswith(f"the flow removed its directory {spec['flow_dir']}")
        for warning in result["warnings"]
    ), result["warnings"]
    assert any(w.startswith("could not write result.json") for w in result["warnings"])


def test_a_link_planted_at_result_json_is_replaced(
    worker: Any, tmp_path: Path, victim: Path
) -> None:
    spec = _command(tmp_path, victim, 'ln -s "$VICTIM/precious.txt" "$RUNSET_FLOW_DIR/result.json"')
    worker.send(("run", spec))
    result = _finished(worker)
    _untouched(victim)
    written = Path(spec["flow_dir"]) / "result.json"
    assert not written.is_symlink()
    assert json.loads(written.read_text()) == result
    assert result["warnings"] == []
