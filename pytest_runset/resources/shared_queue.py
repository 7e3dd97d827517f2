"""The shared queue of a coordinated run (``--runset-queue NAME``), kept on the coordinator.

Every operation that moves a flow is one Lua script, so it is atomic on the server whatever
the number of sessions:

- :meth:`SharedQueue.seed` - the first session writes the queue (its digest and its flows, in
  dispatch order); a later one compares digests and joins, or is told the queue's digest.
- :meth:`SharedQueue.pull` - pop the next flow and record it as held by this session, with a
  fresh fencing token. *Each flow is held by at most one session at a time.* A retry put back
  with a delay waits in ``delayed`` and *is not pulled before its delay is over* on the
  server's clock; due ones go to the front first.
- :meth:`SharedQueue.finish` - only the holder with the same token may end the flow (done) or
  put it back (a retry, an interrupted session). A session whose flow was reclaimed finds
  out here.
- :meth:`SharedQueue.reclaim` - flows held by a session whose heartbeat key expired go back to
  the front of the queue, their ``requeues`` counted (the bound is the engine's decision, taken
  when the flow is pulled again: :func:`~pytest_runset.engine.queue_scheduler.disposition`).

Keys are ``runset:queue:<name>:<part>`` and expire a day after the last write. They hold flow
keys (node ids), attempt numbers, statuses (and a retry's earlier attempts: durations, exit
codes, start times, directory names), host names and session ids; never a message, a log or
a persona's field. Nothing here imports pytest, so ``pytest-runset queue`` runs without.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any, Literal, NotRequired, TypedDict, cast

from pytest_runset.resources.coordinator import (
    KEY_TTL_S,
    SERVER_NOW,
    Coordinator,
    CoordinatorError,
    key,
)

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class EarlierAttempt(TypedDict):
    """An attempt a retry had in some session, carried with the retry so that the session
    that ends the flow reports its whole history (and a pass on a retry as flaky). No
    message: the queue holds nothing a flow printed."""

    attempt: int
    status: str
    duration_s: float | None
    exit_code: int | None
    started_at: float | None
    dir: str | None
    host: str
    session: str


class QueuedTask(TypedDict):
    """A flow waiting in the queue (JSON in the ``pending`` list, or in ``delayed`` while a
    retry sits out its delay)."""

    key: str  # the flow's node id
    attempt: int  # the attempt it is due for (1, or a retry's number)
    requeues: int  # how often it went back to the queue because its session was lost
    lost_host: str  # the host of the session it was last lost with ("" if never)
    # A retry's earlier attempts (absent on a first attempt: Lua's cjson writes an empty
    # list as an object, so none is written).
    earlier: NotRequired[list[EarlierAttempt]]


class HeldTask(QueuedTask):
    """A flow a session pulled and runs (JSON in the ``running`` hash, by flow key)."""

    session: str
    host: str
    token: int  # fencing: only this holder may finish it


class DoneTask(TypedDict):
    """A flow that ended for good (JSON in the ``done`` hash, by flow key)."""

    status: str
    attempts: int
    session: str
    host: str


class SessionInfo(TypedDict):
    session: str
    host: str
    role: Literal["seeded", "joined"]
    joined_at: float
    alive: bool


class QueueProgress(TypedDict):
    """What ``pytest-runset queue`` shows."""

    name: str
    seeded: bool
    runset: str
    total: int
    pending: int
    running: int
    done: int
    statuses: dict[str, int]
    sessions: list[SessionInfo]
    ended: bool


class QueueMismatch(Exception):
    """A session's run-set or selection differs from the queue's (one-line message)."""


_SEED = """
local digest = redis.call('hget', KEYS[1], 'digest')
if digest then return {'joined', digest, redis.call('hget', KEYS[1], 'total')} end
redis.call('hset', KEYS[1], 'digest', ARGV[1], 'seeded_by', ARGV[2], 'total', ARGV[3],
  'runset', ARGV[4], 'created_at', ARGV[5])
for i = 7, #ARGV do redis.call('rpush', KEYS[2], ARGV[i]) end
redis.call('expire', KEYS[1], ARGV[6])
redis.call('expire', KEYS[2], ARGV[6])
return {'seeded', ARGV[1], ARGV[3]}
"""
# KEYS: pending, running, token, delayed. Retries whose delay is over go to the front first
# (the earliest due in front), on the server's clock.
_PULL = (
    SERVER_NOW
    + """
local due = redis.call('zrangebyscore', KEYS[4], '-inf', now)
for i = #due, 1, -1 do
  redis.call('zrem', KEYS[4], due[i])
  redis.call('lpush', KEYS[1], due[i])
end
local raw = redis.call('lpop', KEYS[1])
if not raw then return false end
local task = cjson.decode(raw)
task['session'] = ARGV[1]
task['host'] = ARGV[2]
task['token'] = redis.call('incr', KEYS[3])
redis.call('expire', KEYS[3], ARGV[3])
local value = cjson.encode(task)
redis.call('hset', KEYS[2], task['key'], value)
redis.call('expire', KEYS[2], ARGV[3])
return value
"""
)
# KEYS: running, pending, done, delayed. ARGV: flow key, token, done record ('' when it goes
# back), queued record ('' when done), ttl, delay (ms) before the queued record may be pulled.
_FINISH = (
    SERVER_NOW
    + """
local raw = redis.call('hget', KEYS[1], ARGV[1])
if not raw then return 0 end
if cjson.decode(raw)['token'] ~= tonumber(ARGV[2]) then return 0 end
redis.call('hdel', KEYS[1], ARGV[1])
if ARGV[4] ~= '' and tonumber(ARGV[6]) > 0 then
  redis.call('zadd', KEYS[4], now + tonumber(ARGV[6]), ARGV[4])
  redis.call('expire', KEYS[4], ARGV[5])
elseif ARGV[4] ~= '' then
  redis.call('lpush', KEYS[2], ARGV[4])
  redis.call('expire', KEYS[2], ARGV[5])
else
  redis.call('hset', KEYS[3], ARGV[1], ARGV[3])
  redis.call('expire', KEYS[3], ARGV[5])
end
return 1
"""
)
# ARGV: the prefix of sessions' heartbeat keys, ttl.
_RECLAIM = """
local entries = redis.call('hgetall', KEYS[1])
local moved = 0
for i = 1, #entries, 2 do
  local task = cjson.decode(entries[i + 1])
  if redis.call('exists', ARGV[1] .. task['session']) == 0 then
    redis.call('hdel', KEYS[1], entries[i])
    -- Back as it was queued (a retry keeps its earlier attempts), its loss counted.
    task['requeues'] = task['requeues'] + 1
    task['lost_host'] = task['host']
    task['session'] = nil
    task['host'] = nil
    task['token'] = nil
    redis.call('lpush', KEYS[2], cjson.encode(task))
    moved = moved + 1
  end
end
if moved > 0 then redis.call('expire', KEYS[2], ARGV[2]) end
return moved
"""


def check_name(name: str) -> str:
    """A queue name: letters, digits, ``.``, ``_``, ``-`` (a CI pipeline id fits)."""
    if not _NAME.match(name):
        raise CoordinatorError(
            f"--runset-queue {name!r}: use letters, digits, '.', '_' and '-' (at most 128)"
        )
    return name


class SharedQueue:
    """One named queue on a coordinator, seen from one session (or from the CLI)."""

    def __init__(self, coordinator: Coordinator, name: str) -> None:
        self.coordinator = coordinator
        self.name = check_name(name)
        client = coordinator.client
        self._seed = client.register_script(_SEED)
        self._pull = client.register_script(_PULL)
        self._finish = client.register_script(_FINISH)
        self._reclaim = client.register_script(_RECLAIM)

    def key(self, part: str) -> str:
        return key("queue", self.name, part)

    @property
    def client(self) -> Any:
        return self.coordinator.client

    # -- a session's side --------------------------------------------------------------------
    def seed(
        self, digest: str, keys: list[str], runset: str
    ) -> tuple[Literal["seeded", "joined"], int]:
        """Seed the queue with ``keys`` (dispatch order), or join it when it exists and has
        the same ``digest``: this session's role and the queue's flow count.
        :class:`QueueMismatch` when the queue's digest differs."""
        coordinator = self.coordinator
        tasks = [json.dumps(QueuedTask(key=k, attempt=1, requeues=0, lost_host="")) for k in keys]
        role, existing, total = self._seed(
            keys=[self.key("meta"), self.key("pending")],
            args=[digest, coordinator.host, len(keys), runset, time.time(), KEY_TTL_S, *tasks],
        )
        if existing != digest:
            raise QueueMismatch(
                f"runset: queue {self.name!r} on {coordinator.url.shown} holds another run-set "
                f"or selection (digest {str(existing)[:12]}, this session {digest[:12]}): run "
                "the same run-set with the same options, or use another queue name"
            )
        kind: Literal["seeded", "joined"] = "seeded" if role == "seeded" else "joined"
        self._register(kind)
        return kind, int(total or 0)

    def _register(self, role: Literal["seeded", "joined"]) -> None:
        coordinator = self.coordinator
        info = {"host": coordinator.host, "role": role, "joined_at": time.time()}
        pipe = self.client.pipeline()
        pipe.hset(self.key("sessions"), coordinator.session, json.dumps(info))
        pipe.expire(self.key("sessions"), KEY_TTL_S)
        pipe.execute()
        self.beat()

    def beat(self) -> None:
        """This session is alive for one more TTL (the heartbeat thread calls this)."""
        coordinator = self.coordinator
        pipe = self.client.pipeline()
        pipe.set(self.key("alive:" + coordinator.session), coordinator.host, px=coordinator.ttl_ms)
        for part in ("meta", "pending", "delayed", "running", "done", "sessions", "token"):
            pipe.expire(self.key(part), KEY_TTL_S)
        pipe.execute()

    def leave(self) -> None:
        """This session holds nothing more: it stops counting as alive at once."""
        self.client.delete(self.key("alive:" + self.coordinator.session))

    def pull(self) -> HeldTask | None:
        """The next flow, now held by this session; ``None`` when the queue is empty."""
        coordinator = self.coordinator
        raw = self._pull(
            keys=[self.key("pending"), self.key("running"), self.key("token"), self.key("delayed")],
            args=[coordinator.session, coordinator.host, KEY_TTL_S],
        )
        if raw is None:
            return None
        held = cast(HeldTask, json.loads(raw))
        if not isinstance(held.get("earlier", []), list):
            # An empty list that went through cjson comes back as an object.
            held["earlier"] = []
        return held

    def finish(self, held: HeldTask, status: str, attempts: int) -> bool:
        """The flow ended for good here; ``False`` when this session no longer held it."""
        done = DoneTask(
            status=status, attempts=attempts, session=held["session"], host=held["host"]
        )
        return self._end(held, json.dumps(done), "")

    def put_back(
        self,
        held: HeldTask,
        attempt: int,
        *,
        earlier: list[EarlierAttempt] | None = None,
        delay_s: float = 0.0,
    ) -> bool:
        """The flow goes back to the front of the queue, due for ``attempt``, with the
        attempts it had so far (``earlier``: what it carried, when ``None``). With
        ``delay_s``, no session pulls it before that many seconds passed on the server's clock
        (a retry's ``--reruns-delay``)."""
        task = QueuedTask(
            key=held["key"], attempt=attempt, requeues=held["requeues"], lost_host=held["lost_host"]
        )
        carried = held.get("earlier") if earlier is None else earlier
        if carried:
            task["earlier"] = carried
        return self._end(held, "", json.dumps(task), max(0, round(delay_s * 1000)))

    def _end(self, held: HeldTask, done: str, queued: str, delay_ms: int = 0) -> bool:
        result = self._finish(
            keys=[self.key("running"), self.key("pending"), self.key("done"), self.key("delayed")],
            args=[held["key"], held["token"], done, queued, KEY_TTL_S, delay_ms],
        )
        return bool(int(result))

    def reclaim(self) -> int:
        """Put the flows of sessions whose heartbeat expired back in front; how many."""
        return int(
            self._reclaim(
                keys=[self.key("running"), self.key("pending")],
                args=[self.key("alive:"), KEY_TTL_S],
            )
        )

    # -- anyone's side ---------------------------------------------------------------------
    def progress(self) -> QueueProgress:
        pipe = self.client.pipeline()
        pipe.hgetall(self.key("meta"))
        pipe.llen(self.key("pending"))
        pipe.zcard(self.key("delayed"))
        pipe.hlen(self.key("running"))
        pipe.hvals(self.key("done"))
        pipe.hgetall(self.key("sessions"))
        meta, queued, delayed, running, done, sessions = pipe.execute()
        # A retry sitting out its delay waits as much as a queued flow.
        pending = int(queued) + int(delayed)
        statuses: dict[str, int] = {}
        for raw in done:
            status = str(json.loads(raw).get("status", "?"))
            statuses[status] = statuses.get(status, 0) + 1
        listed: list[SessionInfo] = []
        for session, raw in sorted(sessions.items()):
            info = json.loads(raw)
            listed.append(
                SessionInfo(
                    session=session,
                    host=str(info.get("host", "?")),
                    role="seeded" if info.get("role") == "seeded" else "joined",
                    joined_at=float(info.get("joined_at", 0.0)),
                    alive=bool(self.client.exists(self.key("alive:" + session))),
                )
            )
        seeded = bool(meta)
        return QueueProgress(
            name=self.name,
            seeded=seeded,
            runset=str(meta.get("runset", "")),
            total=int(meta.get("total", 0)),
            pending=int(pending),
            running=int(running),
            done=len(done),
            statuses=statuses,
            sessions=listed,
            ended=seeded and not pending and not running,
        )

    def ended(self) -> bool:
        """Seeded, and nothing waits or runs anywhere."""
        pipe = self.client.pipeline()
        pipe.exists(self.key("meta"))
        pipe.llen(self.key("pending"))
        pipe.zcard(self.key("delayed"))
        pipe.hlen(self.key("running"))
        seeded, pending, delayed, running = pipe.execute()
        return bool(seeded) and not pending and not delayed and not running
