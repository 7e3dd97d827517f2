"""Making run journals durable on a thread of their own, so the run loop never waits for the disk.

The loop writes a finished flow's journal line, asks for everything written so far to be made
durable (:meth:`JournalSyncer.request`) and goes on dispatching; once the fsync is done, the
syncer calls ``notify(upto)`` from its thread (the loop turns that into an event on its queue)
and only then does pytest hear of those flows. Requests that arrive during an fsync are
served together by the next one.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from pytest_runset.results.storage import StorageError

if TYPE_CHECKING:
    from pytest_runset.results.report import RunDirectory


class JournalSyncer:
    def __init__(
        self, directories: Sequence[RunDirectory], notify: Callable[[int, str], None]
    ) -> None:
        self._directories = list(directories)
        self._notify = notify
        self._cond = threading.Condition()
        self._wanted = 0
        self._closed = False
        self._thread = threading.Thread(target=self._serve, name="runset-journal-sync", daemon=True)
        self._thread.start()

    def request(self, upto: int) -> None:
        """Make every journal line numbered up to ``upto`` durable, then notify."""
        with self._cond:
            if upto > self._wanted:
                self._wanted = upto
                self._cond.notify()

    def close(self) -> None:
        """Stop after the fsync in progress; the caller syncs what is left itself."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(timeout=30)

    def _serve(self) -> None:
        done = 0
        while True:
            with self._cond:
                while self._wanted <= done and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                target = self._wanted
            problem = ""
            try:
                for directory in self._directories:
                    directory.sync(force=True)
            except (OSError, ValueError, StorageError) as exc:
                # The loop syncs again itself, where the directory raises the same
                # StorageError (it remembers the first one) on the main thread.
                problem = str(exc) or repr(exc)
            done = target
            self._notify(target, problem)
