"""A command flow that stands for a long job: it works for the given number of seconds."""

from __future__ import annotations

import sys
import time

seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 1.0
time.sleep(seconds)
print(f"worked {seconds}s")
