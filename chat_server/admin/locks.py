"""A lock that only one chat server process holds: a Redis key when Redis is
configured (set if absent, with an expiry; released only by its holder),
this process's own when not (one process is all there is then)."""

from __future__ import annotations

import contextlib
import logging
import os
from typing import Any, AsyncIterator

log = logging.getLogger(__name__)

_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


@contextlib.asynccontextmanager
async def cluster_lock(redis: Any, key: str, ttl_secs: int) -> AsyncIterator[bool]:
    """Yields whether this process got the lock; without Redis it always does."""
    if redis is None:
        yield True
        return
    token = os.urandom(12).hex()
    acquired = bool(await redis.set(key, token, nx=True, ex=ttl_secs))
    try:
        yield acquired
    finally:
        if acquired:
            try:
                await redis.eval(_RELEASE, 1, key, token)
            except Exception as exc:  # it expires by itself
                log.warning("could not release lock %s: %s", key, type(exc).__name__)
