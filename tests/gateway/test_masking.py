"""Masking secrets: text only, never the vocabulary a result is judged by; every form a secret
takes in logs and in a Playwright trace (raw, JSON-escaped, URL-encoded), in every zip member."""

from __future__ import annotations

import io
import json
import os
import tracemalloc
import zipfile
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import pytest

from pytest_runset.gateway.masking import (
    MASK,
    copy_masked,
    forms,
    mask_result,
    mask_text,
    mask_zip,
    start_masking_copy,
)


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


SECRET = 'pa"ss w\\ord+é/*'


def test_json_escaped_and_url_encoded_forms_are_masked() -> None:
    text = (
        f"raw {SECRET} json {json.dumps(SECRET)}"
        f" utf8-json {json.dumps(SECRET, ensure_ascii=False)}"
        f" form password={quote_plus(SECRET)}&x=1 browser-form {quote_plus(SECRET, safe='*')}"
        f" url {quote(SECRET, safe='')}"
    )
    masked = mask_text(text, [SECRET])
    for form in forms(SECRET):
        assert form not in masked
    assert masked.count(MASK) == 6
    sink = io.BytesIO()
    copy_masked(io.BytesIO(text.encode()), sink, [SECRET])
    assert sink.getvalue().decode() == masked


def _zip_with(members: dict[str, tuple[bytes, int]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, (data, compression) in members.items():
            archive.writestr(name, data, compress_type=compression)
    return buffer.getvalue()


def test_every_member_of_a_zip_is_masked_text_or_binary(tmp_path: Path) -> None:
    secret = "wonderland"
    binary = bytes(range(256)) * 100 + secret.encode() + bytes(range(256))
    # Across the 64 KiB chunks copy_masked reads.
    straddling = b"x" * (65536 - 4) + secret.encode() + b"y" * 10
    source = tmp_path / "trace.zip"
    source.write_bytes(
        _zip_with(
            {
                "trace.trace": (
                    json.dumps({"params": {"value": secret}}).encode() + b"\n",
                    zipfile.ZIP_DEFLATED,
                ),
                "trace.network": (f"password={secret}&u=a".encode(), zipfile.ZIP_STORED),
                "resources/a.dat": (binary, zipfile.ZIP_DEFLATED),
                "resources/b.dat": (straddling, zipfile.ZIP_STORED),
            }
        )
    )
    sink = io.BytesIO()
    mask_zip(str(source), sink, [secret])
    with zipfile.ZipFile(io.BytesIO(sink.getvalue())) as masked:
        assert masked.testzip() is None
        names = masked.namelist()
        assert names == ["trace.trace", "trace.network", "resources/a.dat", "resources/b.dat"]
        for name in names:
            assert secret.encode() not in masked.read(name), name
        assert json.loads(masked.read("trace.trace")) == {"params": {"value": MASK}}
        assert masked.read("resources/a.dat") == (
            bytes(range(256)) * 100 + MASK.encode() + bytes(range(256))
        )
        assert masked.getinfo("trace.network").compress_type == zipfile.ZIP_STORED


def test_a_large_member_is_streamed_not_held_in_memory(tmp_path: Path) -> None:
    secret = "wonderland"
    source = tmp_path / "big.zip"
    with (
        zipfile.ZipFile(source, "w", zipfile.ZIP_DEFLATED) as archive,
        archive.open("resources/big.dat", "w") as member,
    ):
        for _ in range(64):
            member.write(os.urandom(1 << 20) + secret.encode())
    target = tmp_path / "masked.zip"
    tracemalloc.start()
    try:
        with open(target, "wb") as sink:
            mask_zip(str(source), sink, [secret])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # 64 MiB went through; a few chunks at a time were in memory.
    assert peak < 8 * 1024 * 1024, peak
    with zipfile.ZipFile(target) as masked, masked.open("resources/big.dat") as member:
        total = 0
        while chunk := member.read(1 << 20):
            total += len(chunk)
    assert total == 64 * ((1 << 20) + len(MASK))


def test_a_masking_copy_whose_log_fails_still_drains_the_pipe() -> None:
    class Full(io.BytesIO):
        def write(self, data: Any) -> int:
            raise OSError(28, "No space left on device")

    read_end, write_end = os.pipe()
    thread = start_masking_copy(os.fdopen(read_end, "rb"), Full(), ["s3cr3t"], close=True)
    # Far more than a pipe holds: the writer would block for good if nobody read.
    with os.fdopen(write_end, "wb") as writer:
        writer.write(b"s3cr3t\n" * 200_000)
    thread.join(10)
    assert not thread.is_alive()
