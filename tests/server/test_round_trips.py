"""Round trips of one bot turn (issue 18): an ordinary resident message answered by the bot,
in a conversation with the bot (not queued), on SQLite and on PostgreSQL + Redis.

Counted, deterministically (unlike timings): SQL statements the driver executes
(``before_cursor_execute``), commits and rollbacks (engine events), connections taken from the
pool (on PostgreSQL each is pinged first), Redis commands and pipelines of the server's client,
and the Socket.IO manager's publishes. The bounds: one commit; nothing from the queue or
presence; the rate limits in one Redis round trip; on PostgreSQL no more SQL statements than on
SQLite; one publish per emitted event.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from sqlalchemy import event
from sqlalchemy.engine import Engine

from .helpers import OWN_BOT, RunningServer, StandIn


class ParsingRasa(StandIn):
    """Rasa's /model/parse and /status, always one confident intent (an ordinary answer)."""

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/model/parse", self.parse)
        app.router.add_get("/status", self.status)

    async def parse(self, request: web.Request) -> web.Response:
        text = (await request.json())["text"]
        return web.json_response({"text": text, "intent": {"name": "housing_allowance", "confidence": 0.93},
                                  "intent_ranking": [{"name": "housing_allowance", "confidence": 0.93},
                                                     {"name": "kela_benefits", "confidence": 0.05}]})

    async def status(self, request: web.Request) -> web.Response:
        return web.json_response({"model_file": "polku-20260101-000000.tar.gz"})


@pytest.fixture
async def parsing_rasa():
    rasa = await ParsingRasa().start()
    yield rasa
    await rasa.stop()


@dataclass
class RoundTrips:
    """What one server sends to its database and to Redis while counting."""

    database: str
    counting: bool = False
    statements: list[str] = field(default_factory=list)
    commits: int = 0
    rollbacks: int = 0
    checkouts: int = 0
    wire: list[str] = field(default_factory=list)  # PostgreSQL: every call of asyncpg's that waits for the server
    redis: list[str] = field(default_factory=list)  # one entry per round trip
    published: list[str] = field(default_factory=list)  # the event of each publish
    _undo: list[Any] = field(default_factory=list)

    def _ours(self, conn) -> bool:
        return self.counting and conn.engine.url.database == self.database

    def install(self, running: RunningServer) -> "RoundTrips":
        def before_cursor_execute(conn, cursor, statement, parameters, context, executemany):
            if self._ours(conn):
                self.statements.append(" ".join(statement.split()[:3]))

        def commit(conn):
            if self._ours(conn):
                self.commits += 1

        def rollback(conn):
            if self._ours(conn):
                self.rollbacks += 1

        def checkout(dbapi_connection, record, proxy):
            if self.counting:
                self.checkouts += 1

        for target, name, fn in ((Engine, "before_cursor_execute", before_cursor_execute),
                                 (Engine, "commit", commit), (Engine, "rollback", rollback),
                                 (running.server.engine.sync_engine.pool, "checkout", checkout)):
            event.listen(target, name, fn)
            self._undo.append((target, name, fn))
        server = running.server
        if server.engine.dialect.name == "postgresql":
            self._count_wire()
        if server.redis is not None:
            self._count_client(server.redis)
            self._count_publishes(server.sio.manager)
        return self

    def _count_wire(self) -> None:
        """asyncpg's calls that each wait for PostgreSQL once: what SQLAlchemy's events do not show
        (BEGIN, COMMIT, the pool's ping, preparing a statement the connection has not seen)."""
        targets = [(asyncpg.connection.Connection, name)
                   for name in ("execute", "executemany", "fetch", "fetchrow", "fetchval", "prepare")]
        targets += [(asyncpg.prepared_stmt.PreparedStatement, name)
                    for name in ("fetch", "fetchrow", "fetchval", "executemany")]
        for cls, name in targets:
            original = getattr(cls, name)

            def counted(this, *args, __original=original, __name=name, **kwargs):
                if self.counting:
                    query = args[0] if args and isinstance(args[0], str) else ""
                    self.wire.append(f"{__name} {' '.join(query.split()[:2])}".strip())
                return __original(this, *args, **kwargs)
            setattr(cls, name, counted)
            self._undo.append((cls, name, original))

    def _count_client(self, client) -> None:
        execute_command, pipeline = client.execute_command, client.pipeline

        async def counted(*args, **kwargs):
            if self.counting:
                self.redis.append(" ".join(str(a) for a in args[:2]))
            return await execute_command(*args, **kwargs)

        def counted_pipeline(*args, **kwargs):
            pipe = pipeline(*args, **kwargs)
            execute = pipe.execute

            async def counted_execute(*eargs, **ekwargs):
                if self.counting:
                    self.redis.append("pipeline[" + ", ".join(
                        " ".join(str(a) for a in command[0][:2]) for command in pipe.command_stack) + "]")
                return await execute(*eargs, **ekwargs)
            pipe.execute = counted_execute
            return pipe
        client.execute_command, client.pipeline = counted, counted_pipeline

    def _count_publishes(self, manager) -> None:
        publish = manager._publish

        async def counted(data):
            if self.counting:
                self.published.append(data.get("event") or data.get("method"))
            return await publish(data)
        manager._publish = counted

    def remove(self) -> None:
        for target, name, fn in self._undo:
            if isinstance(target, type) and target.__module__.startswith("asyncpg"):
                setattr(target, name, fn)
            else:
                event.remove(target, name, fn)

    def summary(self) -> dict[str, Any]:
        return {"statements": self.statements, "commits": self.commits, "rollbacks": self.rollbacks,
                "checkouts": self.checkouts, "wire": self.wire, "redis": self.redis, "published": self.published}


def _database_of(running: RunningServer) -> str:
    return running.server.engine.url.database


async def _one_bot_turn(launch, connect, settings: dict[str, Any], rasa_url: str) -> RoundTrips:
    running = await launch(settings, bot=OWN_BOT, POLKU_RASA_URL=rasa_url)
    counter = RoundTrips(_database_of(running)).install(running)
    try:
        resident = await connect(running)
        await resident.session()
        await resident.next("bot_uttered")  # the welcome
        first = await resident.say("Miten haen asumistukea?")
        await resident.ack(first)
        await resident.next("bot_uttered")
        await asyncio.sleep(0.2)  # the first turn's events are all out
        counter.counting = True
        second = await resident.say("Entä jos tuloni muuttuvat?")
        await resident.ack(second)
        answer = await resident.next("bot_uttered")
        assert answer["metadata"]["sender"] == "bot"
        await asyncio.sleep(0.2)
        counter.counting = False
    finally:
        counter.remove()
    return counter


async def test_a_bot_turn_costs_as_few_round_trips_on_postgresql_as_on_sqlite(
        launch, connect, sqlite_settings, postgres_settings, parsing_rasa):
    sqlite = await _one_bot_turn(launch, connect, sqlite_settings, parsing_rasa.url)
    postgres = await _one_bot_turn(launch, connect, postgres_settings, parsing_rasa.url)
    print("\nsqlite", json.dumps(sqlite.summary(), indent=1))
    print("postgresql + redis", json.dumps(postgres.summary(), indent=1))

    for counted in (sqlite, postgres):
        # One transaction, one commit: the read before the bot answers commits nothing.
        assert counted.commits == 1, counted.summary()
        assert counted.statements, counted.summary()
    assert len(postgres.statements) <= len(sqlite.statements), (sqlite.summary(), postgres.summary())
    # On the wire: one BEGIN and one COMMIT of the turn's transaction around its statements
    # (the read before the bot answers runs without either). The pool's pings (BEGIN, ";",
    # ROLLBACK per connection taken: store/db.py's pool_pre_ping) and first-time prepares are
    # counted apart: they depend on the pool's settings and on what each connection has seen.
    pings = 3 * postgres.checkouts
    work = [call for call in postgres.wire if not call.startswith("prepare")]
    assert [c for c in work if "COMMIT" in c] == ["execute COMMIT;"], postgres.wire
    assert len(work) - pings <= len(sqlite.statements) + 2, postgres.wire
    # Nothing of the queue or presence for a conversation with the bot, and the rate limits
    # (address and session) in one round trip.
    assert not [c for c in postgres.redis if "presence" in c or "queue" in c], postgres.redis
    assert len(postgres.redis) <= 1, postgres.redis
    # Each event emitted is one publish (ack, the console's copy, the answer and its console copy).
    typing = [e for e in postgres.published if e == "typing"]  # only when the answer took over 0.3 s
    assert len(postgres.published) - len(typing) <= 4, postgres.published
