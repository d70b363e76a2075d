"""The counsellor queue shared by every process: a Redis sorted set under
``POLKU_REDIS_PREFIX`` (``RedisQueue``), its keeper and what queued residents were
last told (``RedisTold``). The interface and the single-process queue are in ``queue``.

The database's ``conversations.handoff_state`` is the truth; the queue is its
ordered index and is restored from the database at startup (``restore``)
and, by ``QueueKeeper``, whenever Redis lost it (Redis keeps nothing on disk:
a restart empties it) or missed a change while it was away.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime
from typing import Any, Awaitable, Callable, Iterable

from redis import asyncio as aioredis

from .errors import BackendUnavailable
from .queue import class_range, queue_score, score_time
from .redis_backend import redis_errors

log = logging.getLogger(__name__)

# How often each process checks that Redis still holds the queue (one SET NX).
QUEUE_CHECK_SECS = 1.0
# How often the queue is compared in full with the database.
QUEUE_FULL_CHECK_SECS = 30.0

_OWNER_TTL_MS = 24 * 3600 * 1000


# Count the owner's conversations still in the queue (forgetting the others); admit
# this one only under the limit (a negative limit: always).
_ADMIT_LUA = """
local members = redis.call('SMEMBERS', KEYS[1])
local n = 0
for _, member in ipairs(members) do
  if member ~= ARGV[1] then
    if redis.call('ZSCORE', KEYS[2], member) then
      n = n + 1
    else
      redis.call('SREM', KEYS[1], member)
    end
  end
end
local limit = tonumber(ARGV[2])
if limit >= 0 and n >= limit then
  return 0
end
redis.call('SADD', KEYS[1], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"""


class RedisQueue:
    """The queue shared by every process, as a Redis sorted set.

    While Redis is away, ``add`` does not fail (the database has the
    conversation as queued, and a resident in crisis must not get an error
    for want of an index): it marks the queue ``lost`` and the keeper adds
    the conversation when Redis is back. The order (``position``,
    ``conversation_ids``) is then read from the database (``database_queue``,
    with the conversations this process queued meanwhile, whose transactions
    may not have committed yet). Removing still needs Redis (a pick-up waits
    for it)."""

    def __init__(self, redis: aioredis.Redis, prefix: str,
                 database_queue: Callable[[], Awaitable[list[tuple[int, str, datetime]]]] | None = None) -> None:
        self._redis = redis
        self._key = f"{prefix}queue"
        self.marker_key = f"{prefix}queue_kept"  # present while Redis holds the restored queue
        self.lost = False  # a change did not reach Redis: restore from the database
        self._database_queue = database_queue
        # Queued by this process while Redis was away: id -> (score, monotonic time).
        self._unsynced: dict[int, tuple[int, float]] = {}
        self._owner_prefix = f"{prefix}queued_by:"
        self._admit = redis.register_script(_ADMIT_LUA)

    async def admit(self, owner: str, conversation_id: int, limit: int | None) -> bool:
        async with redis_errors():
            admitted = await self._admit(keys=[self._owner_prefix + owner, self._key],
                                         args=[str(conversation_id), -1 if limit is None else limit,
                                               _OWNER_TTL_MS])
        return bool(admitted)

    async def add(self, conversation_id: int, priority: str, queued_at: datetime) -> None:
        score = queue_score(priority, queued_at)
        try:
            async with redis_errors():
                await self._redis.zadd(self._key, {str(conversation_id): score}, nx=True)
        except BackendUnavailable as exc:
            self.lost = True
            self._unsynced[conversation_id] = (score, time.monotonic())
            log.warning("conversation %s queued without Redis (%s); the queue is restored when it is back",
                        conversation_id, exc.detail)

    async def remove(self, conversation_id: int) -> None:
        self._unsynced.pop(conversation_id, None)
        async with redis_errors():
            await self._redis.zrem(self._key, str(conversation_id))

    async def _database_order(self) -> list[int]:
        """The order while Redis is away: the database's queued conversations and this
        process's unsynced ones. Raises BackendUnavailable when there is no database
        to ask (or it fails too)."""
        if self._database_queue is None:
            raise BackendUnavailable("redis")
        try:
            entries = await self._database_queue()
        except BackendUnavailable:
            raise
        except Exception as exc:
            raise BackendUnavailable("database", exc) from exc
        scores = {cid: queue_score(priority, at) for cid, priority, at in entries}
        for cid, (score, _) in self._unsynced.items():
            scores.setdefault(cid, score)
        return sorted(scores, key=lambda cid: (scores[cid], cid))

    def synced(self, database_ids: set[int], max_age_secs: float = QUEUE_FULL_CHECK_SECS) -> None:
        """The keeper restored the queue: forget the unsynced entries the database has
        (and old ones, whose transactions did not commit)."""
        now = time.monotonic()
        self._unsynced = {cid: (score, at) for cid, (score, at) in self._unsynced.items()
                          if cid not in database_ids and now - at < max_age_secs}
        if self._unsynced:
            self.lost = True  # their commits may still come: look again next round

    async def position(self, conversation_id: int) -> int | None:
        try:
            async with redis_errors():
                rank = await self._redis.zrank(self._key, str(conversation_id))
        except BackendUnavailable:
            self.lost = True
            try:
                order = await self._database_order()
            except BackendUnavailable:
                return None
            return order.index(conversation_id) + 1 if conversation_id in order else None
        return None if rank is None else rank + 1

    async def conversation_ids(self) -> list[int]:
        try:
            async with redis_errors():
                members = await self._redis.zrange(self._key, 0, -1)
        except BackendUnavailable:
            self.lost = True
            return await self._database_order()
        return [int(m) for m in members]

    async def front_time(self, priority: str) -> datetime | None:
        low, high = class_range(priority)
        try:
            async with redis_errors():
                first = await self._redis.zrangebyscore(self._key, low, high, start=0, num=1, withscores=True)
        except BackendUnavailable:
            self.lost = True
            return None
        return score_time(int(first[0][1]), priority) if first else None

    async def crisis_count(self) -> int:
        low, high = class_range("crisis")
        try:
            async with redis_errors():
                return int(await self._redis.zcount(self._key, low, high))
        except BackendUnavailable:
            if self._database_queue is None:
                raise
            self.lost = True
            return sum(1 for _, priority, _ in await self._database_queue() if priority == "crisis")

    async def restore(self, entries: Iterable[tuple[int, str, datetime]]) -> list[int]:
        mapping = {str(cid): queue_score(priority, at) for cid, priority, at in entries}
        if not mapping:
            return []
        async with redis_errors():
            async with self._redis.pipeline(transaction=False) as pipe:
                for member in mapping:
                    pipe.zscore(self._key, member)
                pipe.zadd(self._key, mapping, nx=True)
                *scores, _ = await pipe.execute()
        return [int(member) for member, score in zip(mapping, scores) if score is None]

    async def mark_kept(self) -> bool:
        """Set the marker; True when it was missing (Redis is new, or was emptied)."""
        async with redis_errors():
            return bool(await self._redis.set(self.marker_key, "1", nx=True))

    async def discard(self, conversation_ids: Iterable[int]) -> None:
        ids = [str(cid) for cid in conversation_ids]
        if ids:
            async with redis_errors():
                await self._redis.zrem(self._key, *ids)


class QueueKeeper:
    """Keeps the Redis queue whole: after Redis lost it (a restart: it keeps
    nothing on disk) or missed a change (added while it was away), restores it
    from the database, then calls ``on_restored`` (which tells the queued
    residents their places and the consoles the queue).

    Every QUEUE_CHECK_SECS one SET NX of a marker key tells whether Redis is
    the one the queue was restored into; the whole queue is compared with the
    database every QUEUE_FULL_CHECK_SECS, and a conversation that is in Redis
    but not queued in the database at two comparisons in a row (left behind
    by a process killed between its Redis write and its commit) is removed."""

    def __init__(self, queue: RedisQueue, queued: Callable[[], Awaitable[list[tuple[int, str, datetime]]]],
                 on_restored: Callable[[list[int]], Awaitable[Any]], *,
                 check_secs: float = QUEUE_CHECK_SECS, full_check_secs: float = QUEUE_FULL_CHECK_SECS) -> None:
        self.queue = queue
        self._queued = queued
        self._on_restored = on_restored
        self.check_secs = check_secs
        self.full_check_secs = full_check_secs
        self._next_full = time.monotonic() + full_check_secs
        self._suspects: set[int] = set()
        self._wake = asyncio.Event()
        self._resend = False
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    def wake(self, resend: bool = False) -> None:
        """Check now. ``resend``: and call ``on_restored`` even when nothing was missing
        (this process's Socket.IO subscription was lost, so events of other processes,
        the queue's among them, may have missed its residents and consoles)."""
        self._resend = self._resend or resend
        self._wake.set()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass

    async def _run(self) -> None:
        failing = False
        while True:
            try:
                await self.check()
                if failing:
                    log.info("queue keeper: Redis and the database answer again")
                failing = False
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis or the database away: next round
                if not failing:
                    log.warning("queue keeper: cannot check the queue: %s", type(exc).__name__)
                failing = True
            try:
                await asyncio.wait_for(self._wake.wait(), self.check_secs)
            except TimeoutError:
                pass
            self._wake.clear()

    async def check(self) -> list[int]:
        """One round; returns the conversation ids put back into the queue."""
        emptied = await self.queue.mark_kept()
        full = time.monotonic() >= self._next_full
        resend = self._resend
        if not (emptied or self.queue.lost or full or resend):
            return []
        self.queue.lost = False  # before the read: a change lost during it sets it again
        try:
            entries = await self._queued()
            added = await self.queue.restore(entries)
        except BaseException:
            self.queue.lost = True
            raise
        self.queue.synced({cid for cid, _, _ in entries})
        if full:
            self._next_full = time.monotonic() + self.full_check_secs
            await self._drop_strays({cid for cid, _, _ in entries})
        if added:
            # A conversation picked up (removed from Redis) between the read and the
            # restore would be back as a stray: read again, and take those out.
            now_queued = {cid for cid, _, _ in await self._queued()}
            strays = [cid for cid in added if cid not in now_queued]
            await self.queue.discard(strays)
            added = [cid for cid in added if cid in now_queued]
        if added:
            log.warning("queue restored from the database: %d conversation(s) were missing from Redis%s",
                        len(added), " (Redis was emptied)" if emptied else "")
        if added or resend:
            self._resend = False
            await self._on_restored(added)
        return added

    async def _drop_strays(self, queued: set[int]) -> None:
        in_redis = set(await self.queue.conversation_ids())
        suspects = in_redis - queued
        strays = suspects & self._suspects
        self._suspects = suspects - strays
        if strays:
            # Read again: one may have been queued and committed since the first read.
            still = {cid for cid, _, _ in await self._queued()}
            strays = {cid for cid in strays if cid not in still}
            await self.queue.discard(strays)
            if strays:
                log.warning("queue: removed %d conversation(s) the database has not as queued", len(strays))
                await self._on_restored([])


# --- what each queued resident and the consoles were last told, in Redis -----------------

# ARGV: field, value, field, value, ...; returns the fields whose value changed (and
# records them).
_TOLD_CHANGED_LUA = """
local changed = {}
for i = 1, #ARGV, 2 do
  if redis.call('HGET', KEYS[1], ARGV[i]) ~= ARGV[i + 1] then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
    changed[#changed + 1] = ARGV[i]
  end
end
redis.call('PEXPIRE', KEYS[1], 86400000)
return changed
"""

# Keep only the given fields (the conversations still queued).
_TOLD_KEEP_LUA = """
local keep = {}
for i = 1, #ARGV do keep[ARGV[i]] = true end
for _, field in ipairs(redis.call('HKEYS', KEYS[1])) do
  if not keep[field] then redis.call('HDEL', KEYS[1], field) end
end
return 1
"""


class RedisTold:
    def __init__(self, redis: aioredis.Redis, key: str) -> None:
        self._key = key
        self._changed = redis.register_script(_TOLD_CHANGED_LUA)
        self._keep = redis.register_script(_TOLD_KEEP_LUA)

    async def changed(self, values: dict[str, str]) -> list[str]:
        if not values:
            return []
        args: list[str] = []
        for field, value in values.items():
            args += [field, value]
        async with redis_errors():
            changed = await self._changed(keys=[self._key], args=args)
        return [c.decode() if isinstance(c, bytes) else str(c) for c in changed]

    async def keep_only(self, fields: Iterable[str]) -> None:
        async with redis_errors():
            await self._keep(keys=[self._key], args=list(fields))
