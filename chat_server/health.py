"""Liveness (``GET /health``) and readiness (``GET /ready``).

Readiness reports each dependency as "ok", "error" or "not configured" and
answers 503 only when the database is down. What went wrong (internal URLs,
error classes) is told only to signed-in staff and to the machine itself
(a loopback address that did not come through a proxy); anyone else gets
the statuses alone. Readiness answers 503 only when the database is down: without Redis residents still
get `server_busy` in their own language, and without Rasa the bot still
answers (nlu_unavailable), which beats a load balancer's error page.
"""

from __future__ import annotations

import asyncio
import ipaddress
from typing import Any

import aiohttp
from aiohttp import web

from .context import SERVER_KEY, ServerContext
from .errors import BackendUnavailable
from .staff.web import address_of, current_staff

READY_CHECK_TIMEOUT_SECS = 2.0


async def health(request: web.Request) -> web.Response:
    """Alive; for those who may see details (as /ready's), the process's counts of
    refused client input since it started (frames.FrameStats: malformed frames,
    connections closed for them, refusals by code)."""
    server = request.app.get(SERVER_KEY)
    stats = getattr(getattr(server, "sio", None), "frame_stats", None)
    body: dict[str, Any] = {"status": "ok"}
    if stats is not None and await _may_see_details(request):
        body["refused"] = stats.snapshot()
    return web.json_response(body)


async def _check_database(server: ServerContext) -> tuple[str, str | None]:
    try:
        await server.store.ping()
        return "ok", None
    except BackendUnavailable as exc:
        return "error", exc.detail


async def _check_redis(server: ServerContext) -> tuple[str, str | None]:
    if server.redis is None:
        return "not configured", None
    try:
        async with asyncio.timeout(READY_CHECK_TIMEOUT_SECS):
            await server.redis.ping()
        return "ok", None
    except Exception as exc:
        return "error", type(exc).__name__


async def _check_one_rasa(session: aiohttp.ClientSession, base: str,
                          params: dict[str, str] | None) -> str | None:
    """None when the Rasa server at `base` answers, else what went wrong."""
    try:
        # /status tells that a model is loaded; it needs the token when Rasa has one.
        for path in ("/status", "/"):
            async with session.get(base + path, params=params) as response:
                if response.status == 200:
                    return None
        return f"HTTP {response.status}"
    except Exception as exc:
        return type(exc).__name__


async def _check_rasa(server: ServerContext) -> tuple[str, str | None]:
    """"ok" when every Rasa server of POLKU_RASA_URL answers; the detail names the
    ones that do not (the bot's parses go to the others meanwhile)."""
    urls = server.settings.rasa_urls
    params = {"token": server.settings.rasa_token} if server.settings.rasa_token else None
    timeout = aiohttp.ClientTimeout(total=READY_CHECK_TIMEOUT_SECS)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session:
            problems = await asyncio.gather(*(_check_one_rasa(session, url, params) for url in urls))
    except Exception as exc:
        return "error", type(exc).__name__
    failed = [(url, problem) for url, problem in zip(urls, problems) if problem is not None]
    if not failed:
        return "ok", None
    if len(urls) == 1:
        return "error", failed[0][1]
    return "error", "; ".join(f"{url}: {problem}" for url, problem in failed)


async def ready(request: web.Request) -> web.Response:
    server = request.app[SERVER_KEY]
    results = await asyncio.gather(_check_database(server), _check_redis(server), _check_rasa(server))
    checks: dict[str, str] = {}
    details: dict[str, str] = {}
    for name, (status, detail) in zip(("database", "redis", "rasa"), results):
        checks[name] = status
        if detail:
            details[name] = detail
    ok = checks["database"] == "ok"
    body = {"status": "ok" if ok else "error", "checks": checks}
    if details and await _may_see_details(request):
        body["details"] = details
    return web.json_response(body, status=200 if ok else 503)


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


async def _may_see_details(request: web.Request) -> bool:
    """Staff, or a client on this machine: the peer is loopback and no proxy forwarded the request
    (a proxy of POLKU_TRUSTED_PROXIES is looked through to the client it names)."""

    forwarded = "X-Forwarded-For" in request.headers or "Forwarded" in request.headers
    address = address_of(request)
    if _is_loopback(address) and (not forwarded or address != request.remote):
        return True
    try:
        return await current_staff(request) is not None
    except Exception:  # the database is what is down
        return False
