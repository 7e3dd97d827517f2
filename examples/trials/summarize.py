"""Print the trials of a report.json as a table, best tour first.

python3 examples/trials/summarize.py examples/trials/runset-results/latest/report.json
"""

from __future__ import annotations

import json
import sys


def main(path: str) -> None:
    with open(path, encoding="utf-8") as handle:
        report = json.load(handle)
    rows = [flow for flow in report["flows"] if "tour_length" in flow.get("metrics", {})]
    rows.sort(key=lambda flow: flow["metrics"]["tour_length"])
    print(f"{'trial':<20} {'status':<8} {'tour':>8} {'seconds':>8}")
    for flow in rows:
        length = flow["metrics"]["tour_length"]
        print(f"{flow['name']:<20} {flow['status']:<8} {length:>8.4f} {flow['duration_s']:>8.2f}")
    missing = [flow["name"] for flow in report["flows"] if flow not in rows]
    if missing:
        print("no result: " + ", ".join(missing))


if __name__ == "__main__":
    main(sys.argv[1])
