"""Flood protection: sliding one-minute windows per resident session and per
client address, and the resident sockets each address holds open.

Counted in Redis when it is configured, so a limit holds across every server
process; in memory otherwise. Keys are hashes, so neither a session id nor an
address is written anywhere, and they expire with the window.

Open sockets are counted per address and per server process (a Redis hash
whose fields are the processes), so the count of a process that died without
closing its sockets is dropped as soon as its heartbeat key expires, instead
of holding the address's places for ever.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ipaddress
import logging
import secrets
import time
import uuid
from collections import deque
from typing import Mapping, Protocol, Sequence

from redis import asyncio as aioredis

from .errors import BackendUnavailable, ConfigurationError, RateLimited
from .redis_backend import redis_errors

log = logging.getLogger(__name__)

RATE_WINDOW_SECS = 60.0
_MEMORY_MAX_KEYS = 50_000  # prune idle windows beyond this many

# Drop what left the window; admit the hit only while under the limit, so a
# refused hit does not extend the block.
_SLIDING_WINDOW_LUA = """
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) >= limit then
  return 0
end
redis.call('ZADD', KEYS[1], now, ARGV[4])
redis.call('PEXPIRE', KEYS[1], math.ceil(window * 1000))
return 1
"""


# The same for several windows in one call, in order, stopping at the first full one
# (whose index, from 1, it returns; 0: all admitted). ARGV: now, window, then a limit
# and a member per key.
_SLIDING_WINDOWS_LUA = """
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
for i = 1, #KEYS do
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now - window)
  if redis.call('ZCARD', KEYS[i]) >= tonumber(ARGV[1 + 2 * i]) then
    return i
  end
  redis.call('ZADD', KEYS[i], now, ARGV[2 + 2 * i])
  redis.call('PEXPIRE', KEYS[i], math.ceil(window * 1000))
end
return 0
"""


def _key(kind: str, value: str) -> str:
    return kind + ":" + hashlib.sha256(f"{kind}\0{value}".encode()).hexdigest()[:32]


def address_key(kind: str, address: str) -> str:
    """A key naming one client address for ``kind`` of count (a hash: the address is never stored)."""
    return _key(kind, address)


class Counter(Protocol):
    async def hit(self, key: str, limit: int) -> bool:
        """Count one hit; False (and not counted) when the window is full."""

    async def hit_all(self, hits: Sequence[tuple[str, int]]) -> int | None:
        """``hit`` for each (key, limit) in order, stopping at the first refused:
        its index, or None when every one was admitted (one round trip in Redis)."""


class MemoryCounter:
    def __init__(self, window_secs: float = RATE_WINDOW_SECS) -> None:
        self._window_secs = window_secs
        self._hits: dict[str, deque[float]] = {}

    async def hit(self, key: str, limit: int) -> bool:
        now = time.monotonic()
        hits = self._hits.setdefault(key, deque())
        while hits and hits[0] <= now - self._window_secs:
            hits.popleft()
        if len(hits) >= limit:
            return False
        hits.append(now)
        if len(self._hits) > _MEMORY_MAX_KEYS:
            self._prune(now)
        return True

    async def hit_all(self, hits: Sequence[tuple[str, int]]) -> int | None:
        for index, (key, limit) in enumerate(hits):
            if not await self.hit(key, limit):
                return index
        return None

    def _prune(self, now: float) -> None:
        self._hits = {k: v for k, v in self._hits.items() if v and v[-1] > now - self._window_secs}


class RedisCounter:
    def __init__(self, redis: aioredis.Redis, prefix: str, window_secs: float = RATE_WINDOW_SECS) -> None:
        self._prefix = f"{prefix}rate:"
        self._window_secs = window_secs
        self._script = redis.register_script(_SLIDING_WINDOW_LUA)
        self._scripts = redis.register_script(_SLIDING_WINDOWS_LUA)

    async def hit(self, key: str, limit: int) -> bool:
        async with redis_errors():
            admitted = await self._script(
                keys=[self._prefix + key],
                args=[time.time(), self._window_secs, limit, uuid.uuid4().hex])
        return bool(admitted)

    async def hit_all(self, hits: Sequence[tuple[str, int]]) -> int | None:
        args: list = [time.time(), self._window_secs]
        for _, limit in hits:
            args += [limit, uuid.uuid4().hex]
        async with redis_errors():
            refused = await self._scripts(keys=[self._prefix + key for key, _ in hits], args=args)
        return int(refused) - 1 if int(refused) else None


class RateLimits:
    """The resident limits of the settings, over one counter."""

    def __init__(self, counter: Counter, per_session_per_min: int, per_address_per_min: int) -> None:
        self._counter = counter
        self._per_session = per_session_per_min
        self._per_address = per_address_per_min

    async def check_address(self, address: str, client_id: str | None = None) -> None:
        if not await self._counter.hit(_key("address", address), self._per_address):
            raise RateLimited("address", client_id=client_id)

    async def check_session(self, session_hash: str, client_id: str | None = None) -> None:
        if not await self._counter.hit(_key("session", session_hash), self._per_session):
            raise RateLimited("session", client_id=client_id)

    async def check_message(self, address: str, session_hash: str, client_id: str | None = None) -> None:
        """``check_address`` then ``check_session`` (a session's message), in one round trip."""
        refused = await self._counter.hit_all([(_key("address", address), self._per_address),
                                               (_key("session", session_hash), self._per_session)])
        if refused is not None:
            raise RateLimited("address" if refused == 0 else "session", client_id=client_id)


# --- Open sockets per address --------------------------------------------------------

# Sum the live processes' sockets of the address (dropping the fields of processes
# whose heartbeat key expired: they died without closing theirs); admit one more
# only under the limit.
_SOCKET_ACQUIRE_LUA = """
local fields = redis.call('HGETALL', KEYS[1])
local total = 0
for i = 1, #fields, 2 do
  local process = fields[i]
  if process ~= ARGV[1] and redis.call('EXISTS', ARGV[3] .. process) == 0 then
    redis.call('HDEL', KEYS[1], process)
  else
    total = total + tonumber(fields[i + 1])
  end
end
if total >= tonumber(ARGV[2]) then
  return 0
end
redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1
"""

_SOCKET_RELEASE_LUA = """
if redis.call('HINCRBY', KEYS[1], ARGV[1], -1) <= 0 then
  redis.call('HDEL', KEYS[1], ARGV[1])
end
return 1
"""

SOCKET_PROCESS_TTL_SECS = 30.0
SOCKET_HEARTBEAT_SECS = 10.0
_SOCKET_KEY_TTL_MS = 24 * 3600 * 1000  # an address's hash outlives no socket by more than this


class SocketCounter(Protocol):
    async def acquire(self, address: str, limit: int) -> bool:
        """Count one more open socket of ``address``; False (not counted) at the limit."""

    async def release(self, address: str) -> None:
        """One socket of ``address`` closed (only after an acquire that returned True)."""


class MemorySocketCounter:
    def __init__(self) -> None:
        self._open: dict[str, int] = {}

    async def acquire(self, address: str, limit: int) -> bool:
        key = address_key("sockets", address)
        if self._open.get(key, 0) >= limit:
            return False
        self._open[key] = self._open.get(key, 0) + 1
        return True

    async def release(self, address: str) -> None:
        key = address_key("sockets", address)
        left = self._open.get(key, 0) - 1
        if left > 0:
            self._open[key] = left
        else:
            self._open.pop(key, None)

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass


class RedisSocketCounter:
    """Open sockets per address over every process: a hash per address, a field per process."""

    def __init__(self, redis: aioredis.Redis, prefix: str) -> None:
        self._redis = redis
        self._prefix = f"{prefix}sockets:"
        self._alive_prefix = f"{prefix}sockets_process:"
        self._process = secrets.token_hex(8)
        self._acquire = redis.register_script(_SOCKET_ACQUIRE_LUA)
        self._release = redis.register_script(_SOCKET_RELEASE_LUA)
        self._task: asyncio.Task | None = None

    async def _heartbeat_once(self) -> None:
        async with redis_errors():
            await self._redis.set(self._alive_prefix + self._process, "1",
                                  px=int(SOCKET_PROCESS_TTL_SECS * 1000))

    async def start(self) -> None:
        with contextlib.suppress(BackendUnavailable):
            await self._heartbeat_once()
        self._task = asyncio.get_running_loop().create_task(self._heartbeat())

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(SOCKET_HEARTBEAT_SECS)
            try:
                await self._heartbeat_once()
            except BackendUnavailable as exc:
                log.warning("socket count heartbeat failed: %s", exc.detail)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(Exception):  # this process's counts go with its heartbeat key
            await self._redis.delete(self._alive_prefix + self._process)

    async def acquire(self, address: str, limit: int) -> bool:
        async with redis_errors():
            admitted = await self._acquire(
                keys=[self._prefix + address_key("a", address)],
                args=[self._process, limit, self._alive_prefix, _SOCKET_KEY_TTL_MS])
        return bool(admitted)

    async def release(self, address: str) -> None:
        async with redis_errors():
            await self._release(keys=[self._prefix + address_key("a", address)], args=[self._process])


# --- Client address ---------------------------------------------------------------

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_trusted_proxies(values: Sequence[str]) -> tuple[Network, ...]:
    networks = []
    for value in values:
        try:
            networks.append(ipaddress.ip_network(value, strict=False))
        except ValueError as exc:
            raise ConfigurationError(
                f"POLKU_TRUSTED_PROXIES: {value!r} is not an address or network (10.0.0.5, 10.0.0.0/24)"
            ) from exc
    return tuple(networks)


def _is_trusted(address: str, trusted: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in trusted)


def client_address(peer: str | None, headers: Mapping[str, str], trusted: Sequence[Network]) -> str:
    """The resident's address: the peer, or, when the peer is a trusted proxy,
    the nearest X-Forwarded-For hop that is not one of our proxies."""
    address = peer or "unknown"
    if not trusted or not _is_trusted(address, trusted):
        return address
    forwarded = [h.strip() for h in headers.get("X-Forwarded-For", "").split(",") if h.strip()]
    for hop in reversed(forwarded):
        if not _is_trusted(hop, trusted):
            return hop
    return forwarded[0] if forwarded else address
