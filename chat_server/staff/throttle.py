"""Growing delays for sign-in attempts, instead of a hard account lock.

A lock that anyone can trigger by typing wrong passwords for a known username
locks the team out of the console (the issue's complaint about the old
five-failures lock). Here every attempt is counted, before it is checked, on
several keys at once: the account and the address together, the account from
anywhere, and the address over every account. Each key lets a few attempts
through freely; after that the next attempt must wait 2^(n - free) seconds,
up to the key's cap. An attempt that comes too early is refused without
looking at the password (answer: wait N seconds). A success forgets the
account's keys, and takes its own attempt off the address's count.

So an attacker guessing one account's password gets at most about one try a
minute (ASVS 2.2.1: under 100 an hour), while its owner is delayed by at most
the account key's cap, never locked out. The keys are the submitted username
and address, hashed, whether the account exists or not: a known and an unknown
username cost the same. The counts decay: a key forgets after DECAY_SECS
without an attempt.

Counted in Redis when it is configured (one Lua script: check and count are
one step, so parallel attempts cannot all slip through), in memory otherwise.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Sequence

from redis import asyncio as aioredis

from ..redis_backend import redis_errors

DECAY_SECS = 900.0


@dataclass(frozen=True)
class Policy:
    free: int  # attempts without delay
    cap_secs: float  # the longest delay

    def delay(self, attempts: int) -> float:
        """Seconds an attempt must wait after the last one, with ``attempts`` already counted."""
        if attempts < self.free:
            return 0.0
        return min(self.cap_secs, 2.0 ** (attempts - self.free))


PAIR = Policy(free=3, cap_secs=60.0)  # this account from this address
ACCOUNT = Policy(free=10, cap_secs=60.0)  # this account from anywhere
ADDRESS = Policy(free=20, cap_secs=60.0)  # this address, every account
SECOND_FACTOR = Policy(free=3, cap_secs=60.0)  # TOTP or recovery codes of one account


def key(kind: str, *parts: str) -> str:
    digest = hashlib.sha256("\0".join((kind, *parts)).encode("utf-8", "replace")).hexdigest()[:32]
    return f"{kind}:{digest}"


# KEYS: the keys; ARGV: now, decay, then free and cap of each key. Returns the
# seconds to wait (as a string), "0" when the attempt is admitted and counted.
_ATTEMPT_LUA = """
local now = tonumber(ARGV[1])
local decay = tonumber(ARGV[2])
local wait = 0
for i, k in ipairs(KEYS) do
  local free = tonumber(ARGV[1 + 2 * i])
  local cap = tonumber(ARGV[2 + 2 * i])
  local v = redis.call('HMGET', k, 'n', 't')
  local n = tonumber(v[1]) or 0
  local t = tonumber(v[2]) or 0
  if n >= free then
    local d = math.min(cap, 2 ^ (n - free))
    local left = t + d - now
    if left > wait then wait = left end
  end
end
if wait > 0 then return tostring(wait) end
for i, k in ipairs(KEYS) do
  redis.call('HINCRBY', k, 'n', 1)
  redis.call('HSET', k, 't', tostring(now))
  redis.call('PEXPIRE', k, math.ceil(decay * 1000))
end
return "0"
"""

_UNCOUNT_LUA = """
local n = tonumber(redis.call('HGET', KEYS[1], 'n') or '0')
if n > 0 then redis.call('HINCRBY', KEYS[1], 'n', -1) end
return 1
"""


class Throttle:
    """Check-and-count of attempts over keys with policies; memory or Redis."""

    def __init__(self, redis: aioredis.Redis | None = None, prefix: str = "polku:") -> None:
        self._redis = redis
        self._prefix = prefix + "signin:"
        self.clock = time.time  # tests step it by hand
        self._memory: dict[str, tuple[int, float]] = {}
        if redis is not None:
            self._attempt = redis.register_script(_ATTEMPT_LUA)
            self._uncount = redis.register_script(_UNCOUNT_LUA)

    async def attempt(self, keys: Sequence[tuple[str, Policy]]) -> float:
        """0 when the attempt may go ahead (and it is counted on every key), else the seconds to wait."""
        now = self.clock()
        if self._redis is not None:
            args: list = [now, DECAY_SECS]
            for _, policy in keys:
                args += [policy.free, policy.cap_secs]
            async with redis_errors():
                wait = await self._attempt(keys=[self._prefix + k for k, _ in keys], args=args)
            return max(0.0, float(wait))
        self._forget_old(now)
        wait = 0.0
        for k, policy in keys:
            n, t = self._get(k, now)
            wait = max(wait, t + policy.delay(n) - now)
        if wait > 0:
            return wait
        for k, _ in keys:
            n, _t = self._get(k, now)
            self._memory[k] = (n + 1, now)
        return 0.0

    async def forget(self, keys: Sequence[str]) -> None:
        """A success: these keys start again from nothing."""
        if not keys:
            return
        if self._redis is not None:
            async with redis_errors():
                await self._redis.delete(*(self._prefix + k for k in keys))
            return
        for k in keys:
            self._memory.pop(k, None)

    async def uncount(self, k: str) -> None:
        """Take one counted attempt back (a success from a shared address)."""
        if self._redis is not None:
            async with redis_errors():
                await self._uncount(keys=[self._prefix + k])
            return
        if k in self._memory:
            n, t = self._memory[k]
            self._memory[k] = (max(0, n - 1), t)

    def _get(self, k: str, now: float) -> tuple[int, float]:
        n, t = self._memory.get(k, (0, 0.0))
        return (n, t) if t > now - DECAY_SECS else (0, 0.0)

    def _forget_old(self, now: float) -> None:
        if len(self._memory) > 10_000:
            self._memory = {k: v for k, v in self._memory.items() if v[1] > now - DECAY_SECS}


def wait_text_secs(wait: float) -> int:
    """A wait in whole seconds as the sign-in page and Retry-After say it: at least 1,
    rounded up (a wait a hair over a whole second, under 1 ms, is not a second more)."""
    return max(1, int(wait + 0.999))
