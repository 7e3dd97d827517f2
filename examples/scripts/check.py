"""A command flow: checks its environment and writes a file into its own directory."""

from __future__ import annotations

import argparse
import os
import pathlib
import sys

parser = argparse.ArgumentParser()
parser.add_argument("--name", required=True)
args = parser.parse_args()

flow_dir = pathlib.Path(os.environ["RUNSET_FLOW_DIR"])
missing = [var for var in ("RUNSET_RUN_ID", "RUNSET_SLUG", "RUNSET_FLOW_ID") if var not in os.environ]
if missing:
    print(f"missing environment: {missing}", file=sys.stderr)
    sys.exit(1)
(flow_dir / "hello.txt").write_text(f"hello from {args.name} ({os.environ['APP_ENV']})\n")
print(f"{args.name}: ok in {flow_dir}")
