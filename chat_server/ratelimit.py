"""Flood protection: sliding one-minute windows per resident session and per
client address.

Counted in Redis when it is configured, so a limit holds across every server
process; in memory otherwise. Keys are hashes, so neither a session id nor an
address is written anywhere, and they expire with the window.
"""

from __future__ import annotations

import hashlib
import ipaddress
import time
import uuid
from collections import deque
from typing import Mapping, Protocol, Sequence

from redis import asyncio as aioredis

from .errors import ConfigurationError, RateLimited
from .redis_backend import redis_errors

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


def _key(kind: str, value: str) -> str:
    return kind + ":" + hashlib.sha256(f"{kind}\0{value}".encode()).hexdigest()[:32]


class Counter(Protocol):
    async def hit(self, key: str, limit: int) -> bool:
        """Count one hit; False (and not counted) when the window is full."""


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

    def _prune(self, now: float) -> None:
        self._hits = {k: v for k, v in self._hits.items() if v and v[-1] > now - self._window_secs}


class RedisCounter:
    def __init__(self, redis: aioredis.Redis, prefix: str, window_secs: float = RATE_WINDOW_SECS) -> None:
        self._prefix = f"{prefix}rate:"
        self._window_secs = window_secs
        self._script = redis.register_script(_SLIDING_WINDOW_LUA)

    async def hit(self, key: str, limit: int) -> bool:
        async with redis_errors():
            admitted = await self._script(
                keys=[self._prefix + key],
                args=[time.time(), self._window_secs, limit, uuid.uuid4().hex])
        return bool(admitted)


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
