"""Memory sizes as users write them."""

from __future__ import annotations

import pytest

from pytest_runset.model.sizes import parse_size


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("512MiB", 512 << 20),
        ("2GiB", 2 << 30),
        ("2 G", 2 << 30),
        ("100MB", 100_000_000),
        ("1.5GiB", 3 << 29),
        (1048576, 1 << 20),
    ],
)
def test_sizes_with_units(text: object, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("bad", ["", "lots", "12 parsecs", "-5MiB", True, 1.5, 100, "9" * 40])
def test_bad_sizes_are_one_line(bad: object) -> None:
    with pytest.raises(ValueError, match=r"size|between") as caught:
        parse_size(bad)
    assert "\n" not in str(caught.value)
