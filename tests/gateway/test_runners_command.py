"""The command runner, called directly: exit codes, signals, logs, timeouts, cancellation and
the flow's own ``$RUNSET_REPORT``. Real processes, real files, real kills."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import processes_with_cookie_prefix, wait_for
from pytest_runset.gateway.proctree import sweep_cookie
from pytest_runset.gateway.runners import Control
from pytest_runset.gateway.runners.command import run

SpecFactory = Callable[..., dict[str, Any]]


@pytest.fixture
def make_spec(tmp_path: Path) -> Iterator[SpecFactory]:
    """Build the plain-data spec the worker would receive (see ``attempt.build_attempt``)."""
    cookies: list[str] = []

    def make(
        command: list[str] | str,
        *,
        shell: bool = False,
        timeout: float = 60.0,
        grace: float = 1.0,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> dict[str, Any]:
        cookie = f"rs-test-cmd-{uuid.uuid4().hex}"
        cookies.append(cookie)
        flow_dir = tmp_path / f"flow-{len(cookies)}"
        flow_dir.mkdir()
        report = flow_dir / "flow-report.json"
        full_env = {
            "RUNSET_FLOW_ID": cookie,
            "RUNSET_FLOW_DIR": str(flow_dir),
            "RUNSET_REPORT": str(report),
            "RUNSET_RUN_DIR": str(tmp_path),
            **(env or {}),
        }
        return {
            "flow_id": cookie,
            "kind": "command",
            "name": "a flow",
            "slug": "a-flow",
            "attempt": 1,
            "command": command,
            "shell": shell,
            "cwd": str(cwd or tmp_path),
            "env": full_env,
            "flow_dir": str(flow_dir),
            "run_dir": str(tmp_path),
            "report_path": str(report),
            "timeout_s": timeout,
            "kill_grace_s": grace,
        }

    yield make
    # Cleanup only (tests assert on their own processes before this runs).
    for cookie in cookies:
        sweep_cookie(cookie)


def _run(spec: dict[str, Any]) -> dict[str, Any]:
    return run(spec, Control(float(spec["timeout_s"])))


def _gone(spec: dict[str, Any]) -> bool:
    return wait_for(lambda: not processes_with_cookie_prefix(spec["flow_id"]), timeout=20)


def _log(spec: dict[str, Any], name: str) -> bytes:
    return (Path(spec["flow_dir"]) / name).read_bytes()


# -- exit codes and signals ------------------------------------------------------------------------


def test_exit_zero_passes(make_spec: SpecFactory) -> None:
    result = _run(make_spec(["true"]))
    assert result["status"] == "passed"
    assert result["exit_code"] == 0
    assert result["message"] == ""


def test_exit_77_is_skipped(make_spec: SpecFactory) -> None:
    result = _run(make_spec(["sh", "-c", "exit 77"]))
    assert result["status"] == "skipped"
    assert result["exit_code"] == 77


def test_nonzero_exit_fails_with_the_last_stderr_line(make_spec: SpecFactory) -> None:
    spec = make_spec(["sh", "-c", "echo early >&2; echo '  the reason  ' >&2; echo >&2; exit 3"])
    result = _run(spec)
    assert result["status"] == "failed"
    assert result["exit_code"] == 3
    assert result["message"] == "exit code 3: the reason"
    assert "early" in result["stderr_tail"]
    assert "the reason" in result["stderr_tail"]


def test_nonzero_exit_without_stderr(make_spec: SpecFactory) -> None:
    result = _run(make_spec(["sh", "-c", "exit 1"]))
    assert result["status"] == "failed"
    assert result["message"] == "exit code 1"


def test_stderr_tail_is_bounded(make_spec: SpecFactory) -> None:
    spec = make_spec(
        ["sh", "-c", "i=0; while [ $i -lt 500 ]; do echo line$i >&2; i=$((i+1)); done; exit 2"]
    )
    result = _run(spec)
    tail = result["stderr_tail"].splitlines()
    assert tail[-1] == "line499"
    assert 0 < len(tail) <= 100
    assert "line0" not in tail
    assert result["message"] == "exit code 2: line499"


def test_killed_by_a_signal_names_it(make_spec: SpecFactory) -> None:
    result = _run(make_spec(["sh", "-c", "ulimit -c 0; echo dying >&2; kill -SEGV $$"]))
    assert result["status"] == "failed"
    assert result["exit_code"] == -11
    assert "SIGSEGV" in result["message"]
    assert result["message"].startswith("killed by SIGSEGV")


def test_non_utf8_stderr_is_decoded_with_replacement(make_spec: SpecFactory) -> None:
    result = _run(make_spec(["sh", "-c", r"printf 'bad \377\376 bytes\n' >&2; exit 4"]))
    assert result["status"] == "failed"
    assert "\ufffd" in result["message"]
    assert result["message"].startswith("exit code 4: bad ")
    assert result["message"].endswith(" bytes")
    json.dumps(result)  # still plain, channel-safe data


# -- output, environment, working directory --------------------------------------------------------


def test_stdout_and_stderr_go_to_their_logs(make_spec: SpecFactory) -> None:
    spec = make_spec(["sh", "-c", "echo to-out; echo to-err >&2; cat"])
    result = _run(spec)
    assert result["status"] == "passed"  # stdin is empty: cat does not hang
    assert _log(spec, "stdout.log") == b"to-out\n"
    assert _log(spec, "stderr.log") == b"to-err\n"


def test_huge_output_is_streamed_to_the_file(make_spec: SpecFactory) -> None:
    size = 200_000_000
    spec = make_spec(["head", "-c", str(size), "/dev/zero"])

    def rss_kib(field: str) -> int:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        raise AssertionError(field)

    peak_reset = True
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as handle:
            handle.write("5")  # reset VmHWM to the current RSS
    except OSError:
        peak_reset = False
    before = rss_kib("VmRSS")
    highest = [before]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            highest[0] = max(highest[0], rss_kib("VmRSS"))
            stop.wait(0.01)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        result = _run(spec)
    finally:
        stop.set()
        sampler.join()
    peak = rss_kib("VmHWM") if peak_reset else highest[0]
    assert result["status"] == "passed"
    assert os.path.getsize(Path(spec["flow_dir"]) / "stdout.log") == size
    assert (max(peak, highest[0]) - before) * 1024 < 100_000_000
    os.unlink(Path(spec["flow_dir"]) / "stdout.log")


def test_shell_string_command(make_spec: SpecFactory) -> None:
    spec = make_spec('echo $((6 * 7)) | tr 4 x && test -n "$RUNSET_FLOW_ID"', shell=True)
    result = _run(spec)
    assert result["status"] == "passed", result
    assert _log(spec, "stdout.log") == b"x2\n"


def test_argv_command_is_not_run_through_a_shell(make_spec: SpecFactory) -> None:
    spec = make_spec(["echo", "$HOME", "a;b", "*"])
    assert _run(spec)["status"] == "passed"
    assert _log(spec, "stdout.log") == b"$HOME a;b *\n"


def test_env_is_visible_and_overrides_the_inherited_one(
    make_spec: SpecFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RS_TEST_INHERITED", "from-parent")
    monkeypatch.setenv("RS_TEST_OVERRIDDEN", "from-parent")
    spec = make_spec(
        ["sh", "-c", 'echo "$RS_TEST_INHERITED $RS_TEST_OVERRIDDEN $RS_TEST_FLOW $RUNSET_FLOW_ID"'],
        env={"RS_TEST_OVERRIDDEN": "from-spec", "RS_TEST_FLOW": "flow value"},
    )
    assert _run(spec)["status"] == "passed"
    assert _log(spec, "stdout.log").decode() == (
        f"from-parent from-spec flow value {spec['flow_id']}\n"
    )


def test_cwd_is_honoured(make_spec: SpecFactory, tmp_path: Path) -> None:
    where = tmp_path / "some where"
    where.mkdir()
    spec = make_spec(["pwd", "-P"], cwd=where)
    assert _run(spec)["status"] == "passed"
    assert _log(spec, "stdout.log").decode().strip() == str(where.resolve())


def test_a_missing_command_cannot_start(make_spec: SpecFactory) -> None:
    result = _run(make_spec(["rs-test-no-such-command-xyz", "arg"]))
    assert result["status"] == "error"
    assert result["exit_code"] is None
    assert "cannot start" in result["message"]
    assert "rs-test-no-such-command-xyz" in result["message"]


def test_a_missing_cwd_cannot_start(make_spec: SpecFactory, tmp_path: Path) -> None:
    result = _run(make_spec(["true"], cwd=tmp_path / "absent"))
    assert result["status"] == "error"
    assert "cannot start" in result["message"]


# -- timeouts and cancellation ---------------------------------------------------------------------


def test_timeout_kills_the_process_group(make_spec: SpecFactory) -> None:
    spec = make_spec(["sh", "-c", "sleep 600 & sleep 600"], timeout=1, grace=0.5)
    result = _run(spec)
    assert result["status"] == "timeout"
    assert result["message"] == "timeout after 1s"
    assert _gone(spec)


def test_timeout_message_keeps_fractions(make_spec: SpecFactory) -> None:
    spec = make_spec(["sleep", "600"], timeout=0.5, grace=0.5)
    result = _run(spec)
    assert result["status"] == "timeout"
    assert result["message"] == "timeout after 0.5s"
    assert _gone(spec)


def test_a_term_ignoring_flow_is_killed_after_the_grace(
    make_spec: SpecFactory, tmp_path: Path
) -> None:
    marker = tmp_path / "got-term"
    script = (
        f"trap 'echo yes > \"{marker}\"' TERM; "
        "(trap '' TERM; exec sleep 600) & "
        "while :; do sleep 0.05; done"
    )
    spec = make_spec(["sh", "-c", script], timeout=1, grace=0.5)
    result = _run(spec)
    assert result["status"] == "timeout"
    assert result["message"] == "timeout after 1s"
    assert marker.exists(), "SIGTERM comes first"
    assert result["exit_code"] == -9, "then SIGKILL"
    assert _gone(spec)


def test_a_flow_ignoring_term_entirely_still_dies(make_spec: SpecFactory) -> None:
    spec = make_spec(["sh", "-c", 'trap "" TERM; sleep 600'], timeout=1, grace=0.5)
    result = _run(spec)
    assert result["status"] == "timeout"
    assert result["exit_code"] == -9
    assert _gone(spec)


def test_cancel_from_another_thread_interrupts(make_spec: SpecFactory, tmp_path: Path) -> None:
    started = tmp_path / "started"
    spec = make_spec(["sh", "-c", f'touch "{started}"; sleep 600 & sleep 600'], timeout=600)
    control = Control(600)

    def cancel_when_started() -> None:
        wait_for(started.exists, timeout=30)
        control.cancel("interrupted")

    canceller = threading.Thread(target=cancel_when_started, daemon=True)
    canceller.start()
    result = run(spec, control)
    canceller.join()
    assert result["status"] == "interrupted"
    assert result["message"] == "interrupted"
    assert _gone(spec)


def test_a_grace_cap_shortens_the_kill_grace(make_spec: SpecFactory, tmp_path: Path) -> None:
    started = tmp_path / "started"
    spec = make_spec(
        ["sh", "-c", f'trap "" TERM; touch "{started}"; sleep 600'], timeout=600, grace=300
    )
    control = Control(600)

    def cancel_when_started() -> None:
        wait_for(started.exists, timeout=30)
        control.cancel("controller connection lost", grace_cap=0.2)

    finished = threading.Event()
    outcome: dict[str, Any] = {}

    def target() -> None:
        outcome.update(run(spec, control))
        finished.set()

    threading.Thread(target=cancel_when_started, daemon=True).start()
    threading.Thread(target=target, daemon=True).start()
    # The configured grace is 300 s; the capped one ends the flow long before that.
    assert finished.wait(60), "grace cap ignored"
    assert outcome["status"] == "interrupted"
    assert outcome["message"] == "controller connection lost"
    assert _gone(spec)


def test_a_grace_cap_also_shortens_a_grace_already_running(
    make_spec: SpecFactory, tmp_path: Path
) -> None:
    """Timeout fired, the flow ignores SIGTERM, the runner waits out a 300 s grace; then the
    controller goes away (``cancel`` with ``grace_cap``): the flow must not get the 300 s."""
    marker = tmp_path / "got-term"
    script = f"trap 'echo yes > \"{marker}\"' TERM; while :; do sleep 0.05; done"
    spec = make_spec(["sh", "-c", script], timeout=1, grace=300)
    control = Control(1)
    finished = threading.Event()
    outcome: dict[str, Any] = {}

    def target() -> None:
        outcome.update(run(spec, control))
        finished.set()

    threading.Thread(target=target, daemon=True).start()
    assert wait_for(marker.exists, 30), "the timeout never fired"
    control.cancel("controller connection lost", grace_cap=0.2)
    assert finished.wait(15), "grace cap ignored once the grace had started"
    assert outcome["exit_code"] == -9
    assert _gone(spec)


def test_cancel_before_start_still_kills(make_spec: SpecFactory) -> None:
    spec = make_spec(["sleep", "600"], timeout=600)
    control = Control(600)
    control.cancel("interrupted")
    result = run(spec, control)
    assert result["status"] == "interrupted"
    assert _gone(spec)


# -- the flow's own report ($RUNSET_REPORT) --------------------------------------------------------


def _write_report(spec: dict[str, Any], data: Any) -> None:
    Path(spec["report_path"]).write_text(json.dumps(data), encoding="utf-8")


def test_a_flow_report_written_by_the_flow_is_merged(make_spec: SpecFactory) -> None:
    script = (
        "import json, os, pathlib\n"
        "d = pathlib.Path(os.environ['RUNSET_FLOW_DIR'])\n"
        "(d / 'shot.png').write_bytes(b'png')\n"
        "(d / 'sub').mkdir()\n"
        "(d / 'sub' / 'trace.zip').write_bytes(b'zip')\n"
        "pathlib.Path(os.environ['RUNSET_REPORT']).write_text(json.dumps({\n"
        "    'status': 'failed', 'message': 'cart total was 0',\n"
        "    'metrics': {'items': 3, 'ms': 12.5},\n"
        "    'artifacts': ['shot.png', 'sub/trace.zip', './sub/../shot.png'],\n"
        "}))\n"
    )
    result = _run(make_spec([sys.executable, "-c", script]))
    assert result["status"] == "failed"
    assert result["exit_code"] == 0
    assert result["message"] == "cart total was 0"
    assert result["metrics"] == {"items": 3, "ms": 12.5}
    assert result["artifacts"] == ["shot.png", "sub/trace.zip", "shot.png"]
    assert result["warnings"] == []


def test_flow_report_skipped_on_exit_zero(make_spec: SpecFactory) -> None:
    spec = make_spec(["true"])
    _write_report(spec, {"status": "skipped", "message": "no sandbox"})
    result = _run(spec)
    assert result["status"] == "skipped"
    assert result["message"] == "no sandbox"


def test_flow_report_cannot_turn_a_failing_exit_into_a_pass(make_spec: SpecFactory) -> None:
    spec = make_spec(["sh", "-c", "exit 5"])
    _write_report(spec, {"status": "passed"})
    result = _run(spec)
    assert result["status"] == "failed"
    assert result["exit_code"] == 5


def test_flow_report_without_status_keeps_the_exit_status(make_spec: SpecFactory) -> None:
    spec = make_spec(["true"])
    _write_report(spec, {"metrics": {"a": 1}})
    result = _run(spec)
    assert result["status"] == "passed"
    assert result["metrics"] == {"a": 1}


@pytest.mark.parametrize("escape", ["../x", "/etc/passwd", "../../../../etc/shadow", "link/x"])
def test_artifacts_outside_the_flow_dir_are_dropped_with_a_warning(
    make_spec: SpecFactory, escape: str
) -> None:
    spec = make_spec(["true"])
    flow_dir = Path(spec["flow_dir"])
    (flow_dir / "link").symlink_to("/etc")
    (flow_dir / "ok.txt").write_text("ok", encoding="utf-8")
    _write_report(spec, {"status": "passed", "artifacts": ["ok.txt", escape]})
    result = _run(spec)
    assert result["status"] == "passed"
    assert result["artifacts"] == ["ok.txt"]
    assert len(result["warnings"]) == 1
    assert escape in result["warnings"][0]


@pytest.mark.parametrize(
    "content",
    [
        b"this is not json",
        b"[1, 2, 3]",
        b'"passed"',
        b'{"status": "great"}',
        b'{"status": "timeout"}',
        b'{"message": 42}',
        b'{"metrics": [1]}',
        b'{"artifacts": "a.png"}',
        b'{"artifacts": [1]}',
        b'{"status": "passed", "message": "\xff"}',
        b"",
    ],
)
def test_a_malformed_flow_report_is_an_error(make_spec: SpecFactory, content: bytes) -> None:
    spec = make_spec(["true"])
    Path(spec["report_path"]).write_bytes(content)
    result = _run(spec)
    assert result["status"] == "error"
    assert "malformed" in result["message"]
    assert "missing" not in result["message"]


def test_a_flow_report_over_one_mib_is_malformed(make_spec: SpecFactory) -> None:
    spec = make_spec(["true"])
    padding = "x" * (1024 * 1024)
    _write_report(spec, {"status": "passed", "message": padding})
    result = _run(spec)
    assert result["status"] == "error"
    assert "malformed" in result["message"]
    assert len(result["message"]) < 1000


def test_a_missing_flow_report_is_fine(make_spec: SpecFactory) -> None:
    spec = make_spec(["sh", "-c", "exit 3"])
    assert not Path(spec["report_path"]).exists()
    result = _run(spec)
    assert result["status"] == "failed"
    assert result["message"] == "exit code 3"
    assert "malformed" not in result["message"]


@pytest.mark.parametrize(
    ("plant", "fragment"),
    [
        pytest.param("fifo", "not a regular file (a FIFO)", id="fifo"),
        pytest.param("link-to-dev-zero", "cannot read it", id="link-to-dev-zero"),
        pytest.param("nested", "nested more than 64 levels deep", id="nested-200000"),
        pytest.param("nan", "NaN is not a JSON number", id="nan-metric"),
        pytest.param("infinity", "Infinity is not a JSON number", id="infinite-metric"),
    ],
)
def test_a_hostile_flow_report_is_malformed_at_once(
    make_spec: SpecFactory, plant: str, fragment: str
) -> None:
    spec = make_spec(["true"])
    report = Path(spec["report_path"])
    if plant == "fifo":
        os.mkfifo(report)
    elif plant == "link-to-dev-zero":
        report.symlink_to("/dev/zero")
    elif plant == "nested":
        report.write_text('{"metrics": {"a": ' + "[" * 200_000 + "]" * 200_000 + "}}")
    elif plant == "nan":
        report.write_text('{"status": "passed", "metrics": {"score": NaN}}')
    else:
        report.write_text('{"status": "passed", "metrics": {"score": Infinity}}')
    started = time.monotonic()
    result = _run(spec)
    assert result["status"] == "error"
    assert "malformed RUNSET_REPORT" in result["message"]
    assert fragment in result["message"]
    # Refused without waiting for anything (a FIFO would block a plain open until the backstop).
    assert time.monotonic() - started < 60
