"""Where each step of a spec file is written: the line a failing step's report points at.

TOML parsers keep no positions, so the file's text is scanned: the steps are either the
inline tables of a top-level ``steps = [...]`` array or ``[[steps]]`` tables. Strings and
comments are skipped so that a ``{`` inside a selector or a URL is never taken for a step.
"""

from __future__ import annotations

import re

_STEPS_ARRAY = re.compile(r"^[ \t]*steps[ \t]*=[ \t]*\[", re.MULTILINE)
_STEPS_TABLE = re.compile(r"^[ \t]*\[\[[ \t]*steps[ \t]*\]\]", re.MULTILINE)
_QUOTES = ('"""', "'''", '"', "'")


def step_lines(text: str) -> list[int]:
    """The 1-based line of each step, in order (empty when neither form is found)."""
    tables = [text.count("\n", 0, match.start()) + 1 for match in _STEPS_TABLE.finditer(text)]
    if tables:
        return tables
    match = _STEPS_ARRAY.search(text)
    return _array_elements(text, match.end()) if match else []


def _array_elements(text: str, position: int) -> list[int]:
    """Lines of the inline tables that open at the top level of the array starting at
    ``position`` (just after its ``[``)."""
    lines: list[int] = []
    line = text.count("\n", 0, position) + 1
    depth = 1  # brackets and braces together: 1 is the steps array itself
    while position < len(text) and depth > 0:
        char = text[position]
        quote = next((q for q in _QUOTES if text.startswith(q, position)), None)
        if quote is not None:
            end = _string_end(text, position, quote)
            line += text.count("\n", position, end)
            position = end
            continue
        if char == "#":
            end = text.find("\n", position)
            position = len(text) if end < 0 else end
            continue
        if char == "\n":
            line += 1
        elif char in "[{":
            if depth == 1 and char == "{":
                lines.append(line)
            depth += 1
        elif char in "]}":
            depth -= 1
        position += 1
    return lines


def _string_end(text: str, start: int, quote: str) -> int:
    """The position just after the string opening at ``start`` (the end of the text if it
    never closes: the loader has refused such a file already)."""
    position = start + len(quote)
    escapes = quote.startswith('"')
    while position < len(text):
        if escapes and text[position] == "\\":
            position += 2
            continue
        if text.startswith(quote, position):
            return position + len(quote)
        position += 1
    return len(text)
