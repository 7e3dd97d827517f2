"""Names from a run-set file as this process's file-system calls take them, whatever the locale.

A run-set file is UTF-8, so a spec file ``spec-ü.toml`` or an output directory ``résultats``
means those UTF-8 bytes on disk. Python encodes ``str`` file names with the file-system
encoding, which is ASCII under a C or POSIX locale without UTF-8 mode (``LC_ALL=C
PYTHONUTF8=0``): there ``open("spec-ü.toml")`` raises ``UnicodeEncodeError`` instead of opening
the file. :func:`os_name` turns such a name into the ``surrogateescape`` form Python uses for
undecodable bytes, which encodes back to exactly the UTF-8 bytes. Names stay real text
everywhere else (reports, messages, what is sent to a worker); only the call that touches the
file system gets the converted name.
"""

from __future__ import annotations

import os
import re
import sys
from typing import TypeVar, cast

__all__ = ["as_text", "os_name", "text_of", "utf8_file_system"]

_T = TypeVar("_T")
# Surrogates that are not one escaped byte (U+DC80..U+DCFF): never part of a file name.
_NOT_ESCAPED_BYTE = re.compile("[\ud800-\udc7f\udd00-\udfff]")


def utf8_file_system() -> bool:
    """Whether this process encodes file names as UTF-8 (any UTF-8 locale, or UTF-8 mode)."""
    return sys.getfilesystemencoding().lower().replace("-", "").replace("_", "") == "utf8"


_UTF8 = utf8_file_system()


def os_name(name: str | os.PathLike[str]) -> str:
    """``name`` with every character the file-system encoding cannot take as its UTF-8 bytes.

    Unchanged under a UTF-8 locale; idempotent (a name already in this form stays as it is).
    """
    text = os.fspath(name)
    if _UTF8 or text.isascii():
        return text
    return os.fsdecode(text.encode("utf-8", "surrogateescape"))


def text_of(name: str) -> str:
    """The text ``name`` stands for: the bytes escaped in it (as the C locale leaves a
    file name's non-ASCII bytes) read as UTF-8, and anything that is not text as U+FFFD.

    Always valid to encode as UTF-8, whatever the locale.
    """
    if name.isascii():
        return name
    name = _NOT_ESCAPED_BYTE.sub("\ufffd", name)
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def as_text(data: _T) -> _T:
    """``data`` (strings, lists, tuples, dicts of them) with names in the form above turned
    back into the text they stand for.

    For what leaves this process as text: execnet sends only strings that encode as UTF-8,
    and a worker (always in UTF-8 mode) encodes that text back into the same bytes. Bytes that
    are not UTF-8 become U+FFFD. Unchanged (and free) under a UTF-8 locale.
    """
    if _UTF8:
        return data
    return cast(_T, _as_text(data))


def _as_text(data: object) -> object:
    if isinstance(data, str):
        return text_of(data)
    if isinstance(data, dict):
        return {_as_text(key): _as_text(value) for key, value in data.items()}
    if isinstance(data, list | tuple):
        return type(data)(_as_text(item) for item in data)
    return data
