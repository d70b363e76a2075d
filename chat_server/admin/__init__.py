"""The admin pages (issue 5): content editing with history and undo,
retraining with evaluation, model activation and rollback, the inbox of what
the bot did not understand, statistics, and retention.

``setup(app, server)`` is the one call the chat server makes.

Modules: ``editing``/``edit_requests``/``checks``/``yamlfile`` (the training
data as edits, the page's requests, their checks, the YAML files),
``content_page`` (what the content page shows), ``changes`` (recorded edits,
undo, the running bot's reload), ``training_jobs``, ``registry`` and
``nlu_guard`` (models), ``inbox``/``similarity``, ``statistics``,
``retention``, ``routes`` (HTTP). Their rows are read and written by the
repositories of ``chat_server/store/admin/``.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from zoneinfo import ZoneInfo

from aiohttp import web

from ..context import ADMIN_KEY, ServerContext
from ..shutdown import bounded
from ..store.admin.changes import ChangeRepository
from ..store.admin.inbox import InboxRepository
from ..store.admin.models import ModelRepository
from ..store.admin.retention import RetentionRepository
from ..store.admin.statistics import StatisticsRepository
from . import routes
from .changes import ContentService
from .inbox import Inbox
from .nlu_guard import ActivationFlag, GuardedNlu
from .registry import ModelRegistry
from .retention import Retention
from .statistics import Statistics
from .training_jobs import TrainingService

log = logging.getLogger(__name__)


class Admin:
    """Everything the admin pages hold in one chat server process (made at start)."""

    flag: ActivationFlag
    content: ContentService
    statistics: Statistics
    retention: Retention
    inbox: Inbox
    models: ModelRegistry
    training: TrainingService

    def __init__(self, server: ServerContext) -> None:
        self.server = server
        self._tasks: list[asyncio.Task] = []

    async def start(self) -> None:
        server = self.server
        settings, store, bot = server.settings, server.store, server.bot
        # The bot's client, built at start-up (app.py), is patient while a model is activated.
        nlu = getattr(bot, "nlu", None)
        guarded = nlu if isinstance(nlu, GuardedNlu) else None
        self.flag = guarded.flag if guarded is not None else ActivationFlag(server.redis, settings.redis_prefix)
        changes = ChangeRepository(store)
        counts = StatisticsRepository(store, ZoneInfo(settings.report_timezone))
        models = ModelRepository(store)
        self.content = ContentService(Path(settings.training_data_dir), changes, bot)
        self.statistics = Statistics(counts)
        self.retention = Retention(RetentionRepository(store, counts), changes, self.content, settings,
                                   redis=server.redis)
        self.inbox = Inbox(InboxRepository(store), self.content, bot, settings)
        self.models = ModelRegistry(settings, models, self.flag, redis=server.redis, nlu=guarded)
        self.training = TrainingService(settings, models, self.models)
        await self.content.prime()
        self._tasks = [asyncio.create_task(self.content.watch(), name="admin-content-watch"),
                       asyncio.create_task(self.retention.loop(), name="admin-retention")]
        if guarded is not None and server.redis is not None and len(settings.rasa_urls) > 1:
            self._tasks.append(asyncio.create_task(self.flag.watch_loading(guarded),
                                                   name="admin-rasa-loading-watch"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
        if getattr(self, "training", None) is not None:
            await self.training.stop()


def setup(app: web.Application, server: ServerContext) -> Admin:
    """Add the admin pages to the chat server application."""
    admin = Admin(server)
    app[ADMIN_KEY] = admin
    routes.add_routes(app)

    async def on_startup(app: web.Application) -> None:
        await admin.start()

    async def on_shutdown(app: web.Application) -> None:
        await bounded("admin background work", admin.stop())

    app.on_startup.append(on_startup)
    app.on_shutdown.append(on_shutdown)
    return admin


__all__ = ["Admin", "setup"]
