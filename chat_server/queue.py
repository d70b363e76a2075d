"""The counsellor queue: conversations waiting for a counsellor, crisis first,
then first come, first served.

The interface (``HandoffQueue``), its order, and the queue of a single process
(``MemoryQueue``: no Redis configured). ``queue_redis`` holds the queue that every
process shares in Redis, and its keeper. The database's
``conversations.handoff_state`` is the truth; the queue is its ordered index.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Iterable, Protocol

# Crisis conversations sort before every normal one: the score's priority part
# dwarfs any millisecond timestamp (about 1.8e12 now, 1e13 in the year 2286).
_PRIORITY_OFFSET = {"crisis": 0, "normal": 10**13}


def queue_score(priority: str, queued_at: datetime) -> int:
    """Sort key: priority class first, then the time the conversation was queued."""
    return _PRIORITY_OFFSET.get(priority, _PRIORITY_OFFSET["normal"]) + int(queued_at.timestamp() * 1000)


def class_range(priority: str) -> tuple[int, int]:
    low = _PRIORITY_OFFSET.get(priority, _PRIORITY_OFFSET["normal"])
    return low, low + 10**13 - 1


def score_time(score: int, priority: str) -> datetime:
    ms = int(score) - class_range(priority)[0]
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc)


class HandoffQueue(Protocol):
    async def add(self, conversation_id: int, priority: str, queued_at: datetime) -> None:
        """Put the conversation in the queue (again: keeps its place)."""

    async def remove(self, conversation_id: int) -> None: ...

    async def position(self, conversation_id: int) -> int | None:
        """1 for the next to be served; None when not queued."""

    async def conversation_ids(self) -> list[int]:
        """Queued conversations in the order they will be served."""

    async def front_time(self, priority: str) -> datetime | None:
        """When the first conversation of this priority class was queued (None: none queued).

        A conversation queued a millisecond earlier goes before it: the
        grace-period requeue puts conversations back at the front this way."""

    async def restore(self, entries: Iterable[tuple[int, str, datetime]]) -> list[int]:
        """Add what the database says is queued: (conversation id, priority, queued at);
        returns the ids that were missing.

        Only adds: another process may have queued a conversation whose
        transaction has not committed yet, and removing it would lose it."""

    async def crisis_count(self) -> int:
        """How many crisis conversations are queued (they are the first ones)."""

    async def admit(self, owner: str, conversation_id: int, limit: int | None) -> bool:
        """Count the (just queued) conversation as one of ``owner``'s (an address key), unless
        ``owner`` already has ``limit`` others in the queue: then False, and nothing counted.
        ``limit`` None always admits (a crisis). Conversations that left the queue no longer count."""


_OWNERS_MAX = 10_000  # owners kept in memory before the ones with nothing queued are pruned


class MemoryQueue:
    """The queue of a single process (no Redis configured)."""

    def __init__(self) -> None:
        self._scores: dict[int, int] = {}
        self._owners: dict[str, set[int]] = {}

    async def admit(self, owner: str, conversation_id: int, limit: int | None) -> bool:
        others = {cid for cid in self._owners.get(owner, ()) if cid in self._scores and cid != conversation_id}
        if limit is not None and len(others) >= limit:
            self._owners[owner] = others
            return False
        self._owners[owner] = others | {conversation_id}
        if len(self._owners) > _OWNERS_MAX:
            self._owners = {o: ids for o, ids in self._owners.items() if ids & self._scores.keys()}
        return True

    async def add(self, conversation_id: int, priority: str, queued_at: datetime) -> None:
        self._scores.setdefault(conversation_id, queue_score(priority, queued_at))

    async def remove(self, conversation_id: int) -> None:
        self._scores.pop(conversation_id, None)

    async def conversation_ids(self) -> list[int]:
        return sorted(self._scores, key=lambda cid: (self._scores[cid], cid))

    async def position(self, conversation_id: int) -> int | None:
        if conversation_id not in self._scores:
            return None
        return (await self.conversation_ids()).index(conversation_id) + 1

    async def front_time(self, priority: str) -> datetime | None:
        low, high = class_range(priority)
        scores = [score for score in self._scores.values() if low <= score <= high]
        return score_time(min(scores), priority) if scores else None

    async def restore(self, entries: Iterable[tuple[int, str, datetime]]) -> list[int]:
        added = [cid for cid, _, _ in entries if cid not in self._scores]
        for cid, priority, at in entries:
            await self.add(cid, priority, at)
        return added

    async def crisis_count(self) -> int:
        low, high = class_range("crisis")
        return sum(1 for score in self._scores.values() if low <= score <= high)


# --- what each queued resident and the consoles were last told ---------------------------


class Told(Protocol):
    """What was last sent, per field (a conversation id, or "consoles"), across every process:
    a queue update goes only where it changes something."""

    async def changed(self, values: dict[str, str]) -> list[str]:
        """Record ``values``; the fields whose value differs from what was recorded (to send)."""

    async def keep_only(self, fields: Iterable[str]) -> None:
        """Forget every other field."""


class MemoryTold:
    def __init__(self) -> None:
        self._values: dict[str, str] = {}

    async def changed(self, values: dict[str, str]) -> list[str]:
        changed = [field for field, value in values.items() if self._values.get(field) != value]
        self._values.update(values)
        return changed

    async def keep_only(self, fields: Iterable[str]) -> None:
        keep = set(fields)
        self._values = {k: v for k, v in self._values.items() if k in keep}
