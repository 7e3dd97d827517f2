"""Shared resources end to end: personas, pools, tag limits, ports, secrets, two sessions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import flows_by_name, load_report, wait_for

# Each flow records when it held its resource (monotonic clock of this host, shared by all
# processes), so overlaps can be computed afterwards without trusting any wall-clock bound.
SPAN = (
    '{python} -c "import time,sys; a=time.monotonic(); time.sleep(float(sys.argv[1])); '
    "open(sys.argv[2],'a').write(f'{{a}} {{time.monotonic()}}\\\\n')\" {seconds} "
)


def span_command(seconds: float, log: str) -> str:
    return json.dumps(
        ["sh", "-c", SPAN.replace("{seconds}", str(seconds)) + f'"{log}.$RUNSET_PERSONA"']
    )


def overlapping(spans: list[tuple[float, float]]) -> int:
    """The largest number of spans open at one moment."""
    events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    peak = current = 0
    for _, delta in events:
        current += delta
        peak = max(peak, current)
    return peak


def read_spans(path: Path) -> list[tuple[float, float]]:
    spans = []
    for line in path.read_text().splitlines():
        start, end = line.split()
        spans.append((float(start), float(end)))
    return spans


@pytest.fixture(autouse=True)
def private_lock_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    lock_dir = tmp_path / "locks"
    monkeypatch.setenv("RUNSET_LOCK_DIR", str(lock_dir))
    return lock_dir


def test_one_persona_never_runs_twice_and_a_pool_of_two_runs_two(
    pytester: pytest.Pytester, write_runset: Callable[..., Path]
) -> None:
    flows = "".join(
        f'[[flows]]\nname = "alice {i}"\npersona = "alice"\n'
        f"command = {span_command(0.4, str(pytester.path / 'alice'))}\n"
        for i in range(4)
    ) + "".join(
        f'[[flows]]\nname = "buyer {i}"\npersona = "pool:buyers"\n'
        f"command = {span_command(0.6, str(pytester.path / 'pool'))}\n"
        for i in range(6)
    )
    write_runset(
        '[personas.alice]\nusername = "alice"\n[personas.bob]\nusername = "bob"\n'
        '[personas.carol]\nusername = "carol"\n'
        '[persona_pools]\nbuyers = ["bob", "carol"]\n' + flows
    )
    result = pytester.runpytest_subprocess(
        "--runset", "run-set.toml", "-n", "4", "--runset-run-id", "p"
    )
    assert result.ret == 0, result.stdout.str()
    assert overlapping(read_spans(pytester.path / "alice.alice")) == 1
    pool_spans = read_spans(pytester.path / "pool.bob") + read_spans(pytester.path / "pool.carol")
    assert len(pool_spans) == 6
    assert overlapping(pool_spans) == 2
    assert overlapping(read_spans(pytester.path / "pool.bob")) == 1
    report = load_report(pytester.path / "runset-results" / "p")
    assert {f["persona"] for f in report["flows"] if f["name"].startswith("buyer")} == {
        "bob",
        "carol",
    }


def test_tag_limit_caps_concurrency(
    pytester: pytest.Pytester, write_runset: Callable[..., Path]
) -> None:
    log = str(pytester.path / "tagged")
    flows = "".join(
        f'[[flows]]\nname = "b{i}"\ntags = ["browser"]\ncommand = {span_command(0.4, log)}\n'
        for i in range(8)
    )
    write_runset("[runset]\nlimits = { browser = 2 }\n" + flows)
    result = pytester.runpytest_subprocess("--runset", "run-set.toml", "-n", "4")
    assert result.ret == 0
    spans = read_spans(Path(log + "."))
    assert len(spans) == 8
    assert overlapping(spans) == 2


def test_exclusive_flow_runs_alone(
    pytester: pytest.Pytester, write_runset: Callable[..., Path]
) -> None:
    log = str(pytester.path / "ex")
    others = "".join(
        f'[[flows]]\nname = "o{i}"\ncommand = {span_command(0.3, log + "-o")}\n' for i in range(6)
    )
    write_runset(
        others[: len(others) // 2]
        + '[[flows]]\nname = "alone"\nexclusive = true\n'
        + f"command = {span_command(0.5, log + '-x')}\n"
        + others[len(others) // 2 :]
    )
    result = pytester.runpytest_subprocess("--runset", "run-set.toml", "-n", "3")
    assert result.ret == 0
    (alone,) = read_spans(Path(log + "-x."))
    for start, end in read_spans(Path(log + "-o.")):
        assert end <= alone[0] or start >= alone[1]


def test_ports_placeholders_and_environment(
    pytester: pytest.Pytester, write_runset: Callable[..., Path]
) -> None:
    write_runset(
        "[runset]\nports = { range = [23000, 23999] }\n"
        '[[flows]]\nname = "two ports"\nports = 2\n'
        'command = ["sh", "-c", "echo {port} {ports[1]} $RUNSET_PORT $RUNSET_PORTS"]\n'
    )
    result = pytester.runpytest_subprocess("--runset", "run-set.toml", "--runset-run-id", "pt")
    assert result.ret == 0
    run_dir = pytester.path / "runset-results" / "pt"
    first, second, env_port, env_ports = (run_dir / "two-ports" / "stdout.log").read_text().split()
    assert first == env_port
    assert env_ports == f"{first},{second}"
    assert 23000 <= int(first) <= 23999
    assert first != second
    flow = flows_by_name(load_report(run_dir))["two ports"]
    assert flow["ports"] == [int(first), int(second)]


SESSION_RUNSET = """
[runset]
concurrency = 2
ports = {{ range = [24000, 24199] }}
[personas.shared]
username = "shared"
{flows}
"""


def test_two_sessions_never_share_a_persona_or_a_port(
    pytester: pytest.Pytester,
    write_runset: Callable[..., Path],
    spawn_pytest: Callable[..., subprocess.Popen[bytes]],
) -> None:
    persona_log = str(pytester.path / "persona")
    # Each port flow records its port with the moments it held it.
    (pytester.path / "hold_port.py").write_text(
        "import os, sys, time\n"
        "start = time.monotonic()\n"
        "time.sleep(0.05)\n"
        "with open(sys.argv[1], 'a') as log:\n"
        "    log.write(f\"{os.environ['RUNSET_PORT']} {start} {time.monotonic()}\\n\")\n"
    )
    port_command = json.dumps(["{python}", "hold_port.py", str(pytester.path / "ports.log")])
    flows = "".join(
        f'[[flows]]\nname = "persona {i}"\npersona = "shared"\n'
        f"command = {span_command(0.3, persona_log)}\n"
        for i in range(4)
    ) + "".join(
        f'[[flows]]\nname = "port {i}"\nports = 1\ncommand = {port_command}\n' for i in range(100)
    )
    write_runset(SESSION_RUNSET.format(flows=flows))
    one = spawn_pytest("--runset", "run-set.toml", "--runset-run-id", "s1")
    two = spawn_pytest("--runset", "run-set.toml", "--runset-run-id", "s2")
    out_one, _ = one.communicate(timeout=300)
    out_two, _ = two.communicate(timeout=300)
    assert one.returncode == 0, out_one.decode()
    assert two.returncode == 0, out_two.decode()
    spans = read_spans(Path(persona_log + ".shared"))
    assert len(spans) == 8
    assert overlapping(spans) == 1
    held: dict[str, list[tuple[float, float]]] = {}
    lines = (pytester.path / "ports.log").read_text().splitlines()
    assert len(lines) == 200
    for line in lines:
        port, start, end = line.split()
        held.setdefault(port, []).append((float(start), float(end)))
    for port, port_spans in held.items():
        assert overlapping(port_spans) == 1, port


def test_a_killed_session_frees_its_persona_at_once(
    pytester: pytest.Pytester,
    write_runset: Callable[..., Path],
    spawn_pytest: Callable[..., subprocess.Popen[bytes]],
) -> None:
    write_runset(
        '[personas.alice]\nusername = "alice"\n'
        '[[flows]]\nname = "holds alice"\npersona = "alice"\ncommand = ["sleep", "600"]\n'
    )
    first = spawn_pytest("--runset", "run-set.toml", "--runset-run-id", "k1")
    assert wait_for((pytester.path / "runset-results" / "k1" / "holds-alice").exists, 60)
    first.kill()
    first.communicate(timeout=30)
    write_runset(
        '[personas.alice]\nusername = "alice"\n'
        '[[flows]]\nname = "wants alice"\npersona = "alice"\ncommand = ["true"]\ntimeout = 20\n'
    )
    second = pytester.runpytest_subprocess("--runset", "run-set.toml", "--runset-run-id", "k2")
    assert second.ret == 0, second.stdout.str()


def test_a_busy_persona_fails_the_flow_after_its_timeout(
    pytester: pytest.Pytester,
    write_runset: Callable[..., Path],
    spawn_pytest: Callable[..., subprocess.Popen[bytes]],
) -> None:
    write_runset(
        '[personas.alice]\nusername = "alice"\n'
        '[[flows]]\nname = "holds alice"\npersona = "alice"\ncommand = ["sleep", "600"]\n'
    )
    holder = spawn_pytest("--runset", "run-set.toml", "--runset-run-id", "h1")
    assert wait_for((pytester.path / "runset-results" / "h1" / "holds-alice").exists, 60)
    write_runset(
        '[personas.alice]\nusername = "alice"\n'
        '[[flows]]\nname = "wants alice"\npersona = "alice"\ncommand = ["true"]\ntimeout = 2\n'
        '[[flows]]\nname = "free"\ncommand = ["true"]\n',
        name="other.runset.toml",
    )
    waiting = pytester.runpytest_subprocess(
        "--runset", "other.runset.toml", "--runset-run-id", "h2"
    )
    holder.terminate()
    holder.communicate(timeout=60)
    assert waiting.ret == 1
    flows = flows_by_name(load_report(pytester.path / "runset-results" / "h2"))
    assert flows["wants alice"]["status"] == "error"
    assert flows["wants alice"]["message"].startswith("persona 'alice' busy for ")
    assert flows["free"]["status"] == "passed"


def test_secrets_never_reach_files_or_output(
    pytester: pytest.Pytester, write_runset: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "s3cr3t-Pa55w0rd-xyzzy"
    monkeypatch.setenv("ALICE_PASSWORD", secret)
    write_runset(
        '[personas.alice]\nusername = "alice"\npassword_env = "ALICE_PASSWORD"\n'
        '[[flows]]\nname = "leaky"\npersona = "alice"\nretries = 1\nallow_secret_argv = true\n'
        'command = ["sh", "-c", "echo login {persona.username} {persona.password}; '
        'echo pw=$RUNSET_PERSONA_PASSWORD >&2; exit 3"]\n'
    )
    result = pytester.runpytest_subprocess(
        "--runset", "run-set.toml", "--runset-run-id", "sec", "--junitxml", "junit.xml", "-v"
    )
    assert result.ret == 1
    output = result.stdout.str() + result.stderr.str()
    assert secret not in output
    assert "***" in output
    run_dir = pytester.path / "runset-results" / "sec"
    files = [p for p in run_dir.rglob("*") if p.is_file()] + [pytester.path / "junit.xml"]
    assert any("leaky" in str(p) for p in files)
    for path in files:
        assert secret.encode() not in path.read_bytes(), path
    assert "login alice ***" in (run_dir / "leaky" / "stdout.log").read_text()


def test_a_missing_secret_variable_fails_the_flow_with_its_name(
    pytester: pytest.Pytester, write_runset: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NO_SUCH_SECRET_VAR", raising=False)
    write_runset(
        '[personas.alice]\npassword_env = "NO_SUCH_SECRET_VAR"\n'
        '[[flows]]\nname = "needs it"\npersona = "alice"\ncommand = ["true"]\n'
    )
    result = pytester.runpytest_subprocess("--runset", "run-set.toml", "--runset-run-id", "ms")
    assert result.ret == 1
    flow = flows_by_name(load_report(pytester.path / "runset-results" / "ms"))["needs it"]
    assert flow["status"] == "error"
    assert "NO_SUCH_SECRET_VAR" in flow["message"]


def test_a_secret_that_is_not_utf8_fails_its_flows_naming_the_persona_and_variable(
    pytester: pytest.Pytester, write_runset: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(os.environb, b"BAD_SECRET_VAR", b"pw\xff\xfe-1")
    write_runset(
        '[personas.alice]\npassword_env = "BAD_SECRET_VAR"\n'
        '[[flows]]\nname = "needs it"\npersona = "alice"\ncommand = ["true"]\n'
        '[[flows]]\nname = "no persona"\ncommand = ["true"]\n'
    )
    result = pytester.runpytest_subprocess("--runset", "run-set.toml", "--runset-run-id", "nu")
    assert result.ret == 1
    flows = flows_by_name(load_report(pytester.path / "runset-results" / "nu"))
    assert flows["needs it"]["status"] == "error"
    assert flows["needs it"]["message"] == (
        "persona 'alice': environment variable BAD_SECRET_VAR (password_env) is not valid UTF-8"
    )
    assert flows["no persona"]["status"] == "passed"


def test_resource_mistakes_are_usage_errors(
    pytester: pytest.Pytester, write_runset: Callable[..., Path]
) -> None:
    write_runset('[[flows]]\nname = "x"\npersona = "nobody"\ncommand = ["true"]\n')
    result = pytester.runpytest_subprocess("--runset", "run-set.toml")
    assert result.ret == 4
    assert "unknown persona 'nobody'" in result.stderr.str()
    assert sys.executable  # the interpreter that ran it
