"""Redis connections of the chat server: the shared client (queue, presence,
rate limits) and the Socket.IO manager that carries events between processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from typing import AsyncIterator

import socketio
from redis import asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import RedisError

from .errors import BackendUnavailable

log = logging.getLogger(__name__)

REDIS_CONNECT_TIMEOUT_SECS = 2.0
REDIS_COMMAND_TIMEOUT_SECS = 2.0
SUBSCRIBE_WAIT_SECS = 5.0
_PROBE_INTERVAL_SECS = 0.05
REDIS_RETRIES = 2
REDIS_RETRY_BACKOFF_CAP_SECS = 0.2


def _retry() -> Retry:
    # redis-py's default backs off for up to 14 s per command: a resident would
    # wait that long for `server_busy`, and every emit would stall as long.
    return Retry(ExponentialWithJitterBackoff(base=0.02, cap=REDIS_RETRY_BACKOFF_CAP_SECS), REDIS_RETRIES)


def create_redis(url: str) -> aioredis.Redis:
    """A client that fails fast: a dead Redis must become `server_busy`, not a hang."""
    return aioredis.Redis.from_url(
        url,
        socket_connect_timeout=REDIS_CONNECT_TIMEOUT_SECS,
        socket_timeout=REDIS_COMMAND_TIMEOUT_SECS,
        health_check_interval=30,
        retry=_retry(),
    )


@contextlib.asynccontextmanager
async def redis_errors() -> AsyncIterator[None]:
    """Turn Redis and connection failures into BackendUnavailable("redis")."""
    try:
        yield
    except (RedisError, OSError, asyncio.TimeoutError) as exc:
        raise BackendUnavailable("redis", exc) from exc


class SocketIORedisManager(socketio.AsyncRedisManager):
    """python-socketio's Redis manager that can tell when its subscription is live.

    Until the manager has subscribed to the channel, events that other
    processes publish are lost; ``wait_subscribed`` lets startup (and tests
    with several processes) wait for it by publishing a probe and waiting to
    hear it back.
    """

    _PROBE_METHOD = "polku_probe"

    def __init__(self, url: str, channel: str) -> None:
        # No socket_timeout here: the listener blocks on the subscription for as
        # long as nothing is published, and a timeout would drop it.
        super().__init__(url, channel=channel,
                         redis_options={"socket_connect_timeout": REDIS_CONNECT_TIMEOUT_SECS,
                                        "retry": _retry()})
        self._probe_token = secrets.token_hex(8)
        self._heard_probe = False
        self._retired: list = []

    def _redis_connect(self) -> None:
        # The base class replaces its clients on every (re)connect and drops
        # the old ones unclosed; keep them to close them on shutdown.
        self._retired.extend(c for c in (self.redis, self.pubsub) if c is not None)
        super()._redis_connect()

    async def _listen(self):
        async for data in super()._listen():
            if isinstance(data, bytes) and self._PROBE_METHOD.encode() in data:
                with contextlib.suppress(ValueError):
                    if json.loads(data).get("token") == self._probe_token:
                        self._heard_probe = True
            yield data  # the base class ignores methods it does not know

    async def wait_subscribed(self, timeout_secs: float = SUBSCRIBE_WAIT_SECS) -> bool:
        deadline = time.monotonic() + timeout_secs
        while not self._heard_probe and time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                await self._publish({"method": self._PROBE_METHOD, "host_id": self.host_id,
                                     "token": self._probe_token})
            await asyncio.sleep(_PROBE_INTERVAL_SECS)
        return self._heard_probe

    async def close(self) -> None:
        thread = getattr(self, "thread", None)
        if thread is not None:
            thread.cancel()
            with contextlib.suppress(BaseException):
                await thread
        for client in (*self._retired, self.pubsub, self.redis):
            if client is not None:
                with contextlib.suppress(Exception):
                    await client.aclose()
