"""The loaded run-set as the rest of the plugin sees it: plain frozen :class:`Flow`,
:class:`Persona` and :class:`RunSet` objects, and :class:`RunsetError`.

Nothing here validates or reads files (that is :mod:`pytest_runset.model.loader`), and nothing
is imported at run time beyond the stdlib: the schema models only appear in annotations.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from pathlib import Path

    from pytest_runset.model.browser_options import BrowserProfile, SignIn
    from pytest_runset.model.schema import RunsetSettings, SidecarSpec

__all__ = ["POOL_PREFIX", "Flow", "Persona", "RunSet", "RunsetError"]

# A flow's ``persona`` value that names a pool of personas rather than one persona.
POOL_PREFIX = "pool:"


class RunsetError(Exception):
    """A run-set file that cannot be used; ``str()`` is one line naming file and field.

    Whatever goes into the message (file names, keys, flow names, values from the file), line
    breaks come out escaped: the message is always exactly one line.
    """

    def __init__(self, message: str) -> None:
        super().__init__(_one_line(message))


def _one_line(text: str) -> str:
    """``text`` with every character that would break a line shown as an escape."""
    if len(text.splitlines()) <= 1 and not text.endswith(("\n", "\r")):
        return text
    return "".join(ch if ch.isprintable() or ch == " " else repr(ch)[1:-1] for ch in text)


@dataclass(frozen=True)
class Flow:
    """One flow with defaults applied: what collection and the pool work with."""

    index: int
    name: str
    slug: str
    kind: Literal["command", "steps", "callable"]
    command: tuple[str, ...] | str
    shell: bool
    cwd: str | None
    env: dict[str, str]
    tags: tuple[str, ...]
    timeout_s: float
    kill_grace_s: float
    retries: int
    skip: str | None
    xfail: str | None
    sha256: str
    description: str | None = None
    # Browser and callable flows (see steps.py and callables.py).
    steps: tuple[dict[str, Any], ...] = ()
    spec: str | None = None
    spec_step_lines: tuple[int, ...] = ()  # where each step of ``spec`` is written (1-based)
    callable_ref: str | None = None
    params: tuple[str, ...] | None = ()
    browser: bool = False
    base_url: str | None = None
    viewport: tuple[int, int] | None = None
    persona: str | None = None
    ports: int = 0
    exclusive: bool = False
    sidecar: SidecarSpec | None = None
    workspace: str = "none"
    # Limits of the flow's whole process tree, enforced by the cgroup tier.
    memory_max: int | None = None
    pids_max: int | None = None
    # Browser options of every level merged (model/browser_options.py); browser flows only.
    browser_profile: BrowserProfile | None = None
    # The ``[[runset.projects]]`` this copy of the flow runs in (model/projects.py), and the
    # item's name in node ids when it is not the slug (``login[mobile]``).
    project: str | None = None
    node_name: str | None = None
    # A flow expanded from a ``matrix``: its values, axis -> value (see matrix.py), and the
    # 0-based position of the table it came from (``index`` counts expanded flows).
    matrix: dict[str, str | int | float | bool] | None = None
    position: int | None = None

    @property
    def item_name(self) -> str:
        """The last part of the flow's pytest node id."""
        return self.node_name or self.slug

    @property
    def table_position(self) -> int:
        """0-based position of the flow's ``[[flows]]`` table in its file."""
        return self.index if self.position is None else self.position


@dataclass(frozen=True)
class Persona:
    """An identity a flow runs as; never used by two running flows at once."""

    name: str
    # Plain fields, as strings.
    fields: dict[str, str]
    # Secret fields: field name -> environment variable that holds the value.
    secrets: dict[str, str]
    # Signed in once per run and host; its flows start from the storage state.
    login: SignIn | None = None

    @property
    def field_names(self) -> frozenset[str]:
        return frozenset(self.fields) | frozenset(self.secrets)


@dataclass(frozen=True)
class RunSet:
    """A loaded, validated run-set file."""

    path: Path
    name: str
    sha256: str
    settings: RunsetSettings
    flows: tuple[Flow, ...] = field(default_factory=tuple)
    personas: dict[str, Persona] = field(default_factory=dict)
    pools: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def persona_candidates(self, persona: str) -> tuple[str, ...]:
        """The persona names a flow's ``persona`` value may resolve to."""
        if persona.startswith(POOL_PREFIX):
            return self.pools[persona[len(POOL_PREFIX) :]]
        return (persona,)

    @property
    def directory(self) -> Path:
        return self.path.parent
