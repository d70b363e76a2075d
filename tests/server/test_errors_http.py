"""The error family over HTTP (chat_server/errors_http.py): any ChatServerError an
HTTP handler raises is answered once, with its status and ``{"error": code, ...}``."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from chat_server.errors import ChatServerError, InvalidStaffInput, SignInThrottled
from chat_server.errors_http import error_middleware


class Refused(ChatServerError):
    code = "conflict"
    http_status = 409

    def to_json(self) -> dict[str, Any]:
        return {**super().to_json(), "detail": self.detail}


async def _answers(raised: Exception) -> tuple[int, dict[str, Any], str]:
    async def handler(request: web.Request) -> web.StreamResponse:
        raise raised

    app = web.Application(middlewares=[error_middleware])
    app.router.add_get("/x", handler)
    async with TestClient(TestServer(app)) as client:
        response = await client.get("/x")
        return response.status, await response.json(), response.headers.get("Cache-Control", "")


async def test_an_error_of_the_family_is_its_status_and_code() -> None:
    assert await _answers(SignInThrottled("growing delay", wait_secs=3)) == (
        429, {"error": "too_many_attempts"}, "no-store")
    assert (await _answers(InvalidStaffInput("username: ...")))[:2] == (400, {"error": "invalid_input"})
    assert (await _answers(ChatServerError("x", code="busy", http_status=409)))[:2] == (409, {"error": "busy"})


async def test_a_subclass_adds_to_the_body() -> None:
    assert (await _answers(Refused("edited meanwhile")))[:2] == (
        409, {"error": "conflict", "detail": "edited meanwhile"})
