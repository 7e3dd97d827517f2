"""TOML text to data, bounded: whatever the text, a value or one line saying what is wrong.

``tomllib`` recurses once per level of inline tables and arrays (a few hundred levels exhaust
the stack) and refuses integers of more than 4300 digits with a ``ValueError``; both are turned
into the same one-line errors as invalid TOML. Data nested deeper than
:data:`~pytest_runset.gateway.safe_files.MAX_NESTING` is refused before anything validates it.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from typing import Any

from pytest_runset.gateway.safe_files import MAX_NESTING, nesting_depth


def parse_toml(text: str, error: Callable[[str], Exception]) -> dict[str, Any]:
    """The document in ``text``; raises ``error(problem)`` with a one-line problem."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise error(f"invalid TOML: {exc}") from None
    except RecursionError:
        raise error(f"invalid TOML: nested more than {MAX_NESTING} levels deep") from None
    except ValueError as exc:
        # tomllib's own errors are TOMLDecodeError; this is int() refusing a huge literal.
        raise error(f"invalid TOML: {str(exc).splitlines()[0]}") from None
    if nesting_depth(raw) > MAX_NESTING:
        raise error(f"invalid TOML: nested more than {MAX_NESTING} levels deep")
    return raw
