"""Test helpers: a chat server running in-process on a real port, a resident
Socket.IO client that records what it receives, and a small fake bot for the
few tests that need a bot to misbehave."""

from __future__ import annotations

import asyncio
import socket
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

import socketio
from aiohttp import web
from sqlalchemy import text as sql

from bot.redact import redact
from bot.settings import Settings
from bot.types import BotTurn, DialogueState, Handoff, ParseResult, QuickReply, Reply
from chat_server.app import ChatServer, create_app
from chat_server.context import SERVER_KEY

EVENT_TIMEOUT_SECS = 5.0
OWN_BOT = object()  # launch(..., bot=OWN_BOT): the server loads its Bot itself, as in production


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class StandIn:
    """A small aiohttp server on a free port playing another service (Rasa's HTTP
    API in the tests); subclasses add their routes in ``routes``."""

    url = ""
    _runner: web.AppRunner | None = None

    def routes(self, app: web.Application) -> None:
        raise NotImplementedError

    async def start(self):
        app = web.Application()
        self.routes(app)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        port = free_port()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def stop(self) -> None:
        await self._runner.cleanup()


@dataclass
class RunningServer:
    app: web.Application
    runner: web.AppRunner
    port: int
    settings: Settings

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def server(self) -> ChatServer:
        return self.app[SERVER_KEY]

    async def stop(self) -> None:
        await self.runner.cleanup()

    async def sql(self, query: str, **params: Any) -> list[tuple]:
        """Rows of a query against the server's own database."""
        async with self.server.engine.connect() as conn:
            result = await conn.execute(sql(query), params)
            rows = [tuple(r) for r in result.all()] if result.returns_rows else []
            await conn.commit()
            return rows

    async def count(self, table: str) -> int:
        return (await self.sql(f"SELECT count(*) FROM {table}"))[0][0]


async def start_server(settings: Settings, *, bot: Any = None, widget_dir=None) -> RunningServer:
    app = create_app(settings, bot=bot, widget_dir=widget_dir)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # port 0: the OS picked one
    return RunningServer(app, runner, port, settings)


class EventInbox:
    """A test's Socket.IO client (subclasses make ``self.sio`` and route events to _record):
    the events it received, in order; next() hands each out once, waiting for it."""

    sio: socketio.AsyncClient

    def __init__(self) -> None:
        self.received: list[tuple[str, Any]] = []
        self._taken: set[int] = set()
        self._arrived = asyncio.Condition()

    async def close(self) -> None:
        if self.sio.connected:
            await self.sio.disconnect()
        http = getattr(self.sio.eio, "http", None)  # left open when the server refused us
        if http is not None and not http.closed:
            await http.close()

    async def _record(self, event: str, *args: Any) -> None:
        async with self._arrived:
            self.received.append((event, args[0] if args else None))
            self._arrived.notify_all()

    def pending(self, event: str | None = None) -> list[tuple[str, Any]]:
        """What arrived and was not taken yet (of one event, or all)."""
        return [item for i, item in enumerate(self.received)
                if i not in self._taken and (event is None or item[0] == event)]

    async def next(self, event: str, where: Callable[[Any], bool] | None = None,
                   timeout: float = EVENT_TIMEOUT_SECS) -> Any:
        """The oldest not yet taken ``event`` (matching ``where``), waiting for it."""
        def find() -> Any:
            for i, (name, payload) in enumerate(self.received):
                if i not in self._taken and name == event and (where is None or where(payload)):
                    self._taken.add(i)
                    return True, payload
            return False, None

        async with self._arrived:
            try:
                async with asyncio.timeout(timeout):
                    while True:
                        found, payload = find()
                        if found:
                            return payload
                        await self._arrived.wait()
            except TimeoutError:
                raise AssertionError(f"no {event!r} within {timeout}s; received {self.received!r}") from None


class ResidentClient(EventInbox):
    """A resident's socket: emits protocol events and hands out what arrives, in order."""

    def __init__(self, url: str, *, headers: dict | None = None,
                 transports: tuple[str, ...] = ("websocket",)) -> None:
        self.url = url
        self.headers = headers or {}
        self.transports = list(transports)
        super().__init__()
        self.sio = socketio.AsyncClient(reconnection=False)
        self.sio.on("*", self._record)
        self.session_id: str | None = None

    async def connect(self) -> "ResidentClient":
        await self.sio.connect(self.url, headers=self.headers, transports=self.transports,
                               wait_timeout=EVENT_TIMEOUT_SECS)
        return self

    async def emit(self, event: str, *args: Any) -> None:
        """Emit with exactly these arguments (none, one, or several)."""
        await self.sio.emit(event, args[0] if len(args) == 1 else (tuple(args) if args else None))

    async def session(self, session_id: str | None = None, **extra: Any) -> str:
        await self.sio.emit("session_request", {"session_id": session_id, **extra})
        self.session_id = await self.next("session_confirm")
        return self.session_id

    async def say(self, text: str, *, client_id: str | None = None, language: str | None = None,
                  session_id: str | None = None) -> str:
        client_id = client_id or str(uuid.uuid4())
        custom: dict[str, Any] = {"client_id": client_id}
        if language:
            custom["language"] = language
        await self.sio.emit("user_uttered", {"message": text, "session_id": session_id or self.session_id,
                                             "customData": custom})
        return client_id

    async def ack(self, client_id: str, timeout: float | None = None) -> dict:
        kwargs = {} if timeout is None else {"timeout": timeout}
        return await self.next("message_ack", lambda p: p["client_id"] == client_id, **kwargs)

    async def error(self, code: str | None = None) -> dict:
        return await self.next("error", (lambda p: p["code"] == code) if code else None)

    async def settle(self) -> dict:
        """Round trip: everything the server sent before this has arrived."""
        await self.sio.emit("history_request", {"session_id": self.session_id})
        return await self.next("history")


@dataclass
class FakeBot:
    """Answers "echo"; "/request_counsellor" hands off; can be told to fail."""

    fail: bool = False
    calls: list[str] = field(default_factory=list)

    async def handle(self, text: str, state: DialogueState | None = None,
                     ui_language: str | None = None, **_: Any) -> BotTurn:
        if self.fail:
            raise RuntimeError("the fake bot fails")
        clean = redact(text.strip())
        self.calls.append(clean)
        lang = ui_language or "fi"
        state = (state or DialogueState()).evolve(language=lang)
        parse = ParseResult(clean, "greet", 0.9, lang)
        if clean == "/request_counsellor":
            return BotTurn(parse, (Reply("ok, a counsellor", response_id="request_counsellor"),), state,
                           Handoff("requested", "normal", "housing_problem"))
        reply = Reply("echo", (QuickReply("More", "/greet"),), response_id="greet")
        return BotTurn(parse, (reply,), state)

    def notice(self, response_id: str, language: str, **params: Any) -> Reply:
        return Reply(f"[{response_id}:{language}]{params or ''}", response_id=response_id)

    @staticmethod
    def redact(text: str) -> str:
        return redact(text)

    async def close(self) -> None:
        pass
