"""Which counsellors are online, for queue estimates, the "unavailable" state
and the grace period of a counsellor who lost their connection.

A counsellor is online while a console of theirs is connected to the
``/counsellor`` namespace of some server process. Each process heartbeats the
counsellors connected to it (``counsellor/sweeps.py``, every
``PRESENCE_HEARTBEAT_SECS``) and says ``leave`` when the last of their
sockets on it closes; a process that dies simply stops heartbeating, and its
counsellors count as gone after ``PRESENCE_TTL_SECS``. ``last_seen`` tells
since when a counsellor who is not online has been gone.

In Redis (shared by every process) when it is configured, in this process's
memory otherwise. While Redis is away, the reads answer what they last read
(a bot turn asks whether anyone is online and must not fail for it), and
heartbeats fail until it is back; after a Redis restart the counsellors are
online again with their process's next heartbeat (the queue keeper sends one
at once, ``app.py``).
"""

from __future__ import annotations

import secrets
import time
from typing import Iterable, Protocol

from redis import asyncio as aioredis

from .errors import BackendUnavailable
from .redis_backend import RedisDown, redis_errors

PRESENCE_TTL_SECS = 30.0
PRESENCE_HEARTBEAT_SECS = 10.0
LAST_SEEN_TTL_SECS = 7 * 24 * 3600


class Presence(Protocol):
    async def online_count(self) -> int:
        """Counsellors online now (across every process)."""

    async def online_ids(self) -> set[str]:
        """The ids of the counsellors online now (across every process)."""

    async def heartbeat(self, counsellor_id: str, display_name: str | None = None) -> None:
        """The counsellor is online on this process; call at least every PRESENCE_TTL_SECS."""

    async def leave(self, counsellor_id: str) -> None:
        """The counsellor's last socket on this process closed."""

    async def display_name(self, counsellor_id: str) -> str | None:
        """The name residents see for this counsellor, when known."""

    async def last_seen(self, counsellor_ids: Iterable[str]) -> dict[str, float | None]:
        """Wall-clock time (epoch seconds) each was last known online; None when never."""

    async def mark_seen(self, counsellor_id: str, at: float) -> None:
        """Remember ``at`` as the last time the counsellor was seen (unless a later one is known)."""


class MemoryPresence:
    def __init__(self) -> None:
        self._expires: dict[str, float] = {}
        self._names: dict[str, str] = {}
        self._seen: dict[str, float] = {}

    async def online_ids(self) -> set[str]:
        now = time.monotonic()
        self._expires = {cid: at for cid, at in self._expires.items() if at > now}
        return set(self._expires)

    async def online_count(self) -> int:
        return len(await self.online_ids())

    async def heartbeat(self, counsellor_id: str, display_name: str | None = None) -> None:
        self._expires[counsellor_id] = time.monotonic() + PRESENCE_TTL_SECS
        self._seen[counsellor_id] = time.time()
        if display_name:
            self._names[counsellor_id] = display_name

    async def leave(self, counsellor_id: str) -> None:
        if self._expires.pop(counsellor_id, None) is not None:
            self._seen[counsellor_id] = time.time()

    async def display_name(self, counsellor_id: str) -> str | None:
        return self._names.get(counsellor_id)

    async def last_seen(self, counsellor_ids: Iterable[str]) -> dict[str, float | None]:
        return {cid: self._seen.get(cid) for cid in counsellor_ids}

    async def mark_seen(self, counsellor_id: str, at: float) -> None:
        self._seen[counsellor_id] = max(at, self._seen.get(counsellor_id, at))


class RedisPresence:
    """Presence shared by every process.

    A sorted set of ``<counsellor id>@<process>`` scored by expiry time (so one
    process's leave does not hide the counsellor's console on another), a hash
    of display names and a hash of last-seen times."""

    def __init__(self, redis: aioredis.Redis, prefix: str) -> None:
        self._redis = redis
        self._key = f"{prefix}presence"
        self._names_key = f"{prefix}counsellor_names"
        self._seen_key = f"{prefix}counsellor_seen"
        self._process = secrets.token_hex(6)
        # The last answers read, for while Redis is away.
        self._last_online: set[str] = set()
        self._last_names: dict[str, str] = {}
        self._down = RedisDown()

    def _member(self, counsellor_id: str) -> str:
        return f"{counsellor_id}@{self._process}"

    async def online_ids(self) -> set[str]:
        if self._down:
            return set(self._last_online)
        try:
            async with redis_errors():
                members = await self._redis.zrangebyscore(self._key, time.time(), "+inf")
        except BackendUnavailable:
            self._down.failed()
            return set(self._last_online)
        self._last_online = {(m.decode() if isinstance(m, bytes) else m).rsplit("@", 1)[0] for m in members}
        return set(self._last_online)

    async def online_count(self) -> int:
        return len(await self.online_ids())

    async def heartbeat(self, counsellor_id: str, display_name: str | None = None) -> None:
        now = time.time()
        async with redis_errors():
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.zadd(self._key, {self._member(counsellor_id): now + PRESENCE_TTL_SECS})
                pipe.zremrangebyscore(self._key, "-inf", now)
                pipe.hset(self._seen_key, counsellor_id, repr(now))
                pipe.expire(self._seen_key, int(LAST_SEEN_TTL_SECS))
                if display_name:
                    pipe.hset(self._names_key, counsellor_id, display_name)
                await pipe.execute()

    async def leave(self, counsellor_id: str) -> None:
        async with redis_errors():
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.zrem(self._key, self._member(counsellor_id))
                pipe.hset(self._seen_key, counsellor_id, repr(time.time()))
                await pipe.execute()

    async def display_name(self, counsellor_id: str) -> str | None:
        if self._down:
            return self._last_names.get(counsellor_id)
        try:
            async with redis_errors():
                name = await self._redis.hget(self._names_key, counsellor_id)
        except BackendUnavailable:
            self._down.failed()
            return self._last_names.get(counsellor_id)
        name = name.decode() if isinstance(name, bytes) else name
        if name:
            self._last_names[counsellor_id] = name
        return name

    async def last_seen(self, counsellor_ids: Iterable[str]) -> dict[str, float | None]:
        ids = list(counsellor_ids)
        if not ids:
            return {}
        async with redis_errors():
            values = await self._redis.hmget(self._seen_key, ids)
        return {cid: float(v) if v is not None else None for cid, v in zip(ids, values)}

    async def mark_seen(self, counsellor_id: str, at: float) -> None:
        async with redis_errors():
            # Only when nothing is known: a heartbeat elsewhere may have written a later time.
            await self._redis.hsetnx(self._seen_key, counsellor_id, repr(at))
