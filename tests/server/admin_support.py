"""Helpers of the admin tests: a signed-in admin's HTTP client, and rows of
known conversations written straight into a server's database."""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any

import aiohttp

from chat_server.admin import Admin
from chat_server.context import ADMIN_KEY
from chat_server.staff.web import cookie_name
from chat_server.store.models import Conversation, HandoffTransition, Message

from .counsellor_helpers import full_sign_in
from .helpers import RunningServer

PASSWORD = "correct horse battery staple"
# Kinds of edit that replace an item whole, and the request field naming the item.
VERSIONED = {"description": "intent", "answer": "response", "fact": "fact", "hours": "channel"}


def admin_of(server: RunningServer) -> Admin:
    return server.app[ADMIN_KEY]


async def create_staff(server: RunningServer, role: str = "admin", name: str | None = None):
    username = name or f"{role}-{secrets.token_hex(3)}"
    return await server.server.auth.create_user(username, f"Testi {role.title()}", role, PASSWORD)


class AdminClient:
    """HTTP as a signed-in staff member: the session cookie, and the CSRF header on changes."""

    def __init__(self, server: RunningServer, token: str | None, csrf: str | None) -> None:
        self.server = server
        self.base = server.url
        cookies = {cookie_name(server.settings): token} if token else {}
        self.csrf = csrf
        self.http = aiohttp.ClientSession(cookies=cookies, cookie_jar=aiohttp.CookieJar(unsafe=True))

    @classmethod
    async def sign_in(cls, server: RunningServer, role: str = "admin") -> "AdminClient":
        user = await create_staff(server, role)
        staff, token = await full_sign_in(server.server.auth, user.username, PASSWORD)
        return cls(server, token, staff.csrf)

    async def close(self) -> None:
        await self.http.close()

    async def request(self, method: str, path: str, body: Any = None, *, csrf: bool = True,
                      expect: int | None = 200) -> Any:
        headers = {"Accept": "application/json"}
        if csrf and self.csrf and method != "GET":
            headers["X-CSRF-Token"] = self.csrf
        async with self.http.request(method, self.base + path, json=body, headers=headers,
                                     allow_redirects=False) as response:
            text = await response.text()
            if expect is not None:
                assert response.status == expect, f"{method} {path}: {response.status} {text[:800]}"
            if response.content_type == "application/json":
                return await response.json()
            return text

    async def get(self, path: str, **kw: Any) -> Any:
        return await self.request("GET", path, **kw)

    async def post(self, path: str, body: Any = None, **kw: Any) -> Any:
        return await self.request("POST", path, {} if body is None else body, **kw)

    async def delete(self, path: str, **kw: Any) -> Any:
        return await self.request("DELETE", path, **kw)

    async def change(self, body: dict, expect: int = 200) -> Any:
        """An edit as the page makes it: an item edited whole carries the version the page
        would have loaded (fetched now, unless the body has one)."""
        if body.get("kind") in VERSIONED and "version" not in body:
            body = {**body, "version": await self.version_of(body)}
        return await self.post("/admin/api/changes", body, expect=expect)

    async def version_of(self, body: dict) -> str | None:
        """The version of the item ``body`` edits, as the content page has it now."""
        kind = body["kind"]
        content = await self.get("/admin/api/content", expect=None)
        if not isinstance(content, dict) or "versions" not in content:
            return None  # not allowed to read it (the request is refused anyway)
        return content["versions"][kind].get(body.get(VERSIONED[kind]))


async def seed_conversation(server: RunningServer, *, created_at: datetime, language: str = "fi",
                            topic: str | None = "income_support_basic", resident_texts: tuple[str, ...] = ("hei",),
                            moves: tuple[tuple[str, str, str | None, datetime], ...] = (),
                            last_activity_at: datetime | None = None, state: str | None = None,
                            intent: str = "income_support_basic", confidence: float = 0.9) -> int:
    """A conversation as the server would have stored it, at the given times; returns its id."""
    async with server.server.store.transaction() as tx:
        conversation = Conversation(
            session_hash=secrets.token_hex(32), created_at=created_at,
            last_activity_at=last_activity_at or created_at, language=language,
            handoff_state=state or (moves[-1][1] if moves else "bot"), dialogue_state={}, topic=topic,
            priority="normal")
        tx.session.add(conversation)
        await tx.session.flush()
        for text in resident_texts:
            tx.session.add(Message(conversation_id=conversation.id, sender="resident", text=text,
                                   intent=intent, confidence=confidence, language=language,
                                   created_at=created_at))
            tx.session.add(Message(conversation_id=conversation.id, sender="bot", text="vastaus",
                                   response_id=intent, language=language, created_at=created_at))
        for from_state, to_state, reason, at in moves:
            actor = "counsellor:1" if to_state == "counsellor" else "bot"
            tx.session.add(HandoffTransition(conversation_id=conversation.id, from_state=from_state,
                                             to_state=to_state, actor=actor, reason=reason, at=at))
        return conversation.id
