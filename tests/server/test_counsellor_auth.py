"""Staff sign-in over real HTTP: passwords, throttling, CSRF, cookies, roles,
the "/counsellor" namespace's door, and the users command line. (The second
factor, sessions' timeouts and growing delays: test_staff_security.py.)"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
import socketio

from bot.settings import PROJECT_ROOT
from chat_server.staff.sessions import hash_token

from .counsellor_helpers import PASSWORD, ConsoleClient, create_staff


async def test_right_password_signs_in_with_a_hashed_session_and_strict_cookie(server, browsers):
    await create_staff(server, "anna", display_name="Anna Ohjaaja")
    browser = browsers(server)
    response = await browser.sign_in("anna")
    assert response.headers["Location"] == "/console"
    cookie = response.cookies["polku_staff"]
    assert cookie["httponly"] and cookie["samesite"] == "Strict" and not cookie["secure"]
    assert cookie["path"] == "/"
    assert not cookie["max-age"] and not cookie["expires"]  # gone with the browser
    token = cookie.value
    # Only the token's hash is at rest; the password only as an argon2id hash.
    rows = await server.sql("SELECT token_hash FROM staff_sessions")
    assert rows == [(hash_token(token),)] and token not in str(rows)
    (password_hash,) = (await server.sql("SELECT password_hash FROM staff_users"))[0]
    assert password_hash.startswith("$argon2id$") and PASSWORD not in password_hash

    status, page = await browser.get("/console", headers={"Accept": "text/html"})
    assert status == 200 and "Anna Ohjaaja" in page
    assert await server.sql("SELECT action, detail FROM audit_log ORDER BY id") == [
        ("password_ok", ""), ("sign_in", "enrolled")]


async def test_wrong_password_or_unknown_user_gets_the_same_answer(server, browsers):
    await create_staff(server, "anna")
    browser = browsers(server)
    wrong = await browser.sign_in("anna", "väärä-salasana-123", expect=401)
    unknown = await browser.sign_in("nobody", PASSWORD, expect=401)
    assert "polku_staff" not in wrong.cookies and "polku_staff" not in unknown.cookies
    assert await server.count("staff_sessions") == 0
    assert (await browser.get("/console", headers={"Accept": "text/html"}))[0] == 303


async def test_one_address_is_throttled_over_all_accounts(launch, sqlite_settings, browsers):
    server = await launch(sqlite_settings, POLKU_LOGIN_RATE_ADDRESS_PER_MIN=3)
    await create_staff(server, "anna")
    browser = browsers(server)
    for name in ("x1", "x2", "x3"):
        await browser.sign_in(name, PASSWORD, expect=401)
    await browser.sign_in("anna", PASSWORD, expect=429)


async def test_state_changing_requests_need_the_csrf_token(server, browsers):
    await create_staff(server, "anna")
    browser = browsers(server)
    # The sign-in form: without its token, nothing happens.
    async with browser.http.post(browser.url + "/login", allow_redirects=False,
                                 data={"username": "anna", "password": PASSWORD}) as response:
        assert response.status == 403
    await browser.login_form()
    async with browser.http.post(browser.url + "/login", allow_redirects=False,
                                 data={"username": "anna", "password": PASSWORD, "csrf_token": "guess"}) as response:
        assert response.status == 403
    assert await server.count("staff_sessions") == 0

    await browser.sign_in("anna")
    async with browser.http.post(browser.url + "/logout", allow_redirects=False) as response:
        assert response.status == 403
    async with browser.http.post(browser.url + "/logout", allow_redirects=False,
                                 headers={"X-CSRF-Token": "wrong"}) as response:
        assert response.status == 403
    assert await server.count("staff_sessions") == 1
    csrf = await browser.csrf()
    async with browser.http.post(browser.url + "/logout", allow_redirects=False,
                                 data={"csrf_token": csrf}) as response:
        assert response.status == 303 and response.headers["Location"].startswith("/login")
    assert await server.count("staff_sessions") == 0
    assert (await browser.get("/console", headers={"Accept": "text/html"}))[0] == 303


async def test_https_public_url_makes_secure_host_cookies(launch, sqlite_settings, browsers):
    server = await launch(sqlite_settings, POLKU_PUBLIC_URL="https://chat.example.fi")
    await create_staff(server, "anna")
    browser = browsers(server)
    async with browser.http.get(browser.url + "/login") as response:
        login_cookie = response.cookies["__Host-polku_login_csrf"]
        assert login_cookie["secure"] and login_cookie["httponly"] and login_cookie["samesite"] == "Strict"
    # (The test client is on http, so it would not send a Secure cookie back; the header is what matters.)


async def test_pages_and_api_by_role(server, browsers):
    await create_staff(server, "anna")
    await create_staff(server, "ville", role="admin")
    anonymous = browsers(server)
    status, _ = await anonymous.get("/console", headers={"Accept": "text/html"})
    assert status == 303
    assert (await anonymous.get("/api/admin/audit"))[0] == 401
    assert (await anonymous.get("/api/console/conversations/1"))[0] == 401

    counsellor = browsers(server)
    await counsellor.sign_in("anna")
    assert (await counsellor.get("/console", headers={"Accept": "text/html"}))[0] == 200
    assert (await counsellor.get("/api/admin/audit"))[0] == 403
    assert (await counsellor.get("/admin/audit", headers={"Accept": "text/html"}))[0] == 403

    admin = browsers(server)
    await admin.sign_in("ville")
    assert (await admin.get("/console", headers={"Accept": "text/html"}))[0] == 200  # admins counsel too
    status, body = await admin.get("/api/admin/audit")
    assert status == 200
    sign_ins = [(r["username"], r["action"]) for r in body["records"] if r["action"] == "sign_in"]
    assert sign_ins == [("ville", "sign_in"), ("anna", "sign_in")]
    status, page = await admin.get("/admin/audit", headers={"Accept": "text/html"})
    assert status == 200 and "<table" in page and "sign_in" in page


async def test_disabled_account_is_signed_out_everywhere(server, browsers):
    await create_staff(server, "anna")
    browser = browsers(server)
    await browser.sign_in("anna")
    await server.server.auth.set_disabled("anna", True)
    assert (await browser.get("/console", headers={"Accept": "text/html"}))[0] == 303
    await browser.sign_in("anna", expect=401)


async def test_counsellor_namespace_turns_away_anyone_not_signed_in(server, browsers):
    for cookie in (None, "polku_staff=forged-token-value"):
        client = ConsoleClient(server.url, cookie)
        with pytest.raises(socketio.exceptions.ConnectionError):
            await client.connect()
        await client.close()
    # Signed in: in. Signed out: the console is closed and cannot come back.
    await create_staff(server, "anna")
    browser = browsers(server)
    await browser.sign_in("anna")
    console = await browser.open_console()
    hello = await console.ok("hello")
    assert hello["staff"]["username"] == "anna"
    cookie = browser.cookie_header()
    csrf = await browser.csrf()
    async with browser.http.post(browser.url + "/logout", allow_redirects=False, data={"csrf_token": csrf}):
        pass
    await console.next("signed_out")
    again = ConsoleClient(server.url, cookie)
    with pytest.raises(socketio.exceptions.ConnectionError):
        await again.connect()
    await again.close()


async def test_console_from_a_foreign_origin_is_refused(server, browsers):
    await create_staff(server, "anna")
    browser = browsers(server)
    await browser.sign_in("anna")
    client = ConsoleClient(server.url, browser.cookie_header(), headers={"Origin": "https://evil.example"})
    with pytest.raises(socketio.exceptions.ConnectionError):
        await client.connect()
    await client.close()


def _cli(env: dict, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "chat_server", "users", *args], cwd=PROJECT_ROOT, env=env,
                          input=stdin, capture_output=True, text=True, timeout=60)


def test_users_command_line(tmp_path):
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("POLKU_")}, "POLKU_DATA_DIR": str(tmp_path)}
    done = _cli(env, "create", "--username", "Anna", "--display-name", "Anna K", "--role", "counsellor",
                "--password-stdin", stdin=PASSWORD + "\n")
    assert done.returncode == 0, done.stderr
    assert "created counsellor anna" in done.stdout
    done = _cli(env, "create", "--username", "anna", "--display-name", "Anna", "--role", "admin",
                "--password-stdin", stdin=PASSWORD + "\n")
    assert done.returncode == 1 and "taken" in done.stderr
    done = _cli(env, "create", "--username", "ville", "--display-name", "Ville", "--role", "admin",
                "--password-stdin", stdin="short\n")
    assert done.returncode == 1 and "12 characters" in done.stderr
    assert _cli(env, "disable", "--username", "anna").returncode == 0
    listing = _cli(env, "list").stdout
    assert "anna" in listing and "disabled" in listing and "Anna K" in listing and PASSWORD not in listing


def _error_text(page: str) -> str:
    """The sign-in page's error message (the page also echoes the username)."""
    match = re.search(r'role="alert".*?</div>', page, re.S)
    return match.group(0) if match else ""
