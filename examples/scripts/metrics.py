"""A command flow that reports its own result through $RUNSET_REPORT."""

from __future__ import annotations

import json
import os
import pathlib
import time

started = time.perf_counter()
total = sum(i * i for i in range(int(os.environ.get("ITERATIONS", "100")) * 1000))
elapsed = time.perf_counter() - started
flow_dir = pathlib.Path(os.environ["RUNSET_FLOW_DIR"])
(flow_dir / "numbers.txt").write_text(f"{total}\n")
pathlib.Path(os.environ["RUNSET_REPORT"]).write_text(
    json.dumps(
        {
            "status": "passed",
            "message": f"computed in {elapsed:.3f}s",
            "metrics": {"elapsed_s": elapsed, "total": total},
            "artifacts": ["numbers.txt"],
        }
    )
)
