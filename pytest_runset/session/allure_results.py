"""A flow's allure result, completed through allure-pytest's own objects (allure_commons).

Imported only when allure-pytest writes results (``--alluredir``): the listener it registers
as ``allure_listener`` has scheduled a ``TestResult`` for the flow when its
``pytest_runtest_protocol`` began, and writes it when ``pytest_runtest_logfinish`` ends. In
between, :class:`AllureFlow` fills in what allure learns of an ordinary test from the setup and
teardown hooks a flow never goes through.
"""

from __future__ import annotations

import platform
from typing import TYPE_CHECKING, Any

from allure_commons.model2 import Label, Status, StatusDetails, TestResult
from allure_commons.types import AttachmentType, LabelType
from allure_commons.utils import md5, uuid4

if TYPE_CHECKING:
    from pytest_runset.results.formats import FlowEntry, HistoryItem
    from pytest_runset.session.collect import RunsetItem

# A flow's status -> allure's (allure tells a failed check from a test that broke).
ALLURE_STATUS = {
    "passed": Status.PASSED,
    "xpassed": Status.PASSED,
    "failed": Status.FAILED,
    "timeout": Status.FAILED,
    "error": Status.BROKEN,
    "interrupted": Status.BROKEN,
    "skipped": Status.SKIPPED,
    "xfailed": Status.SKIPPED,
}
_TYPES = {
    ".log": AttachmentType.TEXT,
    ".txt": AttachmentType.TEXT,
    ".png": AttachmentType.PNG,
    ".jpg": AttachmentType.JPG,
    ".json": AttachmentType.JSON,
    ".zip": AttachmentType.ZIP,
    ".webm": AttachmentType.WEBM,
    ".mp4": AttachmentType.MP4,
    ".html": AttachmentType.HTML,
}


class AllureFlow:
    """The result allure-pytest keeps for one flow, and the results of its retries."""

    def __init__(
        self, listener: Any, item: RunsetItem, entry: FlowEntry, *, worker_id: str, host: str
    ) -> None:
        self.reporter = listener.allure_logger
        # The flow's own: the one allure scheduled last, inside this flow's protocol.
        self.result: TestResult | None = self.reporter.get_test(None)
        self.item = item
        self.entry = entry
        self.history_id = md5(item.nodeid)
        self.labels = _labels(item, entry, worker_id, host)

    def complete(
        self, text: str, started_at: float, files: list[tuple[str, str]], *, flaky: str
    ) -> None:
        result = self.result
        if result is None or result.name != self.item.name:
            return  # allure scheduled nothing for this flow (or something else since)
        self._describe(result)
        status = str(self.entry["status"])
        result.status = ALLURE_STATUS.get(status, Status.BROKEN)
        if self.entry.get("flaky"):
            result.statusDetails = StatusDetails(message=flaky, flaky=True)
        elif status not in ("passed", "xpassed"):
            lines = text.splitlines() or [status]
            result.statusDetails = StatusDetails(
                message=lines[0], trace=text if len(lines) > 1 else None
            )
        result.start = int(started_at * 1000)
        result.stop = int((started_at + float(self.entry["duration_s"])) * 1000)
        for name, path in files:
            self._attach(result.uuid, name, path)

    def retry(self, attempt: HistoryItem, started_at: float, files: list[tuple[str, str]]) -> None:
        """A failed attempt before the last: a result of its own, written now."""
        uuid = uuid4()
        status = str(attempt["status"])
        result = TestResult(uuid=uuid, name=self.item.name)
        self._describe(result)
        result.status = ALLURE_STATUS.get(status, Status.BROKEN)
        result.statusDetails = StatusDetails(message=f"{status}: {attempt['message']}".rstrip(": "))
        result.start = int(started_at * 1000)
        result.stop = int((started_at + float(attempt.get("duration_s") or 0.0)) * 1000)
        self.reporter.schedule_test(uuid, result)
        for name, path in files:
            self._attach(uuid, name, path)
        self.reporter.close_test(uuid)

    def _describe(self, result: TestResult) -> None:
        flow = self.item.flow
        result.name = flow.name
        result.fullName = self.item.nodeid
        result.testCaseId = self.history_id
        # Every attempt of the flow shares it: allure shows the earlier ones as retries.
        result.historyId = self.history_id
        result.titlePath = [self.item.runset.name]
        if flow.description:
            result.description = flow.description
        result.labels.extend(self.labels)

    def _attach(self, parent: str, name: str, path: str) -> None:
        suffix = "." + name.rsplit(".", 1)[-1] if "." in name else ""
        kind = _TYPES.get(suffix.lower())
        self.reporter.attach_file(
            uuid4(),
            path,
            name=name,
            attachment_type=kind,
            extension=None if kind is not None else suffix.lstrip(".") or None,
            parent_uuid=parent,
        )


def _labels(item: RunsetItem, entry: FlowEntry, worker_id: str, host: str) -> list[Label]:
    runset = item.runset.name
    labels = [
        Label(name=LabelType.PARENT_SUITE, value=item.location[0]),
        Label(name=LabelType.SUITE, value=runset),
        Label(name=LabelType.HOST, value=host),
        Label(name=LabelType.FRAMEWORK, value="pytest-runset"),
        Label(name=LabelType.LANGUAGE, value=f"cpython{platform.python_version_tuple()[0]}"),
        Label(name="kind", value=str(entry.get("kind", item.flow.kind))),
    ]
    if worker_id:
        # allure's timeline draws one lane per thread: one per worker here.
        labels.append(Label(name=LabelType.THREAD, value=worker_id))
        labels.append(Label(name="worker", value=worker_id))
    labels.extend(Label(name=LabelType.TAG, value=tag) for tag in item.flow.tags)
    persona = entry.get("persona")
    if persona:
        labels.append(Label(name="persona", value=str(persona)))
    return labels
