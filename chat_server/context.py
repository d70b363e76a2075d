"""What a handler may reach of the running server, typed, with no import of
the server itself.

``app.ChatServer`` builds everything at start-up and is stored in the aiohttp
application under ``SERVER_KEY``; the admin pages' state under ``ADMIN_KEY``.
Handlers and services look them up through these keys and are typed against
the protocols here, so this module imports nothing of the chat server's
packages but the storage layer's types, and no import cycle runs through the
application.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from aiohttp import web

from bot.settings import Settings

if TYPE_CHECKING:
    from chat_server.store.conversations import Conversations


class ServerContext(Protocol):
    """The parts of one chat server process that handlers use."""

    settings: Settings
    sio: Any
    events: Any
    bot: Any
    store: Any
    conversations: Conversations
    redis: Any
    queue: Any
    presence: Any
    handoff: Any
    auth: Any
    oidc: Any
    callbacks: Any
    counsellor: Any
    trusted_proxies: Any


class AdminContext(Protocol):
    """The admin pages' state in one process."""

    server: ServerContext


SERVER_KEY: web.AppKey[ServerContext] = web.AppKey("polku_chat_server", ServerContext)
ADMIN_KEY: web.AppKey[AdminContext] = web.AppKey("polku_admin", AdminContext)


def server_of(app_or_request: web.Application | web.Request) -> ServerContext:
    """The server of an application or of a request's application."""
    app = app_or_request.app if isinstance(app_or_request, web.Request) else app_or_request
    return app[SERVER_KEY]
