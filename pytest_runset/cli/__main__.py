"""``python -m pytest_runset.cli``."""

from __future__ import annotations

from pytest_runset.cli import main

raise SystemExit(main())
