"""The probe of ``benchmarks.roundtrips``: patches asyncpg, redis-py, SQLAlchemy and
the Store in this process to count (and time) every call that waits for
PostgreSQL, Redis, SQLite's thread or the NLU, and a fixed-intent NLU."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import time
from dataclasses import dataclass, field
from typing import Any, Callable


# --- the probe ------------------------------------------------------------------------


@dataclass
class Call:
    backend: str  # pg, sqlite, redis, nlu
    label: str
    secs: float


@dataclass
class Probe:
    calls: list[Call] = field(default_factory=list)
    inflight: int = 0
    handlers: int = 0
    last_activity: float = 0.0
    enabled: bool = False

    def begin(self) -> float:
        self.inflight += 1
        self.last_activity = time.perf_counter()
        return self.last_activity

    def end(self, backend: str, label: str, started: float) -> None:
        now = time.perf_counter()
        self.inflight -= 1
        self.last_activity = now
        if self.enabled and not _in_background():
            self.calls.append(Call(backend, label, now - started))

    def count(self, backend: str, label: str) -> None:
        if self.enabled and not _in_background():
            self.calls.append(Call(backend, label, 0.0))

    def take(self) -> list[Call]:
        calls, self.calls = self.calls, []
        return calls


PROBE = Probe()

# Loops of the server's own (queue keeper, heartbeats, the Socket.IO subscription):
# not part of any message.
_BACKGROUND = ("QueueKeeper", "_heartbeat", "_redis_listen", "_thread", "_listen", "_run", "wait_subscribed",
               "heartbeats", "sweep", "_typing")


def _in_background() -> bool:
    try:
        task = asyncio.current_task()
    except RuntimeError:
        return False
    if task is None:
        return False
    name = getattr(task.get_coro(), "__qualname__", "")
    return any(part in name for part in _BACKGROUND)


def _sql_label(sql: str) -> str:
    head = sql.strip().split(None, 1)
    word = head[0].upper().rstrip(";") if head else ""
    if word in ("", ";"):
        return "ping"
    if word == "SELECT" and "FOR UPDATE" in sql.upper():
        return "SELECT FOR UPDATE"
    return word


def _wrap_async(owner: type, name: str, backend: str, label: Callable[..., str]) -> None:
    original = getattr(owner, name)
    if getattr(original, "_polku_probe", False):
        return

    @functools.wraps(original)
    async def wrapper(self, *args, **kwargs):
        started = PROBE.begin()
        what = "?"
        try:
            what = label(self, *args, **kwargs)
        except Exception:  # noqa: BLE001 - a label is only a label
            pass
        try:
            return await original(self, *args, **kwargs)
        finally:
            PROBE.end(backend, what, started)

    wrapper._polku_probe = True  # type: ignore[attr-defined]
    setattr(owner, name, wrapper)


def install_probe() -> None:
    """Patch asyncpg, redis-py and SQLAlchemy in this process (once)."""
    import asyncpg.connection
    import asyncpg.prepared_stmt
    from redis.asyncio.client import Pipeline, Redis
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    conn = asyncpg.connection.Connection
    _wrap_async(conn, "execute", "pg", lambda self, query, *a, **k: _sql_label(query))
    _wrap_async(conn, "prepare", "pg", lambda self, query, *a, **k: "prepare " + _sql_label(query))
    for name in ("fetch", "fetchrow", "fetchval", "executemany"):
        _wrap_async(conn, name, "pg", lambda self, query, *a, **k: _sql_label(query))
    stmt = asyncpg.prepared_stmt.PreparedStatement
    for name in ("fetch", "fetchrow", "fetchval", "executemany"):
        _wrap_async(stmt, name, "pg", lambda self, *a, **k: _sql_label(self.get_query()))

    scripts: dict[str, str] = {}

    def redis_label(self, *args, **kwargs) -> str:
        command = str(args[0]).upper() if args else "?"
        if command == "EVALSHA" and len(args) > 1:
            return f"EVALSHA {scripts.get(str(args[1]), str(args[1])[:8])}"
        return command

    _wrap_async(Redis, "execute_command", "redis", redis_label)
    _wrap_async(Pipeline, "execute", "redis",
                lambda self, *a, **k: "pipeline[" + " ".join(str(c[0][0]).upper() for c in self.command_stack) + "]")
    # Name the Lua scripts after the module constants that hold them.
    from chat_server import queue_redis, ratelimit
    from chat_server.staff import throttle
    for module in (queue_redis, ratelimit, throttle):
        for attr, value in vars(module).items():
            if attr.endswith("_LUA") and isinstance(value, str):
                scripts[hashlib.sha1(value.encode()).hexdigest()] = attr.strip("_").removesuffix("_LUA").lower()

    @event.listens_for(Engine, "begin")
    def _begin(conn):  # noqa: ANN001
        PROBE.count("tx", "begin")

    @event.listens_for(Engine, "commit")
    def _commit(conn):  # noqa: ANN001
        PROBE.count("tx", "commit")

    @event.listens_for(Engine, "rollback")
    def _rollback(conn):  # noqa: ANN001
        PROBE.count("tx", "rollback")

    @event.listens_for(Engine, "before_cursor_execute")
    def _statement(conn, cursor, statement, parameters, context, executemany):  # noqa: ANN001
        if conn.dialect.name == "sqlite":
            PROBE.count("sqlite", _sql_label(statement))

    from chat_server.store.core import Store
    _wrap_async(Store, "_run", "lane", lambda self, work, *a, read_only=False, **k:
                ("run_read" if read_only else "run_write"))

    from sqlalchemy.pool import AsyncAdaptedQueuePool
    original_get = AsyncAdaptedQueuePool._do_get

    def timed_get(self):
        started = PROBE.begin()
        try:
            return original_get(self)
        finally:
            PROBE.end("pool", "checkout", started)

    if not getattr(original_get, "_polku_probe", False):
        timed_get._polku_probe = True  # type: ignore[attr-defined]
        AsyncAdaptedQueuePool._do_get = timed_get


# --- the NLU ----------------------------------------------------------------------------


class FixedNlu:
    """Answers every parse with one intent, at once (no Rasa needed)."""

    def __init__(self, intent: str = "greet") -> None:
        from bot.nlu import NluResult
        self.result = NluResult(intent, 0.97, ((intent, 0.97), ("thanks", 0.02), ("goodbye", 0.01)))

    async def parse(self, text: str):
        return self.result

    async def close(self) -> None:
        pass


class TimedNlu:
    def __init__(self, nlu) -> None:
        self.nlu = nlu

    async def parse(self, text: str):
        started = PROBE.begin()
        try:
            return await self.nlu.parse(text)
        finally:
            PROBE.end("nlu", "parse", started)

    async def close(self) -> None:
        await self.nlu.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.nlu, name)
