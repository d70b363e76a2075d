"""Redis connections of the chat server: the shared client (queue, presence,
rate limits) and the Socket.IO manager that carries events between processes.

Redis keeps nothing on disk here, and may be away for a while. While it is:
rate limits count in this process's memory (``FallbackCounter``), events
reach the sockets of this process directly (``SocketIORedisManager``: only
the other processes miss them), and when it is back the queue is restored
from the database (``queue_redis.QueueKeeper``). ``RedisDown`` remembers a recent
failure for a moment, so that a dead Redis costs each call nothing instead
of a connection attempt and its retries.
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
from .events import DirectDelivery

log = logging.getLogger(__name__)

REDIS_CONNECT_TIMEOUT_SECS = 2.0
REDIS_COMMAND_TIMEOUT_SECS = 2.0
SUBSCRIBE_WAIT_SECS = 5.0
# After a failure, Redis is left alone this long before it is tried again.
REDIS_DOWN_HOLD_SECS = 1.0
# The Socket.IO subscription is retried this often while Redis is away
# (python-socketio doubles its pause up to 60 s: the subscription would come
# back long after Redis, and events from other processes would be lost meanwhile).
RESUBSCRIBE_SECS = 0.5
_PROBE_INTERVAL_SECS = 0.05
REDIS_RETRIES = 2
REDIS_RETRY_BACKOFF_CAP_SECS = 0.2
# At most this many events in one published message (more wait for the next one).
PUBLISH_BATCH_MAX = 200


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


class RedisDown:
    """Remembers that Redis failed a moment ago, so that callers skip it for
    REDIS_DOWN_HOLD_SECS instead of each waiting for a failed connection."""

    def __init__(self, hold_secs: float = REDIS_DOWN_HOLD_SECS) -> None:
        self._hold_secs = hold_secs
        self._until = 0.0

    def __bool__(self) -> bool:
        return time.monotonic() < self._until

    def failed(self) -> None:
        self._until = time.monotonic() + self._hold_secs

    def worked(self) -> None:
        self._until = 0.0


class FallbackCounter:
    """Rate limits in Redis (shared by every process) and, while Redis is away,
    in this process's memory: residents keep being answered, and one address
    is still limited (per process) during the outage."""

    def __init__(self, redis_counter, memory_counter) -> None:
        self._redis = redis_counter
        self._memory = memory_counter
        self._down = RedisDown()
        self._warned = False

    async def hit(self, key: str, limit: int) -> bool:
        return await self._either("hit", key, limit)

    async def hit_all(self, hits) -> int | None:
        return await self._either("hit_all", hits)

    async def _either(self, method: str, *args):
        if not self._down:
            try:
                answer = await getattr(self._redis, method)(*args)
            except BackendUnavailable:
                self._down.failed()
                if not self._warned:
                    log.warning("Redis unavailable: rate limits count in this process until it is back")
                    self._warned = True
            else:
                if self._warned:
                    log.info("Redis is back: rate limits are shared again")
                    self._warned = False
                self._down.worked()
                return answer
        return await getattr(self._memory, method)(*args)


class SocketIORedisManager(socketio.AsyncRedisManager, DirectDelivery):
    """python-socketio's Redis manager that can tell when its subscription is live,
    and that publishes only what other processes need, batched.

    Until the manager has subscribed to the channel, events that other
    processes publish are lost; ``wait_subscribed`` lets startup (and tests
    with several processes) wait for it by publishing a probe and waiting to
    hear it back.

    python-socketio publishes every emit, one PUBLISH each (and every process,
    this one too, then reads and decodes it). Here an emit to a socket of this
    process is not published at all (a socket id lives in one process only),
    and the emits made in one turn of the event loop (a bot turn's: the ack,
    the answer, the consoles' copies) go out as one message (``_BATCH_METHOD``),
    in order; this process skips its own messages without decoding them.
    """

    _PROBE_METHOD = "polku_probe"
    _BATCH_METHOD = "polku_batch"

    def __init__(self, url: str, channel: str) -> None:
        # No socket_timeout here: the listener blocks on the subscription for as
        # long as nothing is published, and a timeout would drop it.
        super().__init__(url, channel=channel,
                         redis_options={"socket_connect_timeout": REDIS_CONNECT_TIMEOUT_SECS,
                                        "retry": _retry()})
        self._probe_token = secrets.token_hex(8)
        self._heard_probe = False
        self._retired: list = []
        self._down = RedisDown()
        self._publish_failures = 0
        # Called (no arguments, awaited) each time the subscription is made
        # again after it was lost: Redis is back (maybe empty).
        self.on_resubscribed: list = []
        self._outbox: list[dict] = []
        self._flusher: asyncio.Task | None = None
        self._own_prefix = b""  # how this process's batches begin (set once host_id is final)

    async def emit(self, event, data, namespace=None, room=None, skip_sid=None, callback=None, to=None,
                   **kwargs):
        room = to or room
        if (not kwargs.get("ignore_queue") and callback is None and isinstance(room, str)
                and self.is_connected(room, namespace or "/")):
            # One socket of this process: no other process has it, nothing to publish.
            return await super().emit(event, data, namespace=namespace, room=room, skip_sid=skip_sid,
                                      ignore_queue=True)
        return await super().emit(event, data, namespace=namespace, room=room, skip_sid=skip_sid,
                                  callback=callback, **kwargs)

    async def _publish(self, data):
        """Queue ``data`` for the next published batch: everything queued before the
        flusher runs (the rest of this turn of the loop) goes out in one message."""
        self._outbox.append(data)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush())

    async def _flush(self) -> None:
        while self._outbox:
            batch, self._outbox = self._outbox[:PUBLISH_BATCH_MAX], self._outbox[PUBLISH_BATCH_MAX:]
            if len(batch) == 1:
                await self._publish_now(batch[0])  # as python-socketio publishes it
            else:
                # host_id first: the receiving side recognises its own batches by their first bytes.
                await self._publish_now({"host_id": self.host_id, "method": self._BATCH_METHOD,
                                         "messages": batch})

    async def flush(self) -> None:
        """Wait until everything queued so far is published (or given up)."""
        while self._flusher is not None and not self._flusher.done():
            with contextlib.suppress(Exception):
                await asyncio.shield(self._flusher)

    async def _publish_now(self, data):
        """Publish once, on the same client (redis-py reconnects it by itself).

        The base class retries on a new client each time and logs an ERROR per
        event: while Redis is away that is a log line and a stalled emit per
        event, and a client left behind per attempt. Events reach this
        process's sockets before they are published (AsyncPubSubManager.emit),
        so during an outage only the other processes miss them; those
        residents get the state again when they resume or ask for history."""
        if self._down:
            self._publish_failures += 1
            return None
        try:
            if not self.connected:
                self._redis_connect()
            result = await self.redis.publish(self.channel, self.json.dumps(data))
        except Exception as exc:
            self._down.failed()
            self._publish_failures += 1
            if self._publish_failures == 1:
                log.warning("Socket.IO: cannot publish to Redis (%s); events reach this process's "
                            "sockets only until it is back", type(exc).__name__)
            return None
        if self._publish_failures:
            log.info("Socket.IO: publishing to Redis again (%d events reached only this process)",
                     self._publish_failures)
            self._publish_failures = 0
        self._down.worked()
        return result

    async def _redis_listen_with_retries(self):
        """The base class's loop with a short, fixed pause between attempts, and
        ``on_resubscribed`` told each time the subscription is back."""
        subscribed = False
        lost = False
        while True:
            try:
                if not subscribed:
                    self._redis_connect()
                    await self.pubsub.subscribe(self.channel)
                    subscribed = True
                    if lost:
                        log.info("Socket.IO: subscribed to Redis again")
                        self._down.worked()
                        for callback in list(self.on_resubscribed):
                            try:
                                await callback()
                            except Exception as exc:  # the callback's own work; the listener goes on
                                log.warning("after resubscribing: %s", type(exc).__name__)
                async for message in self.pubsub.listen():
                    yield message
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not lost:
                    log.warning("Socket.IO: lost the Redis subscription (%s); retrying every %.1f s",
                                type(exc).__name__, RESUBSCRIBE_SECS)
                lost = True
                subscribed = False
                await asyncio.sleep(RESUBSCRIBE_SECS)

    def _redis_connect(self) -> None:
        # The base class makes a new client on every (re)connect and drops the
        # old one unclosed. Keep the client (redis-py reconnects its pool by
        # itself, and a publish may be using it now); make a new subscription
        # and close the old one (in the background: this is not a coroutine).
        if self.redis is None:
            super()._redis_connect()
            return
        old = self.pubsub
        self.pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        self.connected = True
        if old is not None:
            task = asyncio.get_running_loop().create_task(self._close_clients([old]))
            self._retired.append(task)
            task.add_done_callback(self._retired.remove)

    @staticmethod
    async def _close_clients(clients) -> None:
        for client in clients:
            with contextlib.suppress(Exception):
                await client.aclose()

    async def _listen(self):
        if not self._own_prefix:
            self._own_prefix = self.json.dumps({"host_id": self.host_id})[:-1].encode()
        batch = self._BATCH_METHOD.encode()
        async for data in super()._listen():
            if isinstance(data, bytes) and data.startswith(self._own_prefix):
                continue  # a batch of this process's own, already delivered here
            if isinstance(data, bytes) and batch in data[:200]:
                with contextlib.suppress(ValueError, TypeError, AttributeError):
                    message = self.json.loads(data)
                    if message.get("method") == self._BATCH_METHOD:
                        if message.get("host_id") != self.host_id:
                            for inner in message.get("messages") or ():
                                if isinstance(inner, dict):
                                    yield inner  # the base class takes a dict as it is
                        continue
            if isinstance(data, bytes) and self._PROBE_METHOD.encode() in data:
                with contextlib.suppress(ValueError):
                    if json.loads(data).get("token") == self._probe_token:
                        self._heard_probe = True
            yield data  # the base class ignores methods it does not know

    async def wait_subscribed(self, timeout_secs: float = SUBSCRIBE_WAIT_SECS) -> bool:
        deadline = time.monotonic() + timeout_secs
        while not self._heard_probe and time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                await self._publish_now({"method": self._PROBE_METHOD, "host_id": self.host_id,
                                         "token": self._probe_token})
            await asyncio.sleep(_PROBE_INTERVAL_SECS)
        return self._heard_probe

    async def close(self) -> None:
        await self.flush()
        thread = getattr(self, "thread", None)
        if thread is not None:
            thread.cancel()
            with contextlib.suppress(BaseException):
                await thread
        for task in list(self._retired):
            with contextlib.suppress(BaseException):
                await task
        for client in (self.pubsub, self.redis):
            if client is not None:
                with contextlib.suppress(Exception):
                    await client.aclose()
