"""The chat server application: aiohttp + python-socketio, wired from settings.

``create_app(settings)`` returns the aiohttp application (tests run it
in-process); ``python -m chat_server`` serves it. Backends follow the
settings: SQLite or PostgreSQL; Redis for Socket.IO, queue, presence and rate
limits when ``POLKU_REDIS_URL`` is set, this process's memory otherwise.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from urllib.parse import urlsplit

import socketio
from aiohttp import web
from redis import asyncio as aioredis

from bot.policy import Bot, rasa_client
from bot.settings import Settings

from . import admin, health, logsafe, static
from .admin.nlu_guard import ActivationFlag, GuardedNlu
from .store import db
from .context import SERVER_KEY
from .counsellor import pages as counsellor_pages
from .counsellor.callbacks import Callbacks, check_callback_request
from .counsellor.channel import CounsellorChannel
from .counsellor.content import ConsoleContent
from .counsellor.service import CounsellorService
from .counsellor.sweeps import CounsellorSweeps
from .errors import BackendUnavailable
from .errors_http import error_middleware
from .events import Events
from .frames import GuardedAsyncServer, GuardedWebSocket
from .handoff import Handoff
from .presence import MemoryPresence, Presence, RedisPresence
from .queue import HandoffQueue, MemoryQueue, MemoryTold
from .queue_redis import QueueKeeper, RedisQueue, RedisTold
from .ratelimit import (MemoryCounter, MemorySocketCounter, RateLimits, RedisCounter, RedisSocketCounter,
                        parse_trusted_proxies)
from .redis_backend import FallbackCounter, SocketIORedisManager, create_redis
from .resident.channel import ResidentChannel
from .resident.service import ResidentService
from .resident.sessions import RedisUnwrittenSockets, SessionIds, file_session_key, redis_session_key
from .resident.sockets import ResidentSockets
from .shutdown import DRAIN_SECS, DrainingServer, bounded
from .staff import pages as staff_pages, session_routes as staff_session_routes
from .staff.csrf import csrf_middleware, security_headers_middleware
from .staff.oidc import OidcClient
from .staff.service import StaffAuth
from .store.callbacks import CallbackRequests
from .store.casework import Casework
from .store.conversations import Conversations
from .store.core import Store
from .store.staff import StaffRepository

log = logging.getLogger(__name__)

# The transport's own cap on one Socket.IO packet; POLKU_MAX_MESSAGE_CHARS is
# checked below it, so an over-long message still gets a proper error event.
MIN_PACKET_BYTES = 64 * 1024


class ChatServer:
    """Everything one server process holds; made at app startup, closed at cleanup."""

    def __init__(self, settings: Settings, sio: socketio.AsyncServer, *, bot: Bot | None = None) -> None:
        self.settings = settings
        self.sio = sio
        self.events = Events(sio)
        self.trusted_proxies = parse_trusted_proxies(settings.trusted_proxies)
        self._given_bot = bot
        self.bot: Bot | None = None
        self.engine = None
        self.store: Store | None = None
        self.conversations: Conversations | None = None
        self.redis: aioredis.Redis | None = None
        self.queue: HandoffQueue | None = None
        self.presence: Presence | None = None
        self.handoff: Handoff | None = None
        self.resident: ResidentChannel | None = None
        self.counter = None
        self.socket_counter: MemorySocketCounter | RedisSocketCounter | None = None
        self.auth: StaffAuth | None = None
        self.oidc: OidcClient | None = None  # single sign-on, when configured
        self.callbacks: Callbacks | None = None
        self.counsellor: CounsellorChannel | None = None
        self.counsellor_sweeps: CounsellorSweeps | None = None
        self.queue_keeper: QueueKeeper | None = None

    async def start(self) -> None:
        settings = self.settings
        self.engine = db.create_engine(settings.database_url)
        if settings.migrate_on_start:
            await db.migrate(self.engine)
        self.store = Store(self.engine)
        self.conversations = Conversations(self.store)
        if settings.redis_url:
            self.redis = create_redis(settings.redis_url)
            self.queue = RedisQueue(self.redis, settings.redis_prefix, database_queue=self.conversations.queued)
            self.presence = RedisPresence(self.redis, settings.redis_prefix)
            # While Redis is away the limits count in this process (residents keep being answered).
            counter = FallbackCounter(RedisCounter(self.redis, settings.redis_prefix), MemoryCounter())
            self.socket_counter = RedisSocketCounter(self.redis, settings.redis_prefix)
        else:
            self.queue, self.presence, counter = MemoryQueue(), MemoryPresence(), MemoryCounter()
            self.socket_counter = MemorySocketCounter()
        await self.socket_counter.start()
        if self._given_bot is not None:
            self.bot = self._given_bot
        else:
            # The bot's one NLU client: patient while an admin activates a model (admin/nlu_guard.py).
            nlu = GuardedNlu(rasa_client(settings), ActivationFlag(self.redis, settings.redis_prefix),
                             settings.rasa_token)
            self.bot = Bot.from_settings(settings, nlu)  # loads and validates training_data/
        content = getattr(self.bot, "content", None)
        if content is not None:  # what is left to fill; production refuses an incomplete crisis path
            from bot.facts import check_on_start
            check_on_start(content, settings.require_crisis_facts, log)
        self.counter = counter
        self.session_ids = SessionIds(await self._session_key())
        self.handoff = Handoff(self.queue, self.presence, self.events, self.bot, conversations=self.conversations,
                               secs_per_conversation=settings.queue_secs_per_conversation,
                               default_language=settings.default_language,
                               is_open=self._chat_hours(), expected_soon=self._chat_expected_soon(),
                               told=RedisTold(self.redis, settings.redis_prefix + "queue_told")
                               if self.redis is not None else MemoryTold())
        staff_repo = StaffRepository(self.store)
        self.auth = StaffAuth.from_settings(staff_repo, settings, redis=self.redis, counter=counter)
        self.oidc = OidcClient(settings, staff_repo) if settings.oidc_issuer else None
        self.callbacks = Callbacks(self.store, CallbackRequests(self.store), self.events)
        sockets = ResidentSockets(
            self.sio, store=self.store, conversations=self.conversations, notices=self.bot,
            session_ids=self.session_ids, session_ttl_hours=settings.session_ttl_hours,
            default_language=settings.default_language,
            shared_unwritten=RedisUnwrittenSockets(self.redis, settings.redis_prefix,
                                                   settings.session_ttl_hours * 3600)
            if self.redis is not None else None)
        service = ResidentService(
            sockets, store=self.store, conversations=self.conversations, bot=self.bot, handoff=self.handoff,
            events=self.events,
            limits=RateLimits(counter, settings.rate_session_per_min, settings.rate_address_per_min),
            session_ttl_hours=settings.session_ttl_hours, history_max_messages=settings.history_max_messages,
            queued_per_address=settings.queued_per_address)
        self.resident = ResidentChannel(
            self.sio, service, events=self.events, texts=self.bot, trusted_proxies=self.trusted_proxies,
            max_message_chars=settings.max_message_chars, default_language=settings.default_language,
            callbacks=self.callbacks, check_callback=check_callback_request,
            socket_counter=self.socket_counter, sockets_per_address=settings.sockets_per_address)
        self.resident.register()
        casework = Casework(self.store)
        counsellor_service = CounsellorService(
            store=self.store, conversations=self.conversations, casework=casework, handoff=self.handoff,
            events=self.events, auth=self.auth,
            presence=self.presence, callbacks=self.callbacks, default_language=settings.default_language,
            content=ConsoleContent.load(Path(settings.training_data_dir) / "counsellor_snippets.yml"),
            grace_secs=settings.counsellor_grace_secs)
        self.counsellor = CounsellorChannel(
            self.sio, service=counsellor_service, callbacks=self.callbacks,
            handoff=self.handoff, events=self.events, auth=self.auth, presence=self.presence,
            own_origins=own_origins(settings))
        self.counsellor.register()
        self.counsellor_sweeps = CounsellorSweeps(
            channel=self.counsellor, service=counsellor_service, casework=casework, handoff=self.handoff,
            presence=self.presence, auth=self.auth, settings=settings, redis=self.redis)
        await self._restore_queue()
        await self._start_socketio_manager()
        self.counsellor_sweeps.start()
        if isinstance(self.queue, RedisQueue):
            self.queue_keeper = QueueKeeper(self.queue, self.conversations.queued, self._queue_restored)
            with contextlib.suppress(Exception):  # Redis away at startup: the keeper's first round
                await self.queue.mark_kept()
            self.queue_keeper.start()
            manager = self.sio.manager
            if isinstance(manager, SocketIORedisManager):
                async def resubscribed() -> None:
                    self.queue_keeper.wake(resend=True)
                manager.on_resubscribed.append(resubscribed)
        log.info("chat server ready (database %s, redis %s)", self.engine.dialect.name,
                 "on" if self.redis is not None else "off")

    async def _session_key(self) -> bytes:
        """The key that proves a session id ours before its conversation is written: shared by
        every process in Redis, else in POLKU_DATA_DIR. Lost (Redis emptied), sessions never
        written to simply get a fresh id when they come back: they hold nothing."""
        if self.redis is not None:
            try:
                return await redis_session_key(self.redis, self.settings.redis_prefix)
            except Exception as exc:
                log.warning("session key not in Redis (%s); using this installation's file",
                            type(exc).__name__)
        return file_session_key(self.settings.data_dir)

    def _chat_hours(self):
        """Whether the chat is open now: the content's opening hours (or always, by setting)."""
        if self.settings.chat_always_open or getattr(self.bot, "content", None) is None:
            return lambda: True
        return lambda: self.bot.content.is_open("chat")  # the admins' edits replace the content

    def _chat_expected_soon(self):
        """Whether a counsellor is expected later today: chat hours now, or beginning later today."""
        if self.settings.chat_always_open or getattr(self.bot, "content", None) is None:
            return lambda: True
        return lambda: (self.bot.content.is_open("chat")
                        or self.bot.content.hours.opens_later_today("chat"))

    async def _restore_queue(self) -> None:
        try:
            await self.queue.restore(await self.conversations.queued())
        except BackendUnavailable as exc:
            log.warning("could not restore the counsellor queue: %s", exc.detail)

    async def _queue_restored(self, added: list[int]) -> None:
        """The queue keeper put conversations back (Redis was emptied or away): this
        process's counsellors are online again at once (not at their next heartbeat),
        then every queued resident gets their place and the consoles the queue."""
        if self.counsellor_sweeps is not None:
            try:
                await self.counsellor_sweeps.heartbeat()
            except Exception as exc:
                log.warning("heartbeat after the queue restore failed: %s", type(exc).__name__)
        await self.handoff.queue_changed(resend_all=True)

    async def _start_socketio_manager(self) -> None:
        manager = self.sio.manager
        if isinstance(manager, SocketIORedisManager):
            # Subscribe now, not at the first connection, so that events other
            # processes send to our sockets are never published into the void.
            self.sio.manager_initialized = True
            manager.initialize()
            if not await manager.wait_subscribed():
                log.warning("Socket.IO is not subscribed to Redis yet; events from other processes may be lost")

    async def stop(self) -> None:
        """Release everything; each step is bounded, so a stuck one cannot hang the shutdown."""
        if self.queue_keeper is not None:
            await bounded("queue keeper", self.queue_keeper.stop())
        if self.counsellor_sweeps is not None:
            await bounded("counsellor background work", self.counsellor_sweeps.stop())
        if self.handoff is not None:
            await bounded("queue updates", self.handoff.close())
        manager = self.sio.manager
        if isinstance(manager, SocketIORedisManager):
            await bounded("Socket.IO Redis manager", manager.close())
        if self.bot is not None and self._given_bot is None:
            await bounded("bot", self.bot.close())
        if self.socket_counter is not None:
            await bounded("open socket counts", self.socket_counter.stop())
        if self.redis is not None:
            await bounded("Redis", self.redis.aclose())
        if self.store is not None:
            await bounded("database thread", self.store.close())
        if self.engine is not None:
            await bounded("database engine", self.engine.dispose())





class ChatSocketServer(DrainingServer, GuardedAsyncServer):
    """python-socketio's server that drains on shutdown (shutdown.py) and guards
    against malformed frames (frames.py)."""


def own_origins(settings: Settings) -> set[str]:
    """The origins of this server's own pages (the console connects only from them)."""
    own = settings.public_url or f"http://{settings.host}:{settings.port}"
    parts = urlsplit(own)
    return {f"{parts.scheme}://{parts.netloc}"}


def _origin_check(settings: Settings):
    allowed = set(settings.allowed_origins)
    if "*" in allowed:
        return "*"
    own = settings.public_url or f"http://{settings.host}:{settings.port}"
    parts = urlsplit(own)
    allowed.add(f"{parts.scheme}://{parts.netloc}")

    def check(origin: str, environ: dict) -> bool:
        # The server's own pages (/demo) are always allowed, under whatever host name they were opened.
        same_origin = f"{environ.get('wsgi.url_scheme', 'http')}://{environ.get('HTTP_HOST', '')}"
        return origin in allowed or origin == same_origin
    return check


def _without_websocket_compression(sio: socketio.AsyncServer) -> None:
    # frames.GuardedWebSocket: no permessage-deflate, and frames that are not Engine.IO packets dropped.
    eio = sio.eio
    eio._async = {**eio._async, "websocket": GuardedWebSocket}


def create_app(settings: Settings | None = None, *, bot: Bot | None = None,
               widget_dir: Path | None = None) -> web.Application:
    """The aiohttp application. ``bot`` replaces Bot.from_settings (for tests)."""
    settings = settings or Settings()
    manager = None
    if settings.redis_url:
        manager = SocketIORedisManager(settings.redis_url, channel=settings.redis_prefix + "socketio")
    logsafe.install()
    sio = ChatSocketServer(
        async_mode="aiohttp",
        client_manager=manager,
        cors_allowed_origins=_origin_check(settings),
        # One socket's events are handled in order: a resident's messages are
        # answered in the order they were sent, after their session_request.
        async_handlers=False,
        max_http_buffer_size=max(MIN_PACKET_BYTES, settings.max_message_chars * 8),
        # The libraries' own loggers, filtered (logsafe): given as loggers, not False, so
        # that the libraries add no stderr handler of their own.
        logger=logging.getLogger("socketio.server"),
        engineio_logger=logging.getLogger("engineio.server"),
    )
    _without_websocket_compression(sio)
    app = web.Application(middlewares=[security_headers_middleware, error_middleware, csrf_middleware])
    sio.attach(app)
    server = ChatServer(settings, sio, bot=bot)
    app[SERVER_KEY] = server

    async def on_startup(app: web.Application) -> None:
        await server.start()

    async def on_shutdown(app: web.Application) -> None:
        # aiohttp has stopped listening: hand every resident and console over
        # to another process (or to this one restarted), then stop.
        await bounded("draining sockets", sio.drain(), DRAIN_SECS + 5)
        await bounded("Socket.IO server", sio.shutdown())

    async def on_cleanup(app: web.Application) -> None:
        await server.stop()
        sio.frame_stats.close()  # the last summary of refused input

    app.on_startup.append(on_startup)
    app.on_shutdown.append(on_shutdown)
    app.on_cleanup.append(on_cleanup)
    app.router.add_get("/health", health.health)
    app.router.add_get("/ready", health.ready)
    static.add_routes(app, widget_dir or static.WIDGET_DIR)
    admin.setup(app, server)
    staff_pages.add_routes(app)
    staff_session_routes.add_routes(app)
    counsellor_pages.add_routes(app)
    return app
