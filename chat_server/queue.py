"""The counsellor queue: conversations waiting for a counsellor, crisis first,
then first come, first served.

In Redis (a sorted set under ``POLKU_REDIS_PREFIX``) when it is configured,
so every process sees one queue; in this process's memory otherwise. The
database's ``conversations.handoff_state`` is the truth; the queue is its
ordered index and is restored from the database at startup (``restore``).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Iterable, Protocol

from redis import asyncio as aioredis

from .redis_backend import redis_errors

# Crisis conversations sort before every normal one: the score's priority part
# dwarfs any millisecond timestamp (about 1.8e12 now, 1e13 in the year 2286).
_PRIORITY_OFFSET = {"crisis": 0, "normal": 10**13}


def queue_score(priority: str, queued_at: datetime) -> int:
    """Sort key: priority class first, then the time the conversation was queued."""
    return _PRIORITY_OFFSET.get(priority, _PRIORITY_OFFSET["normal"]) + int(queued_at.timestamp() * 1000)


def _class_range(priority: str) -> tuple[int, int]:
    low = _PRIORITY_OFFSET.get(priority, _PRIORITY_OFFSET["normal"])
    return low, low + 10**13 - 1


def _score_time(score: int, priority: str) -> datetime:
    ms = int(score) - _class_range(priority)[0]
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

    async def restore(self, entries: Iterable[tuple[int, str, datetime]]) -> None:
        """Add what the database says is queued: (conversation id, priority, queued at).

        Only adds: another process may have queued a conversation whose
        transaction has not committed yet, and removing it would lose it."""


class MemoryQueue:
    """The queue of a single process (no Redis configured)."""

    def __init__(self) -> None:
        self._scores: dict[int, int] = {}

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
        low, high = _class_range(priority)
        scores = [score for score in self._scores.values() if low <= score <= high]
        return _score_time(min(scores), priority) if scores else None

    async def restore(self, entries: Iterable[tuple[int, str, datetime]]) -> None:
        for cid, priority, at in entries:
            await self.add(cid, priority, at)


class RedisQueue:
    """The queue shared by every process, as a Redis sorted set."""

    def __init__(self, redis: aioredis.Redis, prefix: str) -> None:
        self._redis = redis
        self._key = f"{prefix}queue"

    async def add(self, conversation_id: int, priority: str, queued_at: datetime) -> None:
        async with redis_errors():
            await self._redis.zadd(self._key, {str(conversation_id): queue_score(priority, queued_at)}, nx=True)

    async def remove(self, conversation_id: int) -> None:
        async with redis_errors():
            await self._redis.zrem(self._key, str(conversation_id))

    async def position(self, conversation_id: int) -> int | None:
        async with redis_errors():
            rank = await self._redis.zrank(self._key, str(conversation_id))
        return None if rank is None else rank + 1

    async def conversation_ids(self) -> list[int]:
        async with redis_errors():
            members = await self._redis.zrange(self._key, 0, -1)
        return [int(m) for m in members]

    async def front_time(self, priority: str) -> datetime | None:
        low, high = _class_range(priority)
        async with redis_errors():
            first = await self._redis.zrangebyscore(self._key, low, high, start=0, num=1, withscores=True)
        return _score_time(int(first[0][1]), priority) if first else None

    async def restore(self, entries: Iterable[tuple[int, str, datetime]]) -> None:
        mapping = {str(cid): queue_score(priority, at) for cid, priority, at in entries}
        if mapping:
            async with redis_errors():
                await self._redis.zadd(self._key, mapping, nx=True)
