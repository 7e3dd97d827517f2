"""Bringing remote flow files back: name checks on both sides, the size cap, chunking."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from pytest_runset.gateway.transfer import (
    CHUNK_BYTES,
    Receiver,
    UnsafeName,
    check_name,
    chunks,
    list_files,
    map_paths,
    send_files,
)


@pytest.mark.parametrize(
    "name",
    ["../evil", "a/../../evil", "/etc/passwd", "a//b", "./a", "a/./b", "", "a\\b", "a\0b", "a/"],
)
def test_unsafe_names_are_refused(name: str) -> None:
    with pytest.raises(UnsafeName):
        check_name(name)


@pytest.mark.parametrize("name", ["result.json", "shots/a.png", "a/b/c..d", "..hidden"])
def test_plain_relative_names_pass(name: str) -> None:
    assert check_name(name) == name


def test_a_non_string_name_is_refused() -> None:
    with pytest.raises(UnsafeName):
        check_name(["a"])


def _flow_dir(tmp_path: Path) -> Path:
    flow = tmp_path / "flow"
    (flow / "shots").mkdir(parents=True)
    (flow / "result.json").write_text("{}")
    (flow / "stdout.log").write_text("out")
    (flow / "shots" / "a.bin").write_bytes(b"a" * 300)
    (flow / "shots" / "b.bin").write_bytes(b"b" * 300)
    outside = tmp_path / "secret"
    outside.mkdir()
    (outside / "key").write_text("do not send")
    os.symlink(outside / "key", flow / "link-to-file")
    os.symlink(outside, flow / "link-to-dir")
    os.mkfifo(flow / "pipe")
    return flow


def test_listing_skips_symlinks_and_special_files_and_respects_the_cap(tmp_path: Path) -> None:
    flow = _flow_dir(tmp_path)
    kept, skipped = list_files(str(flow), max_bytes=400)
    names = [name for name, _size in kept]
    # result.json first and always; then sorted until the cap.
    assert names == ["result.json", "shots/a.bin", "stdout.log"]
    assert any(
        entry.startswith("shots/b.bin (300 bytes; over the 400 byte cap") for entry in skipped
    )
    assert "link-to-file (symlink, not followed)" in skipped
    assert "link-to-dir (symlink, not followed)" in skipped
    assert "pipe (not a regular file)" in skipped
    assert not any("key" in entry for entry in names)


def test_result_json_goes_even_over_the_cap(tmp_path: Path) -> None:
    flow = tmp_path / "flow"
    flow.mkdir()
    (flow / "result.json").write_text("x" * 100)
    (flow / "big").write_text("y" * 100)
    kept, skipped = list_files(str(flow), max_bytes=10)
    assert [name for name, _ in kept] == ["result.json"]
    assert skipped == ["big (100 bytes; over the 10 byte cap)"]


def test_files_travel_in_chunks_and_arrive_whole(tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.mkdir()
    big = os.urandom(CHUNK_BYTES * 2 + 123)
    (source / "big.bin").write_bytes(big)
    (source / "empty").write_bytes(b"")
    (source / "sub").mkdir()
    (source / "sub" / "x.txt").write_text("x")
    sent: list[tuple[str, dict[str, Any]]] = []
    failed = send_files(
        str(source), ["big.bin", "empty", "sub/x.txt"], lambda kind, data: sent.append((kind, data))
    )
    assert failed == []
    pieces = [data for kind, data in sent if data["name"] == "big.bin"]
    assert len(pieces) == 3
    assert [piece["first"] for piece in pieces] == [True, False, False]
    assert all(len(piece["data"]) <= CHUNK_BYTES for piece in pieces)
    destination = tmp_path / "dest"
    destination.mkdir()
    receiver = Receiver(str(destination), max_bytes=10 * CHUNK_BYTES)
    for _kind, data in sent:
        receiver.write(data["name"], data["data"], data["first"])
    assert receiver.problems == []
    assert (destination / "big.bin").read_bytes() == big
    assert (destination / "empty").read_bytes() == b""
    assert (destination / "sub" / "x.txt").read_text() == "x"


def test_a_symlink_planted_in_the_source_is_not_read(tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.mkdir()
    (tmp_path / "secret").write_text("no")
    os.symlink(tmp_path / "secret", source / "link")
    sent: list[Any] = []
    failed = send_files(str(source), ["link"], lambda kind, data: sent.append(data))
    assert sent == []
    assert failed
    assert failed[0].startswith("link (")


def test_the_receiver_refuses_escaping_names_and_writes_nothing_outside(tmp_path: Path) -> None:
    destination = tmp_path / "run" / "flow"
    destination.mkdir(parents=True)
    receiver = Receiver(str(destination), max_bytes=1000)
    receiver.write("../escaped", b"x", True)
    receiver.write("/tmp/absolute-escape", b"x", True)
    receiver.write("a/../../escaped", b"x", True)
    receiver.write("ok.txt", b"fine", True)
    assert len(receiver.problems) == 3
    assert all(problem.startswith("refused file name") for problem in receiver.problems)
    assert not (tmp_path / "run" / "escaped").exists()
    assert not Path("/tmp/absolute-escape").exists()
    assert (destination / "ok.txt").read_text() == "fine"


def test_the_receiver_does_not_follow_symlinks_in_its_destination(tmp_path: Path) -> None:
    destination = tmp_path / "flow"
    destination.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.symlink(elsewhere, destination / "sub")
    os.symlink(elsewhere / "target", destination / "file")
    receiver = Receiver(str(destination), max_bytes=1000)
    receiver.write("sub/x", b"x", True)
    receiver.write("file", b"x", True)
    assert list(elsewhere.iterdir()) == []
    assert len(receiver.problems) == 2


def test_the_receiver_enforces_the_cap_itself(tmp_path: Path) -> None:
    receiver = Receiver(str(tmp_path), max_bytes=10)
    receiver.write("a", b"x" * (CHUNK_BYTES + 5), True)
    receiver.write("b", b"y" * (CHUNK_BYTES + 20), True)
    assert (tmp_path / "a").stat().st_size == CHUNK_BYTES + 5
    assert not (tmp_path / "b").exists()
    assert receiver.problems == ["did not write b: over the 10 byte cap"]
    # Later chunks of a refused file are dropped quietly (one problem per file).
    receiver.write("b", b"y", False)
    assert len(receiver.problems) == 1


def test_non_bytes_data_is_refused(tmp_path: Path) -> None:
    receiver = Receiver(str(tmp_path), max_bytes=10)
    receiver.write("a", "text", True)
    assert receiver.problems == ["did not write a: its data is not bytes"]


def test_chunks_of_an_empty_file_are_one_empty_piece(tmp_path: Path) -> None:
    (tmp_path / "e").write_bytes(b"")
    assert list(chunks(str(tmp_path), "e")) == [(b"", True)]


def test_path_mapping_maps_the_longest_prefix_once() -> None:
    spec = {
        "cwd": "/repo",
        "flow_dir": "/repo/runset-results/r1/flow",
        "env": {"A": "/repo/runset-results/r1/flow/x:/repo/bin"},
        "command": ["/repo/tool", "--out", "/repo/runset-results/r1"],
        "n": 3,
    }
    pairs = [("/repo/runset-results/r1", "/scratch/r1"), ("/repo", "/srv/repo")]
    mapped = map_paths(spec, pairs)
    assert mapped == {
        "cwd": "/srv/repo",
        "flow_dir": "/scratch/r1/flow",
        "env": {"A": "/scratch/r1/flow/x:/srv/repo/bin"},
        "command": ["/srv/repo/tool", "--out", "/scratch/r1"],
        "n": 3,
    }
    back = map_paths(mapped, [(new, old) for old, new in pairs])
    assert back == spec
