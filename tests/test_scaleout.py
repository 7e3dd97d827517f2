"""Flows on other hosts through execnet gateways: ssh, via a proxy, socket servers, refusals.

A real sshd on 127.0.0.1 (``ssh_support``) stands in for two build hosts; the remote side
keeps its flow directories in a scratch dir of its own and sends the files back, so the run
directory must look exactly as after a local run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import execnet
import pytest
from browser_support import serve_example_app
from ssh_support import HOSTS, Sshd, free_port, needs_sshd, running_sshd

from conftest import (
    TREE_SCRIPT,
    flows_by_name,
    load_report,
    process_alive,
    processes_with_cookie_prefix,
    wait_for,
)
from pytest_runset.gateway.runners.browser_host import CHROMIUM_FLAGS, find_system_chromium


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    with running_sshd(tmp_path_factory.mktemp("sshd")) as daemon:
        yield daemon


# Run-specific names that differ between two runs of the same run-set.
_RUN_SPECIFIC = {"run.lock"}

ARTIFACT_FLOW = (
    "import os, pathlib; d = pathlib.Path(os.environ['RUNSET_FLOW_DIR']);"
    "(d / 'shots').mkdir(); (d / 'shots' / 'a.txt').write_text('artifact');"
    "(d / 'note.txt').write_text(os.environ['RUNSET_FLOW_DIR']); print('hello from', os.getcwd())"
)


def _mixed_runset(write_runset: Callable[..., Path]) -> Path:
    python = json.dumps(sys.executable)
    return write_runset(
        f"""
[runset]
name = "scale"
[[flows]]
name = "artifacts"
command = [{python}, "-c", {json.dumps(ARTIFACT_FLOW)}]
[[flows]]
name = "fails"
command = [{python}, "-c", "import sys; print('oops', file=sys.stderr); sys.exit(3)"]
[[flows]]
name = "passes"
command = [{python}, "-c", "print('ok')"]
[[flows]]
name = "shell"
shell = true
command = "echo $RUNSET_SLUG > \\"$RUNSET_FLOW_DIR/slug.txt\\""
"""
    )


def _tree(run_dir: Path) -> list[str]:
    return sorted(
        str(path.relative_to(run_dir))
        for path in run_dir.rglob("*")
        if path.name not in _RUN_SPECIFIC
    )


def _ssh_tx(sshd: Sshd, *extra: str) -> list[str]:
    args: list[str] = []
    for host in HOSTS:
        args += ["--runset-tx", sshd.spec(host, *extra)]
    return args


@needs_sshd
def test_a_run_over_ssh_gateways_matches_a_local_run(
    pytester: pytest.Pytester, write_runset: Callable[..., Path], sshd: Sshd
) -> None:
    _mixed_runset(write_runset)
    common = ["--runset", "run-set.toml", "-p", "no:cacheprovider", "-v"]
    local = pytester.runpytest_subprocess(*common, "--runset-run-id", "local", "-n", "2")
    remote = pytester.runpytest_subprocess(*common, "--runset-run-id", "remote", *_ssh_tx(sshd))
    assert local.ret == remote.ret == 1
    results = pytester.path / "runset-results"
    local_report = load_report(results / "local")
    remote_report = load_report(results / "remote")
    statuses = {name: flow["status"] for name, flow in flows_by_name(local_report).items()}
    assert statuses == {name: flow["status"] for name, flow in flows_by_name(remote_report).items()}
    assert statuses["fails"] == "failed"
    assert _tree(results / "local") == _tree(results / "remote")
    workers = {flow["worker"] for flow in remote_report["flows"]}
    assert workers <= {"gw0@runset-a", "gw1@runset-b"}
    assert remote_report["workers"] == 2
    remote.stdout.fnmatch_lines(["*[[]gw?@runset-?[]]*run-set.toml::*"])
    # The files came back with their content, and paths in them are the controller's.
    flow_dir = results / "remote" / "artifacts"
    assert (flow_dir / "shots" / "a.txt").read_text() == "artifact"
    result = json.loads((flow_dir / "result.json").read_text())
    assert result["status"] == "passed"
    assert (flow_dir / "stdout.log").read_text().strip().startswith("hello from")
    assert (results / "remote" / "shell" / "slug.txt").read_text().strip() == "shell"
    # The failing flow's stderr tail reached the report like a local one's.
    fails = flows_by_name(remote_report)["fails"]
    assert "oops" in json.dumps(fails)
    # Nothing stays behind in the hosts' scratch directories.
    leftovers = [p for p in Path("/tmp").glob("runset-*/remote") if p.exists()]
    assert leftovers == []


@needs_sshd
def test_a_remote_flow_that_times_out_is_killed_on_its_host(
    pytester: pytest.Pytester, write_runset: Callable[..., Path], sshd: Sshd
) -> None:
    (pytester.path / "tree.py").write_text(TREE_SCRIPT)
    write_runset(
        f"""
[[flows]]
name = "hangs"
command = [{json.dumps(sys.executable)}, "tree.py"]
timeout = "3s"
kill_grace = "1s"
"""
    )
    result = pytester.runpytest_subprocess(
        "--runset",
        "run-set.toml",
        "--runset-run-id",
        "sshtimeout",
        "-p",
        "no:cacheprovider",
        "--runset-tx",
        sshd.spec(HOSTS[0]),
    )
    assert result.ret == 1
    report = load_report(pytester.path / "runset-results" / "sshtimeout")
    flow = report["flows"][0]
    assert flow["status"] == "timeout", flow
    assert flow["worker"] == "gw0@runset-a"
    # The tree's files were written on the remote host and came back.
    flow_dir = pytester.path / "runset-results" / "sshtimeout" / "hangs"
    assert (flow_dir / "cookie").read_text().startswith("sshtimeout.")
    # A cookie scan on that host, through a gateway of the same kind, finds nothing.
    gateway = execnet.makegateway(sshd.spec(HOSTS[0]))
    try:
        channel = gateway.remote_exec(
            """
import os
needle = b"RUNSET_FLOW_ID=sshtimeout."
found = []
for entry in os.listdir("/proc"):
    if entry.isdigit():
        try:
            with open(f"/proc/{entry}/environ", "rb") as handle:
                if any(v.startswith(needle) for v in handle.read().split(b"\\0")):
                    with open(f"/proc/{entry}/stat", "rb") as stat:
                        state = stat.read().rsplit(b")", 1)[1].split()[0]
                    if state not in (b"Z", b"X"):
                        found.append(int(entry))
        except OSError:
            pass
channel.send(found)
"""
        )
        assert channel.receive(timeout=60) == []
    finally:
        gateway.exit()


@needs_sshd
def test_a_gateway_of_another_release_is_refused_and_the_others_run(
    pytester: pytest.Pytester, write_runset: Callable[..., Path], sshd: Sshd
) -> None:
    _mixed_runset(write_runset)
    # The refused gateway answers its probe while the other one still runs flows: a run that
    # ends before a slow ssh start-up has answered never hears of it.
    runset = pytester.path / "run-set.toml"
    runset.write_text(
        runset.read_text().replace(
            "\"print('ok')\"", "\"import time; time.sleep(4); print('ok')\""
        ),
    )
    result = pytester.runpytest_subprocess(
        "--runset",
        "run-set.toml",
        "--runset-run-id",
        "refusal",
        "-p",
        "no:cacheprovider",
        "--runset-tx",
        sshd.spec(HOSTS[0], "env:RUNSET_TEST_FAKE_VERSION=0.0.0-other"),
        "--runset-tx",
        sshd.spec(HOSTS[1]),
    )
    result.stdout.fnmatch_lines(
        ["runset: gateway refused: gw0@runset-a: pytest-runset 0.0.0-other on *, but * here*"]
    )
    report = load_report(pytester.path / "runset-results" / "refusal")
    flows = flows_by_name(report)
    assert {flow["worker"] for flow in flows.values()} == {"gw1@runset-b"}
    assert flows["passes"]["status"] == "passed"
    assert flows["fails"]["status"] == "failed"


def test_when_every_gateway_is_refused_the_run_says_why(
    pytester: pytest.Pytester, write_runset: Callable[..., Path]
) -> None:
    _mixed_runset(write_runset)
    result = pytester.runpytest_subprocess(
        "--runset",
        "run-set.toml",
        "--runset-run-id",
        "allrefused",
        "-p",
        "no:cacheprovider",
        "--runset-tx",
        "2*popen//env:RUNSET_TEST_FAKE_VERSION=9.9.9",
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        [
            "runset: gateway refused: gw?: pytest-runset 9.9.9 on *",
            "*no gateway can run flows (gw?: pytest-runset 9.9.9 on *",
        ]
    )
    report = load_report(pytester.path / "runset-results" / "allrefused")
    assert {flow["status"] for flow in report["flows"]} == {"not_run"}
    assert "pytest-runset 9.9.9" in report["flows"][0]["message"]


def test_flows_run_through_a_proxy_and_on_a_socket_server_it_installs(
    pytester: pytest.Pytester, write_runset: Callable[..., Path]
) -> None:
    _mixed_runset(write_runset)
    result = pytester.runpytest_subprocess(
        "--runset",
        "run-set.toml",
        "--runset-run-id",
        "proxied",
        "-p",
        "no:cacheprovider",
        "--runset-px",
        "popen//id=hop",
        "--runset-tx",
        "popen//via=hop",
        "--runset-tx",
        "socket//installvia=hop",
    )
    assert result.ret == 1
    run_dir = pytester.path / "runset-results" / "proxied"
    flows = flows_by_name(load_report(run_dir))
    assert flows["passes"]["status"] == "passed"
    assert flows["fails"]["status"] == "failed"
    assert flows["artifacts"]["status"] == "passed"
    assert (run_dir / "artifacts" / "shots" / "a.txt").read_text() == "artifact"
    assert {flow["worker"] for flow in flows.values()} <= {"gw0", "gw1@localhost"}
    assert "WARNING" not in result.stdout.str()


def test_a_socket_gateway_beyond_loopback_is_warned_about(
    pytester: pytest.Pytester, write_runset: Callable[..., Path]
) -> None:
    _mixed_runset(write_runset)
    # --collect-only: the warning comes at configure time, and nothing connects anywhere.
    result = pytester.runpytest_subprocess(
        "--runset",
        "run-set.toml",
        "--collect-only",
        "-p",
        "no:cacheprovider",
        "--runset-tx",
        "socket=192.0.2.10:8888",
        "--runset-tx",
        "socket=127.0.0.1:8888",
    )
    assert result.ret == 0
    output = result.stdout.str()
    assert "socket=192.0.2.10:8888: an execnet socket server off this machine runs any code" in (
        output
    )
    assert "socket=127.0.0.1:8888: an" not in output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--runset-tx", "2*nope=1"], "--runset-tx 'nope=1': unknown key 'nope'"),
        (["--runset-tx", "popen//via=jump"], "no --runset-px gateway with id 'jump'"),
        (["--runset-tx", "0*popen"], "the multiplier must be at least 1"),
        (["--runset-tx", "2*popen", "--runset-workers", "3"], "--runset-workers 3 conflicts"),
        (["--runset-remote-root", "relative/dir"], "must be an absolute path"),
    ],
)
def test_bad_gateway_options_are_one_line_usage_errors(
    pytester: pytest.Pytester,
    write_runset: Callable[..., Path],
    args: list[str],
    message: str,
) -> None:
    _mixed_runset(write_runset)
    result = pytester.runpytest_subprocess(
        "--runset", "run-set.toml", "-p", "no:cacheprovider", *args
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    errors = [line for line in result.stderr.lines if line.startswith("ERROR:")]
    assert len(errors) == 1, result.stderr.str()
    assert message in errors[0]
    assert "Traceback" not in result.stderr.str()


def test_tx_in_the_runset_file_sets_the_gateways(
    pytester: pytest.Pytester, write_runset: Callable[..., Path]
) -> None:
    python = json.dumps(sys.executable)
    write_runset(
        f"""
[runset]
tx = ["3*popen"]
[[flows]]
name = "one"
command = [{python}, "-c", "pass"]
[[flows]]
name = "two"
command = [{python}, "-c", "pass"]
[[flows]]
name = "three"
command = [{python}, "-c", "pass"]
"""
    )
    result = pytester.runpytest_subprocess(
        "--runset", "run-set.toml", "--runset-run-id", "fromfile", "-p", "no:cacheprovider"
    )
    assert result.ret == 0
    assert load_report(pytester.path / "runset-results" / "fromfile")["workers"] == 3


def test_a_bad_tx_in_the_runset_file_names_file_and_field(
    pytester: pytest.Pytester, write_runset: Callable[..., Path]
) -> None:
    write_runset('[runset]\ntx = ["ssh"]\n[[flows]]\nname = "x"\ncommand = ["true"]\n')
    result = pytester.runpytest_subprocess("--runset", "run-set.toml", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    text = result.stderr.str()
    assert "run-set.toml" in text
    assert "tx" in text
    assert "ssh needs a host" in text
    assert "Traceback" not in text


# -- remote browsers -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def playwright_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``playwright launch-server`` on 127.0.0.1 with the system Chromium; yields its ws URL."""
    base = tmp_path_factory.mktemp("pwserver")
    port = free_port()
    config = base / "server.json"
    config.write_text(
        json.dumps(
            {
                "host": "127.0.0.1",
                "port": port,
                "wsPath": "/runset",
                "headless": True,
                "executablePath": find_system_chromium(),
                "args": list(CHROMIUM_FLAGS),
            }
        )
    )
    log = (base / "server.log").open("w+b")
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "playwright", "launch-server"),
            *("--browser", "chromium", "--config", str(config)),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        assert wait_for(lambda: b"ws://" in (base / "server.log").read_bytes(), 120), (
            base / "server.log"
        ).read_text()
        url = (base / "server.log").read_text().split("ws://", 1)[1].split()[0]
        assert url.startswith(f"127.0.0.1:{port}/")
        yield f"ws://{url}"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


@pytest.fixture(scope="module")
def app_url() -> Iterator[str]:
    yield from serve_example_app()


BROWSER_FLOWS = """
[[flows]]
name = "login"
browser = true
steps = [
  { goto = "/login" },
  { expect_title = "Sign in - Example Shop" },
]
[[flows]]
name = "broken"
browser = true
steps = [
  { goto = "/login" },
  { expect_visible = "#missing", timeout = 0.5 },
]
"""


def test_browser_flows_use_a_playwright_server_through_the_endpoint(
    pytester: pytest.Pytester,
    write_runset: Callable[..., Path],
    playwright_server: str,
    app_url: str,
) -> None:
    write_runset(BROWSER_FLOWS)
    result = pytester.runpytest_subprocess(
        "--runset",
        "run-set.toml",
        "--runset-run-id",
        "endpoint",
        "-p",
        "no:cacheprovider",
        "-n",
        "2",
        "--runset-base-url",
        app_url,
        "--runset-browser-endpoint",
        playwright_server,
    )
    assert result.ret == 1
    run_dir = pytester.path / "runset-results" / "endpoint"
    flows = flows_by_name(load_report(run_dir))
    assert flows["login"]["status"] == "passed", flows["login"]
    assert flows["broken"]["status"] == "failed", flows["broken"]
    # The failure's screenshot and trace came over the connection into the flow dir.
    artifacts = flows["broken"]["artifacts"]
    assert any(path.endswith(".png") for path in artifacts), artifacts
    assert any(path.endswith("trace.zip") for path in artifacts), artifacts
    result_json = json.loads((run_dir / "login" / "result.json").read_text())
    assert playwright_server in json.dumps(result_json)


def test_a_server_that_refuses_the_client_version_is_shown_in_one_line(
    pytester: pytest.Pytester, write_runset: Callable[..., Path], app_url: str
) -> None:
    # Another Playwright release cannot be installed here: a server answering the upgrade the
    # way a mismatched Playwright server does (HTTP 428 and its explanation) stands in for it.
    message = "Playwright version mismatch:\\n  - server version: v1.0\\n  - client version: v9"
    server = (
        "import http.server, sys\n"
        "class H(http.server.BaseHTTPRequestHandler):\n"
        "    def do_GET(self):\n"
        f"        body = '{message}'.encode()\n"
        "        self.send_response(428)\n"
        "        self.send_header('Content-Length', str(len(body)))\n"
        "        self.end_headers()\n"
        "        self.wfile.write(body)\n"
        "s = http.server.HTTPServer(('127.0.0.1', 0), H)\n"
        "print(s.server_address[1], flush=True)\n"
        "s.serve_forever()\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", server], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        write_runset(BROWSER_FLOWS.split('[[flows]]\nname = "broken"', maxsplit=1)[0])
        result = pytester.runpytest_subprocess(
            "--runset",
            "run-set.toml",
            "--runset-run-id",
            "mismatch",
            "-p",
            "no:cacheprovider",
            "--runset-base-url",
            app_url,
            "--runset-browser-endpoint",
            f"ws://127.0.0.1:{port}/",
        )
    finally:
        proc.kill()
        proc.wait()
    assert result.ret == 1
    flow = load_report(pytester.path / "runset-results" / "mismatch")["flows"][0]
    assert flow["status"] == "error"
    assert "\n" not in flow["message"]
    assert f"cannot connect to the browser at ws://127.0.0.1:{port}/" in flow["message"]
    assert "428" in flow["message"]


@pytest.mark.parametrize(
    ("endpoint", "problem"),
    [
        ("http://127.0.0.1:9222", "not a ws:// or wss:// Playwright server URL"),
        ("cdp+ftp://x", "cdp+ must be followed by an http(s):// or ws(s):// URL"),
    ],
)
def test_a_bad_browser_endpoint_is_a_usage_error(
    pytester: pytest.Pytester, write_runset: Callable[..., Path], endpoint: str, problem: str
) -> None:
    write_runset(BROWSER_FLOWS)
    result = pytester.runpytest_subprocess(
        "--runset", "run-set.toml", "-p", "no:cacheprovider", "--runset-browser-endpoint", endpoint
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert problem in result.stderr.str()


PORT_PROBE = (
    "import fcntl, os, pathlib, sys;"
    "port = os.environ['RUNSET_PORT'];"
    "lock = pathlib.Path(sys.argv[1]) / f'port-{port}.lock';"
    "fd = os.open(lock, os.O_RDWR);"
    "held = False\n"
    "try:\n fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
    "except OSError:\n held = True\n"
    "pathlib.Path(os.environ['RUNSET_FLOW_DIR'], 'held').write_text(f'{port} {held}')"
)


@needs_sshd
def test_a_remote_flow_holds_its_ports_on_its_own_host(
    pytester: pytest.Pytester,
    write_runset: Callable[..., Path],
    sshd: Sshd,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The controller keeps its leases in a directory of its own; the "remote" host (the ssh
    # session, without RUNSET_LOCK_DIR) uses its default one, as another machine would.
    monkeypatch.setenv("RUNSET_LOCK_DIR", str(pytester.path / "controller-locks"))
    import tempfile

    host_dir = Path(tempfile.gettempdir()) / f"pytest-runset-{os.getuid()}"
    (pytester.path / "probe.py").write_text(PORT_PROBE)
    write_runset(
        f"""
[[flows]]
name = "ports"
ports = 1
command = [{json.dumps(sys.executable)}, "probe.py", "{host_dir}"]
"""
    )
    result = pytester.runpytest_subprocess(
        "--runset",
        "run-set.toml",
        "--runset-run-id",
        "ports",
        "-p",
        "no:cacheprovider",
        "--runset-tx",
        sshd.spec(HOSTS[0]),
    )
    assert result.ret == 0, result.stdout.str()
    port, held = (pytester.path / "runset-results" / "ports" / "ports" / "held").read_text().split()
    assert held == "True"
    assert 20000 <= int(port) <= 29999
    # Released with the flow.
    fd = os.open(host_dir / f"port-{port}.lock", os.O_RDWR)
    try:
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(fd)


@needs_sshd
def test_a_killed_controller_takes_its_remote_flows_with_it(
    pytester: pytest.Pytester,
    write_runset: Callable[..., Path],
    sshd: Sshd,
    spawn_pytest: Callable[..., subprocess.Popen[bytes]],
) -> None:
    (pytester.path / "tree.py").write_text(TREE_SCRIPT)
    write_runset(
        f"""
[[flows]]
name = "hangs"
command = [{json.dumps(sys.executable)}, "tree.py"]
timeout = "10m"
"""
    )
    run_id = f"sshkill{os.getpid()}"
    proc = spawn_pytest(
        "--runset", "run-set.toml", "--runset-run-id", run_id, "--runset-tx", sshd.spec(HOSTS[0])
    )
    import tempfile

    scratch = Path(tempfile.gettempdir())
    # The flow dir lives in the host's scratch dir while the flow runs.
    assert wait_for(lambda: any(scratch.glob(f"runset-*/{run_id}/hangs/started")), 120)
    assert processes_with_cookie_prefix(f"{run_id}.")
    proc.kill()
    proc.wait()
    assert wait_for(lambda: not processes_with_cookie_prefix(f"{run_id}."), 60), (
        processes_with_cookie_prefix(f"{run_id}.")
    )
    # The worker went too, and took its scratch dir with it.
    assert wait_for(lambda: not any(scratch.glob(f"runset-*/{run_id}")), 60)


CAPPED_FLOW = (
    "import os, pathlib; d = pathlib.Path(os.environ['RUNSET_FLOW_DIR']);"
    "(d / 'small.txt').write_text('s' * 100);"
    "(d / 'zbig.bin').write_bytes(b'b' * 4000);"
    "os.symlink('/etc/hostname', d / 'link')"
)


def test_remote_files_past_the_cap_and_symlinks_are_listed_as_skipped(
    pytester: pytest.Pytester, write_runset: Callable[..., Path]
) -> None:
    write_runset(
        f"""
[runset]
max_artifact_mb = 0.002
[[flows]]
name = "capped"
command = [{json.dumps(sys.executable)}, "-c", {json.dumps(CAPPED_FLOW)}]
"""
    )
    result = pytester.runpytest_subprocess(
        "--runset",
        "run-set.toml",
        "--runset-run-id",
        "capped",
        "-p",
        "no:cacheprovider",
        "--runset-px",
        "popen//id=hop",
        "--runset-tx",
        "socket//installvia=hop",
    )
    assert result.ret == 0
    flow_dir = pytester.path / "runset-results" / "capped" / "capped"
    assert (flow_dir / "small.txt").read_text() == "s" * 100
    assert not (flow_dir / "zbig.bin").exists()
    assert not (flow_dir / "link").exists()
    assert not (flow_dir / "link").is_symlink()
    data = json.loads((flow_dir / "result.json").read_text())
    cap = int(0.002 * 1024 * 1024)
    assert f"zbig.bin (4000 bytes; over the {cap} byte cap)" in data["skipped_artifacts"]
    assert "link (symlink, not followed)" in data["skipped_artifacts"]
    flow = load_report(pytester.path / "runset-results" / "capped")["flows"][0]
    assert any("not brought back from localhost" in warning for warning in flow["warnings"])


STOP_WORKER = (
    "import os, pathlib, signal, time;"
    "pathlib.Path('worker.pid').write_text(str(os.getppid()));"
    "os.kill(os.getppid(), signal.SIGSTOP); time.sleep(600)"
)


@needs_sshd
def test_an_unresponsive_remote_worker_is_killed_on_its_host_with_its_flow(
    pytester: pytest.Pytester, write_runset: Callable[..., Path], sshd: Sshd
) -> None:
    # The flow stops its own worker: the worker's channel answers nothing any more, so the
    # controller's backstop must reach the host some other way.
    write_runset(
        f"""
[[flows]]
name = "stops its worker"
command = [{json.dumps(sys.executable)}, "-c", {json.dumps(STOP_WORKER)}]
timeout = "2s"
kill_grace = "1s"
"""
    )
    result = pytester.runpytest_subprocess(
        "--runset",
        "run-set.toml",
        "--runset-run-id",
        "stopped",
        "-p",
        "no:cacheprovider",
        "-o",
        "runset_backstop_margin=2",
        "--runset-tx",
        sshd.spec(HOSTS[0]),
    )
    assert result.ret == 1
    flow = load_report(pytester.path / "runset-results" / "stopped")["flows"][0]
    assert flow["status"] == "timeout", flow
    assert "unresponsive; killed" in flow["message"]
    assert flow["leftover_processes"] >= 1
    worker_pid = int((pytester.path / "worker.pid").read_text())
    assert wait_for(lambda: not process_alive(worker_pid), 60)
    assert wait_for(lambda: not processes_with_cookie_prefix("stopped."), 60)
    # What the dead worker could not send, the helper brought back; its scratch dir is gone.
    flow_dir = pytester.path / "runset-results" / "stopped" / "stops-its-worker"
    assert (flow_dir / "stdout.log").is_file()
    import tempfile

    assert not list(Path(tempfile.gettempdir()).glob("runset-*/stopped"))


@needs_sshd
def test_an_ssh_gateway_can_start_from_a_proxy(
    pytester: pytest.Pytester, write_runset: Callable[..., Path], sshd: Sshd
) -> None:
    _mixed_runset(write_runset)
    result = pytester.runpytest_subprocess(
        "--runset",
        "run-set.toml",
        "--runset-run-id",
        "sshvia",
        "-p",
        "no:cacheprovider",
        "--runset-px",
        "popen//id=hop",
        "--runset-tx",
        sshd.spec(HOSTS[1], "via=hop"),
    )
    assert result.ret == 1
    run_dir = pytester.path / "runset-results" / "sshvia"
    flows = flows_by_name(load_report(run_dir))
    assert {flow["worker"] for flow in flows.values()} == {"gw0@runset-b"}
    assert flows["passes"]["status"] == "passed"
    assert (run_dir / "artifacts" / "shots" / "a.txt").read_text() == "artifact"


@needs_sshd
def test_remote_flows_are_contained_limited_and_measured_on_their_host(
    pytester: pytest.Pytester, write_runset: Callable[..., Path], sshd: Sshd
) -> None:
    marker = f"62{os.getpid() % 1000:03d}"
    write_runset(
        '[runset]\ntimeout = "60s"\n'
        '[[flows]]\nname = "escape"\nshell = true\n'
        f"command = \"setsid sh -c 'exec env -i sleep {marker}' & echo started\"\n"
        '[[flows]]\nname = "hog"\nmemory_max = "100MiB"\n'
        'command = ["python3", "-c", "x = bytearray(300 * 1024 * 1024)"]\n'
    )
    result = pytester.runpytest_subprocess(
        "--runset", "run-set.toml", "-p", "no:cacheprovider", "--runset-run-id", "rc",
        "--runset-containment", "cgroup", *_ssh_tx(sshd),
    )  # fmt: skip
    assert result.ret == 1, result.stdout.str()
    report = load_report(pytester.path / "runset-results" / "rc")
    flows = flows_by_name(report)
    assert flows["escape"]["status"] == "passed"
    assert flows["escape"]["leftover_processes"] >= 1
    assert flows["hog"]["status"] == "failed"
    assert flows["hog"]["message"].startswith("memory limit 100 MiB exceeded")
    assert flows["hog"]["resources"]["peak_memory_bytes"] >= 90 * 1024 * 1024
    found = subprocess.run(
        ["pgrep", "-f", f"sleep {marker}"], check=False, capture_output=True, text=True
    )
    assert found.stdout.strip() == ""
