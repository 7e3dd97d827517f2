"""Masking secrets: text only, never the vocabulary a result is judged by."""

from __future__ import annotations

import io

import pytest

from pytest_runset.gateway.masking import MASK, copy_masked, mask_result, mask_text


@pytest.mark.parametrize("secret", ["fail", "pass", "passed", "ailed", "error", "ed", "0"])
def test_a_secret_never_rewrites_a_status_or_another_structured_field(secret: str) -> None:
    result = {
        "attempt": 1,
        "status": "failed",
        "ended_by": "global_timeout",
        "exit_code": 1,
        "flow_id": "run.flow-passed.1",
        "dir": "flow-failed",
        "worker": "gw0",
        "artifacts": ["failure.png"],
        "tail_source": "flow-failed/stderr.log",
        "message": f"exit code 1: bad login {secret}",
        "warnings": [f"saw {secret}"],
        "metrics": {"note": f"{secret}!", "count": 3},
    }
    masked = mask_result(result, [secret])
    for key in ("attempt", "status", "ended_by", "exit_code", "flow_id", "dir", "worker"):
        assert masked[key] == result[key]
    assert masked["artifacts"] == ["failure.png"]
    assert masked["tail_source"] == "flow-failed/stderr.log"
    if len(secret) >= 3:
        assert masked["message"] == f"exit code 1: bad login {MASK}"
        assert masked["warnings"] == [f"saw {MASK}"]
        assert masked["metrics"] == {"note": f"{MASK}!", "count": 3}
    else:
        # Shorter values would mask ordinary text everywhere and hide nothing real.
        assert masked["message"] == result["message"]


def test_text_is_masked_longest_secret_first() -> None:
    assert mask_text("user hunter2hunter2 and hunter2", ["hunter2", "hunter2hunter2"]) == (
        f"user {MASK} and {MASK}"
    )


def test_a_secret_split_across_reads_is_still_masked() -> None:
    class Trickle(io.BytesIO):
        def read1(self, size: int = -1) -> bytes:
            return super().read1(3)

    sink = io.BytesIO()
    copy_masked(Trickle(b"login s3cr3t-pw done\n"), sink, ["s3cr3t-pw"])
    assert sink.getvalue() == f"login {MASK} done\n".encode()
