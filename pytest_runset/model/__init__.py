"""The run-set file: its TOML schema (pydantic), the loader, browser steps, placeholders, slugs
and durations. Never imports pytest, so the ``pytest-runset`` command runs without it.
"""
