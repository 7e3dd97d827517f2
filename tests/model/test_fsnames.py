"""Names from a run-set file as the file system takes them, under any locale."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from pytest_runset.model.fsnames import as_text, os_name, text_of

# Run in a child under the C locale without UTF-8 mode, where Python's file names are ASCII.
_UNDER_C = """
import os, sys
from pytest_runset.model.fsnames import as_text, os_name
directory = sys.argv[1]
assert sys.getfilesystemencoding() == "ascii", sys.getfilesystemencoding()
name = os_name(os.path.join(directory, "spec-\\u00fc.toml"))
assert os_name(name) == name  # idempotent
with open(name, "w", encoding="utf-8") as handle:
    handle.write("ok")
assert as_text(name) == os.path.join(directory, "spec-\\u00fc.toml")
assert as_text({"cwd": [name]}) == {"cwd": [os.path.join(directory, "spec-\\u00fc.toml")]}
print("done")
"""


def test_names_under_a_utf8_locale_are_left_alone() -> None:
    assert os_name("spec-ü.toml") == "spec-ü.toml"
    data = {"env": {"RUNSET_FLOW": "café"}, "argv": ("é",)}
    assert as_text(data) is data


def test_text_of_reads_escaped_bytes_as_utf8() -> None:
    assert text_of("plain") == "plain"
    assert text_of("caf\udcc3\udca9") == "café"
    assert text_of("café") == "café"
    # Not UTF-8 (a Latin-1 byte), or a surrogate that is no escaped byte: U+FFFD.
    assert text_of("caf\udce9") == "caf\ufffd"
    assert text_of("a\ud800b") == "a\ufffdb"


def test_under_the_c_locale_a_name_is_its_utf8_bytes(tmp_path: Path) -> None:
    env = {**os.environ, "LC_ALL": "C", "LANG": "C", "PYTHONUTF8": "0"}
    env.pop("PYTHONIOENCODING", None)
    done = subprocess.run(
        [sys.executable, "-c", _UNDER_C, str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "spec-ü.toml").read_text(encoding="utf-8") == "ok"
