"""What a run leaves behind: the crash-safe journal, ``report.json``, ``report.html`` and merged
shard reports. Never imports pytest, so the ``pytest-runset`` command runs without it.
"""
