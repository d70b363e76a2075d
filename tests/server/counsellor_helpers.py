"""Helpers of the counsellor tests: a staff member's browser (cookies, the
sign-in form, CSRF) and their console's Socket.IO connection to "/counsellor"."""

from __future__ import annotations

import asyncio
import re
from datetime import datetime, timezone
from typing import Any

import aiohttp
import socketio

from .helpers import EVENT_TIMEOUT_SECS, EventInbox, RunningServer

PASSWORD = "oikein-hyvä-salasana-42"
_CSRF_FIELD_RE = re.compile(r'name="csrf_token" value="([^"]+)"')
_SECRET_RE = re.compile(r'id="totp-secret">([A-Z2-7 ]+)</code>')

# The authenticator "app" of the tests: the TOTP secret each account enrolled (by
# server URL and username), and the last time step each used (a code works once).
TOTP_SECRETS: dict[tuple[str, str], str] = {}
_LAST_STEP: dict[str, int] = {}


def unused_code(secret: str) -> str | None:
    """The code an authenticator shows, for a time step this secret has not used yet
    (the server refuses a step twice; it accepts one step ahead); None while both the
    current step and the next are used (wait a second and ask again)."""
    import pyotp

    totp = pyotp.TOTP(secret)
    step = totp.timecode(datetime.now(timezone.utc))
    last = _LAST_STEP.get(secret, -1)
    for candidate in (step, step + 1):
        if candidate > last:
            _LAST_STEP[secret] = candidate
            return totp.generate_otp(candidate)
    return None


async def next_code(secret: str) -> str:
    """unused_code, waiting for a step this secret has not used yet."""
    while (code := unused_code(secret)) is None:
        await asyncio.sleep(1)
    return code


def last_used_code(secret: str) -> str:
    """The code this secret last gave (to try it again)."""
    import pyotp

    return pyotp.TOTP(secret).generate_otp(_LAST_STEP[secret])


async def full_sign_in(auth: Any, username: str, password: str, address: str = "127.0.0.1") -> tuple[Any, str]:
    """Password and second factor through StaffAuth itself (enrolling on the first sign-in):
    (Staff, session token)."""
    pending, _token = await auth.sign_in(username, password, address)
    key = (str(id(auth)), username)
    if not pending.enrolled:
        TOTP_SECRETS[key] = await auth.enrolment_secret(pending)
    staff, token, _codes = await auth.second_factor(pending, await next_code(TOTP_SECRETS[key]), address)
    return staff, token


async def create_staff(server: RunningServer, username: str, role: str = "counsellor",
                       display_name: str | None = None, password: str = PASSWORD) -> Any:
    return await server.server.auth.create_user(username, display_name or username.title(), role, password)


class StaffBrowser:
    """A counsellor's or admin's browser: a cookie jar, the sign-in form, the console socket."""

    def __init__(self, server: RunningServer | str) -> None:
        self.url = server if isinstance(server, str) else server.url
        self.http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))  # unsafe: 127.0.0.1
        self.console: ConsoleClient | None = None
        self.last_response: aiohttp.ClientResponse | None = None

    async def close(self) -> None:
        if self.console is not None:
            await self.console.close()
        await self.http.close()

    async def login_form(self) -> str:
        async with self.http.get(self.url + "/login") as response:
            assert response.status == 200
            body = await response.text()
        return _CSRF_FIELD_RE.search(body).group(1)

    async def sign_in(self, username: str, password: str = PASSWORD, *, expect: int = 303) -> aiohttp.ClientResponse:
        """The sign-in form, then (when the password was right) the
        second factor as a person does it: the enrolment page's secret into the
        "authenticator" at the first sign-in, its code. ``expect`` is the password
        step's status (303: on to the second factor); the answer returned is the
        last one (the second factor's 303 to the page, with the session cookie)."""
        response = await self.password_step(username, password)
        assert response.status == expect, f"sign-in answered {response.status}, expected {expect}"
        if response.status == 303:
            done = await self.second_factor_step(username, response.headers["Location"])
            assert done.status == 303, f"second factor answered {done.status}"
            return done
        return response

    async def password_step(self, username: str, password: str = PASSWORD) -> aiohttp.ClientResponse:
        csrf = await self.login_form()
        async with self.http.post(self.url + "/login", allow_redirects=False, data={
                "username": username, "password": password, "csrf_token": csrf, "next": "/console"}) as response:
            await response.read()
            self.last_response = response
        return response

    async def second_factor_step(self, username: str, location: str, code: str | None = None) -> aiohttp.ClientResponse:
        """GET the second-factor (or enrolment) page, POST a code; the recovery codes page of an
        enrolment is followed to its continue link (303-like: the answer's status is made 303)."""
        async with self.http.get(self.url + location, allow_redirects=True) as page:
            body = await page.text()
            final = str(page.url)
        csrf = _CSRF_FIELD_RE.search(body).group(1)
        key = (self.url, username)
        match = _SECRET_RE.search(body)
        if match:
            TOTP_SECRETS[key] = match.group(1).replace(" ", "")
        if code is None:
            code = await next_code(TOTP_SECRETS[key])
        action = "/login/enrol" if "/login/enrol" in final else "/login/second-factor"
        async with self.http.post(self.url + action, allow_redirects=False,
                                  data={"csrf_token": csrf, "code": code, "next": "/console"}) as response:
            text = await response.text()
            self.last_response = response
            self.recovery_codes = re.findall(r"<li>([a-z2-7]{4}-[a-z2-7]{4}-[a-z2-7]{4}-[a-z2-7]{4})</li>", text)
        if response.status == 200 and self.recovery_codes:
            # The recovery codes page: signed in; its button goes on to the page asked for.
            link = re.search(r'href="([^"]+)" id="continue"', text).group(1)
            return _Answer(303, {"Location": link}, response.cookies, text)
        return response


    def cookie(self, name: str) -> str | None:
        for morsel in self.http.cookie_jar:
            if morsel.key == name:
                return morsel.value
        return None

    def cookie_header(self) -> str:
        return "; ".join(f"{m.key}={m.value}" for m in self.http.cookie_jar)

    async def get(self, path: str, **kwargs: Any) -> tuple[int, Any]:
        async with self.http.get(self.url + path, allow_redirects=False, **kwargs) as response:
            body = await (response.json() if response.content_type == "application/json" else response.text())
            return response.status, body

    async def csrf(self) -> str:
        status, page = await self.get("/console", headers={"Accept": "text/html"})
        assert status == 200, status
        return re.search(r'<meta name="csrf-token" content="([^"]+)"', page).group(1)

    async def open_console(self) -> "ConsoleClient":
        self.console = await ConsoleClient(self.url, self.cookie_header()).connect()
        return self.console


class ConsoleError(AssertionError):
    pass


class ConsoleClient(EventInbox):
    """The console's socket: requests answered by acknowledgement, events recorded in order."""

    NS = "/counsellor"

    def __init__(self, url: str, cookie: str | None, *, headers: dict | None = None) -> None:
        self.url = url
        self.cookie = cookie
        self.headers = dict(headers or {})
        if cookie:
            self.headers["Cookie"] = cookie
        super().__init__()
        self.sio = socketio.AsyncClient(reconnection=False)
        self.sio.on("*", self._record, namespace=self.NS)

    async def connect(self) -> "ConsoleClient":
        await self.sio.connect(self.url, headers=dict(self.headers), namespaces=[self.NS], transports=["websocket"],
                               wait_timeout=EVENT_TIMEOUT_SECS)
        return self

    async def call(self, event: str, payload: Any = None) -> dict:
        """The acknowledgement of a request, whatever it says."""
        return await self.sio.call(event, payload if payload is not None else {}, namespace=self.NS,
                                   timeout=EVENT_TIMEOUT_SECS)

    async def ok(self, event: str, payload: Any = None) -> dict:
        """A request that must succeed."""
        answer = await self.call(event, payload)
        if not answer.get("ok"):
            raise ConsoleError(f"{event} refused: {answer}")
        return answer


async def queued_resident(connect, server: RunningServer | str, text: str = "/join_queue"):
    """A resident whose conversation waits in the counsellor queue."""
    resident = await connect(server)
    await resident.session()
    await resident.next("bot_uttered")
    await resident.ack(await resident.say(text))
    await resident.next("handoff_state", lambda p: p["state"] in ("queued", "unavailable"))
    return resident


async def picked_up_resident(connect, server: RunningServer, counsellor):
    """A queued resident whose chat ``counsellor`` has picked up, with what it received
    so far skipped: (resident, conversation id)."""
    resident = await queued_resident(connect, server)
    cid = await conversation_id_of(server, resident)
    await counsellor.ok("pick_up", {"conversation_id": cid})
    await resident.next("handoff_state", lambda p: p["state"] == "counsellor")
    skip_pending(resident)
    return resident, cid


async def conversation_id_of(server: RunningServer, resident) -> int:
    from chat_server.resident.sessions import hash_session_id

    rows = await server.sql("SELECT id FROM conversations WHERE session_hash = :h",
                            h=hash_session_id(resident.session_id))
    return rows[0][0]


def skip_pending(client) -> None:
    """Forget what a (resident or console) client has received so far: next() waits for new events."""
    client._taken.update(range(len(client.received)))


class _Answer:
    """What a followed page amounts to: a status, headers, cookies and text, like a response."""

    def __init__(self, status: int, headers: dict, cookies: Any, text: str) -> None:
        self.status, self.headers, self.cookies, self._text = status, headers, cookies, text

    async def text(self) -> str:
        return self._text
