"""The admin pages (issue 5): content editing with history and undo,
retraining with evaluation, model activation and rollback, the inbox of what
the bot did not understand, statistics, and retention.

``setup(app, server)`` is the one call the chat server makes.

Modules: ``editing``/``checks``/``yamlfile`` (the training data as edits,
their checks, the YAML files), ``changes`` (recorded edits, undo, the
running bot's reload), ``training_jobs``, ``registry`` and ``nlu_guard``
(models), ``inbox``/``similarity``, ``statistics``, ``retention``,
``routes`` (HTTP).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import web

from bot.content import CONTRACT_INTENTS, RUNTIME_PLACEHOLDERS, ContentError
from bot.nlu import RasaClient

from ..context import ADMIN_KEY
from ..shutdown import bounded
from . import routes
from .changes import ContentService
from .checks import PAYLOAD_TARGETS
from .editing import TrainingData, versions
from .inbox import Inbox
from .nlu_guard import ActivationFlag, GuardedNlu
from .registry import ModelRegistry
from .retention import Retention
from .statistics import Statistics
from .training_jobs import TrainingService

log = logging.getLogger(__name__)


class Admin:
    """Everything the admin pages hold in one chat server process."""

    def __init__(self, server: Any) -> None:
        self.server = server
        self.flag: ActivationFlag | None = None
        self.content = ContentService(server)
        self.statistics = Statistics(server)
        self.retention = Retention(server, self.statistics, self.content)
        self.inbox = Inbox(server, self.content)
        self.models: ModelRegistry | None = None
        self.training: TrainingService | None = None
        self._tasks: list[asyncio.Task] = []
        self._guarded: GuardedNlu | None = None

    async def start(self) -> None:
        server = self.server
        self.flag = ActivationFlag(server.redis, server.settings.redis_prefix)
        self.models = ModelRegistry(server, self.flag)
        self.training = TrainingService(server, self.models)
        nlu = getattr(server.bot, "nlu", None)
        if type(nlu) is RasaClient:
            self._guarded = GuardedNlu(nlu, self.flag, server.settings.rasa_token)
            server.bot.nlu = self._guarded
            self.models.nlu = self._guarded
        await self.content.prime()
        self._tasks = [asyncio.create_task(self.content.watch(), name="admin-content-watch"),
                       asyncio.create_task(self.retention.loop(), name="admin-retention")]
        if self._guarded is not None and server.redis is not None and len(server.settings.rasa_urls) > 1:
            self._tasks.append(asyncio.create_task(self.flag.watch_loading(self._guarded),
                                                   name="admin-rasa-loading-watch"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
        if self.training is not None:
            await self.training.stop()
        if self._guarded is not None:
            # The bot may outlive this server (tests share one): give it back its own client.
            if self.server.bot.nlu is self._guarded:
                self.server.bot.nlu = self._guarded.inner
            await self._guarded.patient.close()

    async def content_view(self, data: TrainingData) -> dict[str, Any]:
        """The training data as the page shows it (no YAML), with every current problem."""
        responses_help = _response_help(data.responses_text)
        fact_help = _fact_help(data.facts_text)
        return {
            "intents": [{"id": name, "description": data.intents[name].get("description") or "",
                         "examples": {lang: data.examples(name, lang) for lang in ("fi", "sv", "en")},
                         "contract": name in CONTRACT_INTENTS}
                        for name in sorted(data.intents, key=_intent_order)],
            "responses": {rid: {**entry, "help": responses_help.get(rid, ""),
                                "group": "intent" if rid in data.intents else "system"}
                          for rid, entry in data.responses.items()},
            "facts": {name: {**(entry if isinstance(entry, dict) else {"value": entry}),
                             "help": fact_help.get(name, "")}
                      for name, entry in data.facts.items()},
            "hours": {k: v for k, v in data.opening_hours.items() if isinstance(v, dict)},
            # Facts to fill, confirm or re-check first; the coming closed days (holidays, the area's own).
            **_facts_attention(data),
            "placeholders": sorted(set(data.facts) | RUNTIME_PLACEHOLDERS),
            "payload_targets": sorted(PAYLOAD_TARGETS, key=_intent_order),
            "problems": [p.to_json() for p in data.problems()],
            "version": await self.content.version(),
            # Sent back with each edit of an item (editing.item_version): an item
            # changed since the page loaded it is not overwritten.
            "versions": versions(data),
        }


def _facts_attention(data: TrainingData) -> dict[str, Any]:
    try:
        content = data.to_content()
        report = [{k: v for k, v in row.items() if k != "value"} for row in content.fact_report()]
        closures = [c.to_json() for c in content.hours.closures(30)]
        example_hours = content.hours.example
        crisis = content.unfilled_crisis_facts()
    except (ContentError, ValueError):  # the page lists the problems; the report waits for a valid file
        report, closures, example_hours, crisis = [], [], False, []
    return {"fact_report": report, "closures": closures, "example_hours": example_hours,
            "unfilled_crisis_facts": crisis}


def _intent_order(name: str) -> tuple[int, str]:
    return (CONTRACT_INTENTS.index(name) if name in CONTRACT_INTENTS else len(CONTRACT_INTENTS), name)


def _response_help(text: str) -> dict[str, str]:
    """The comment lines right above each answer in responses.yml (what it is for)."""
    out: dict[str, str] = {}
    comments: list[str] = []
    for line in text.splitlines():
        if line.startswith("#"):
            comments.append(line.lstrip("#").strip())
            continue
        if comments and line[:1].isalpha() and line.rstrip().endswith(":"):
            if not any(c and set(c) <= set("=-") for c in comments):  # not a section banner
                out[line.rstrip()[:-1]] = " ".join(c for c in comments if c)
        comments = []
    return out


def _fact_help(text: str) -> dict[str, str]:
    """The comments inside each fact's block in service_facts.yml."""
    out: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        if line.startswith("  ") and not line.startswith("   ") and line.rstrip().endswith(":") \
                and not line.strip().startswith("#"):
            current = line.strip()[:-1]
        elif current and line.startswith("    #"):
            out.setdefault(current, []).append(line.strip().lstrip("#").strip())
        elif line and not line.startswith(" "):
            current = None
    return {k: " ".join(v) for k, v in out.items()}




def setup(app: web.Application, server: Any) -> Admin:
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


__all__ = ["Admin", "ADMIN_KEY", "setup"]
