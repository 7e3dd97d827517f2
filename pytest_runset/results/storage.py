"""When the disk refuses a run's own files: full, over quota, read-only, failing, or deleted.

Every write the controller makes to a run directory (journal lines and their fsync,
``report.json``, ``report.html``, ``latest``) turns an ``OSError`` into one
:class:`StorageError`. The session catches it in one place (see
:func:`pytest_runset.session.runs.storage_stop_line`): it says what failed in one line, stops
the run as an interrupt does, and the run can be resumed once the cause is fixed.
"""

from __future__ import annotations

import errno as errnos
import os
from pathlib import Path

__all__ = ["StorageError", "deleted_error", "storage_error"]


class StorageError(Exception):
    """Writing one of a run's own files failed; ``str()`` is ``cannot write PATH: REASON``.

    ``journal`` is the run's journal (whether it still exists decides whether the run can be
    resumed); ``errno`` the error number, when the system gave one.
    """

    def __init__(self, path: Path, reason: str, *, journal: Path, errno: int | None) -> None:
        self.path = path
        self.reason = reason
        self.journal = journal
        self.errno = errno
        super().__init__(f"cannot write {path}: {reason}")

    @property
    def resumable(self) -> bool:
        """Whether the journal is still there for ``--runset-resume`` to continue from."""
        try:
            return self.journal.is_file()
        except (OSError, ValueError):
            return False


def storage_error(path: Path, exc: OSError, *, journal: Path) -> StorageError:
    """The :class:`StorageError` of ``exc``, raised while writing ``path``."""
    reason = exc.strerror or (os.strerror(exc.errno) if exc.errno else str(exc) or repr(exc))
    return StorageError(path, reason, journal=journal, errno=exc.errno)


def deleted_error(path: Path, *, journal: Path) -> StorageError:
    """``path`` was deleted while the run was writing it (its run directory was removed)."""
    return StorageError(
        path,
        f"it was deleted while the run was writing it ({os.strerror(errnos.ENOENT)})",
        journal=journal,
        errno=errnos.ENOENT,
    )
