"""What a handler may reach of the running server, typed, with no import of
the server itself.

``app.ChatServer`` builds everything at start-up and is stored in the aiohttp
application under ``SERVER_KEY``; the admin pages' state under ``ADMIN_KEY``.
Handlers and services look them up through these keys and are typed against
the protocols here. This module imports the types of the shared parts (store,
events, handoff, queue, presence) and nothing that looks the server up, so no
import cycle runs through the application.
"""

from __future__ import annotations

from typing import Any, Protocol

import socketio
from aiohttp import web
from redis import asyncio as aioredis

from bot.policy import Bot
from bot.settings import Settings

from .events import Events
from .handoff import Handoff
from .presence import Presence
from .queue import HandoffQueue
from .ratelimit import Network
from .store.conversations import Conversations
from .store.core import Store


class ServerContext(Protocol):
    """The parts of one started chat server process that handlers use.

    ``auth`` (``staff.service.StaffAuth``), ``oidc``, ``callbacks`` and
    ``counsellor`` stay untyped here: their modules look the server up through
    this module, so importing them here would make a cycle. Handlers reach them
    typed through their own packages (``staff.web.staff_auth(request)``,
    ``counsellor.pages``).
    """

    settings: Settings
    sio: socketio.AsyncServer
    events: Events
    bot: Bot
    store: Store
    conversations: Conversations
    redis: aioredis.Redis | None
    queue: HandoffQueue
    presence: Presence
    handoff: Handoff
    trusted_proxies: tuple[Network, ...]
    auth: Any
    oidc: Any
    callbacks: Any
    counsellor: Any


class AdminContext(Protocol):
    """The admin pages' state in one process."""

    server: ServerContext


SERVER_KEY: web.AppKey[ServerContext] = web.AppKey("polku_chat_server", ServerContext)
ADMIN_KEY: web.AppKey[AdminContext] = web.AppKey("polku_admin", AdminContext)


def server_of(app_or_request: web.Application | web.Request) -> ServerContext:
    """The server of an application or of a request's application."""
    app = app_or_request.app if isinstance(app_or_request, web.Request) else app_or_request
    return app[SERVER_KEY]
