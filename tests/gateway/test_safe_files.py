"""Reading files a user or a flow controls: regular files only, never blocking, never more than
the cap, and nesting measured without recursion. Real FIFOs, devices and symlinks."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pytest_runset.gateway.safe_files import UnsafeFile, nesting_depth, read_regular


def test_a_regular_file_is_read_whole(tmp_path: Path) -> None:
    path = tmp_path / "run-set.toml"
    path.write_bytes(b"x" * 5000)
    assert read_regular(path, max_bytes=5000) == b"x" * 5000


def test_a_fifo_is_refused_at_once_instead_of_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "run-set.toml"
    os.mkfifo(fifo)
    with pytest.raises(UnsafeFile, match="not a regular file \\(a FIFO\\)"):
        read_regular(fifo, max_bytes=1024)


def test_a_device_that_never_ends_is_refused() -> None:
    with pytest.raises(UnsafeFile, match="not a regular file \\(a device\\)"):
        read_regular("/dev/zero", max_bytes=1024)


def test_a_file_over_the_cap_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "big.toml"
    path.write_bytes(b"#" * 2049)
    with pytest.raises(UnsafeFile, match="larger than 2048 bytes"):
        read_regular(path, max_bytes=2048)


def test_a_directory_is_an_is_a_directory_error(tmp_path: Path) -> None:
    with pytest.raises(IsADirectoryError):
        read_regular(tmp_path, max_bytes=1024)


def test_a_symlink_is_followed_only_when_asked(tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.write_bytes(b"data")
    link = tmp_path / "link"
    link.symlink_to(target)
    assert read_regular(link, max_bytes=10) == b"data"
    with pytest.raises(OSError, match="Too many levels of symbolic links"):
        read_regular(link, max_bytes=10, follow_symlinks=False)


def test_nesting_is_measured_without_recursion() -> None:
    assert nesting_depth("text") == 0
    assert nesting_depth({"a": [1, {"b": []}]}) == 4
    deep: object = []
    for _ in range(200_000):
        deep = [deep]
    assert nesting_depth(deep, limit=64) == 65
