"""Staff sign-in fit for social welfare data (issue 16), over real HTTP: the second
factor (enrolment, TOTP, recovery codes, replay), sessions (idle and absolute
timeouts, sign-out everywhere, re-authentication before sensitive actions),
growing delays instead of a lock, failed sign-ins audited, and the headers."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
import logging
import os
import subprocess
import sys

import pytest
import socketio
from sqlalchemy import update

from bot.settings import PROJECT_ROOT
from chat_server.store.staff_models import StaffSession

from .counsellor_helpers import (
    PASSWORD, TOTP_SECRETS, ConsoleClient, StaffBrowser, create_staff, last_used_code, next_code,
)

WRONG = "väärä-salasana-123"


# --- the second factor -----------------------------------------------------------------------


async def test_the_password_alone_opens_nothing(server, browsers):
    await create_staff(server, "ville", role="admin")
    browser = browsers(server)
    step = await browser.password_step("ville")
    assert step.status == 303 and step.headers["Location"].startswith("/login/enrol")
    # Half signed in: no page, no API, no console socket.
    assert (await browser.get("/console", headers={"Accept": "text/html"}))[0] == 303
    assert (await browser.get("/admin", headers={"Accept": "text/html"}))[0] == 303
    assert (await browser.get("/api/admin/audit"))[0] == 401
    console = ConsoleClient(server.url, browser.cookie_header())
    with pytest.raises(socketio.exceptions.ConnectionError):
        await console.connect()
    await console.close()
    # The enrolment page shows the QR code and the key as text.
    status, page = await browser.get("/login/enrol")
    assert status == 200 and 'src="data:image/svg+xml;base64,' in page and 'id="totp-secret"' in page
    # A wrong code: refused, still half signed in.
    done = await browser.second_factor_step("ville", "/login/enrol", code="000000")
    assert done.status == 401
    assert (await browser.get("/console", headers={"Accept": "text/html"}))[0] == 303
    done = await browser.second_factor_step("ville", "/login/enrol")
    assert done.status == 303 and len(browser.recovery_codes) == 10
    assert (await browser.get("/console", headers={"Accept": "text/html"}))[0] == 200
    # The half session was replaced by a new one with a new token (no fixation).
    assert await server.sql("SELECT stage FROM staff_sessions") == [("full",)]
    assert step.cookies["polku_staff"].value != browser.cookie("polku_staff")


async def test_a_code_works_once_and_recovery_codes_once_each(server, browsers):
    await create_staff(server, "anna")
    first = browsers(server)
    await first.sign_in("anna")
    codes = first.recovery_codes
    secret = TOTP_SECRETS[(server.url, "anna")]
    (stored,) = (await server.sql("SELECT code_hash FROM staff_recovery_codes LIMIT 1"))[0]
    assert all(c not in stored for c in codes)  # only hashes at rest
    # The same TOTP code again (seen over a shoulder): refused.
    second = browsers(server)
    step = await second.password_step("anna")
    last_code = last_used_code(secret)
    refused = await second.second_factor_step("anna", step.headers["Location"], code=last_code)
    assert refused.status == 401
    # A recovery code (any spelling: upper case, no dashes) works once.
    ok = await second.second_factor_step("anna", step.headers["Location"], code=codes[0].replace("-", "").upper())
    assert ok.status == 303
    third = browsers(server)
    step = await third.password_step("anna")
    assert (await third.second_factor_step("anna", step.headers["Location"], code=codes[0])).status == 401
    assert (await third.second_factor_step("anna", step.headers["Location"], code=codes[1])).status == 303
    actions = [a for (a,) in await server.sql("SELECT action FROM audit_log ORDER BY id")]
    assert actions.count("second_factor_failed") == 2 and actions.count("sign_in") == 3


async def test_cli_resets_the_second_factor(launch, sqlite_settings, browsers):
    server = await launch(sqlite_settings)
    await create_staff(server, "anna")
    browser = browsers(server)
    await browser.sign_in("anna")
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("POLKU_")},
           "POLKU_DATA_DIR": sqlite_settings["POLKU_DATA_DIR"]}
    done = subprocess.run([sys.executable, "-m", "chat_server", "users", "reset-2fa", "--username", "anna"],
                          cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "second factor reset for anna" in done.stdout
    # Signed out, and the next sign-in enrols a new authenticator.
    assert (await browser.get("/console", headers={"Accept": "text/html"}))[0] == 303
    assert await server.count("staff_recovery_codes") == 0
    step = await browser.password_step("anna")
    assert step.headers["Location"].startswith("/login/enrol")
    listing = subprocess.run([sys.executable, "-m", "chat_server", "users", "list"], cwd=PROJECT_ROOT, env=env,
                             capture_output=True, text=True, timeout=60).stdout
    assert "not enrolled" in listing


# --- sessions --------------------------------------------------------------------------------


async def test_an_idle_session_ends_and_activity_keeps_it(launch, sqlite_settings, browsers):
    server = await launch(sqlite_settings, POLKU_STAFF_IDLE_MINUTES=3 / 60)  # 3 s
    await create_staff(server, "anna")
    browser = browsers(server)
    await browser.sign_in("anna")
    csrf = await browser.csrf()
    for _ in range(3):  # 4.5 s of use, each step within the 3 s
        await asyncio.sleep(1.5)
        async with browser.http.post(server.url + "/session/touch", headers={"X-CSRF-Token": csrf}) as r:
            assert r.status == 200 and 2.5 < (await r.json())["idle_secs_left"] <= 3
    # Polling JSON is not activity: the session still ends.
    await asyncio.sleep(1.5)
    assert (await browser.get("/session"))[0] == 200
    await asyncio.sleep(2.0)
    assert (await browser.get("/session"))[0] == 401
    assert (await browser.get("/console", headers={"Accept": "text/html"}))[0] == 303


async def test_the_absolute_timeout_ends_even_an_active_session(launch, sqlite_settings, browsers):
    server = await launch(sqlite_settings, POLKU_STAFF_SESSION_HOURS=3 / 3600)
    await create_staff(server, "anna")
    browser = browsers(server)
    await browser.sign_in("anna")
    await asyncio.sleep(1.5)
    assert (await browser.get("/console", headers={"Accept": "text/html"}))[0] == 200
    await asyncio.sleep(2.0)
    assert (await browser.get("/console", headers={"Accept": "text/html"}))[0] == 303


async def test_sign_out_everywhere_ends_every_browser_and_console(server, browsers):
    await create_staff(server, "anna")
    laptop, desk = browsers(server), browsers(server)
    await laptop.sign_in("anna")
    await desk.sign_in("anna")
    console = await desk.open_console()
    await console.ok("hello")
    async with laptop.http.post(server.url + "/logout/everywhere", allow_redirects=False,
                                data={"csrf_token": await laptop.csrf()}) as response:
        assert response.status == 303 and "signed_out_everywhere" in response.headers["Location"]
    await console.next("signed_out")
    assert (await desk.get("/console", headers={"Accept": "text/html"}))[0] == 303
    assert (await laptop.get("/console", headers={"Accept": "text/html"}))[0] == 303
    assert await server.count("staff_sessions") == 0


async def test_sensitive_admin_actions_need_the_code_again(launch, sqlite_settings, browsers):
    server = await launch(sqlite_settings, POLKU_STAFF_REAUTH_MINUTES=10)
    await create_staff(server, "ville", role="admin")
    browser = browsers(server)
    await browser.sign_in("ville")
    csrf = await browser.csrf()
    # Right after signing in: allowed (404: there is no conversation 999).
    assert (await browser.get("/admin/api/conversations/999/export"))[0] == 404
    # Eleven minutes later (the session still in use):
    async with server.server.store.transaction() as tx:
        await tx.session.execute(update(StaffSession).values(
            reauth_at=datetime.now(timezone.utc) - timedelta(minutes=11)))
    status, body = await browser.get("/admin/api/conversations/999/export")
    assert (status, body) == (401, {"error": "reauth_required"})
    async with browser.http.delete(server.url + "/admin/api/conversations/999",
                                   headers={"X-CSRF-Token": csrf}) as response:
        assert response.status == 401 and (await response.json())["error"] == "reauth_required"
    async with browser.http.post(server.url + "/admin/api/models/x/activate",
                                 headers={"X-CSRF-Token": csrf}, json={}) as response:
        assert response.status == 401
    # Still signed in for everything else.
    assert (await browser.get("/api/admin/audit"))[0] == 200
    async with browser.http.post(server.url + "/session/reauth", headers={"X-CSRF-Token": csrf},
                                 json={"code": "123456"}) as response:
        assert response.status == 401
    code = await next_code(TOTP_SECRETS[(server.url, "ville")])
    async with browser.http.post(server.url + "/session/reauth", headers={"X-CSRF-Token": csrf},
                                 json={"code": code}) as response:
        assert response.status == 200
    assert (await browser.get("/admin/api/conversations/999/export"))[0] == 404
    actions = [a for (a,) in await server.sql("SELECT action FROM audit_log")]
    assert "reauthenticated" in actions and "reauth_failed" in actions


# --- guessing: growing delays, never a lock; every failure audited -----------------------------------


async def test_failures_slow_down_one_address_but_never_lock_out_the_owner(launch, backend_settings, caplog):
    server = await launch(backend_settings, POLKU_LOGIN_RATE_ADDRESS_PER_MIN=1000)
    await create_staff(server, "anna")
    auth = server.server.auth
    clock = [1_000_000.0]
    auth.throttle.clock = lambda: clock[0]  # the delays by the throttle's own clock, not the machine's speed
    caplog.set_level(logging.INFO)
    from chat_server.errors import SignInFailed, SignInThrottled

    attacker = "203.0.113.9"
    for _ in range(3):  # the pair's free attempts
        with pytest.raises(SignInFailed):
            await auth.sign_in("anna", WRONG, attacker)
    with pytest.raises(SignInThrottled) as throttled:  # the 4th must wait, even with the right password
        await auth.sign_in("anna", PASSWORD, attacker)
    assert throttled.value.wait_secs == pytest.approx(1.0)
    clock[0] += 1.0
    with pytest.raises(SignInFailed):
        await auth.sign_in("anna", WRONG, attacker)
    with pytest.raises(SignInThrottled) as throttled:
        await auth.sign_in("anna", WRONG, attacker)
    assert throttled.value.wait_secs == pytest.approx(2.0)  # the delay grows
    # The owner, from the office, is not held up by the attacker's failures.
    pending, _ = await auth.sign_in("anna", PASSWORD, "198.51.100.7")
    assert pending.username == "anna"
    # An attack on the account from many addresses: delays for everyone, never past the cap.
    waits = []
    for i in range(40):
        try:
            await auth.sign_in("anna", WRONG, f"192.0.2.{i}")
        except SignInThrottled as exc:
            waits.append(exc.wait_secs)
            clock[0] += exc.wait_secs
        except SignInFailed:
            pass
    assert waits and max(waits) == pytest.approx(60.0)
    with pytest.raises(SignInThrottled) as throttled:  # the owner waits too, at most the cap...
        await auth.sign_in("anna", PASSWORD, "198.51.100.7")
    assert throttled.value.wait_secs <= 60.0
    clock[0] += throttled.value.wait_secs
    pending, _ = await auth.sign_in("anna", PASSWORD, "198.51.100.7")  # ...then is in: no lock
    # Every failure is in the audit log, without what was typed; and in the server log.
    rows = await server.sql("SELECT action, detail FROM audit_log ORDER BY id")
    assert [a for a, _ in rows].count("sign_in_failed") >= 4 + 10
    assert [a for a, _ in rows].count("sign_in_throttled") == 2 + len(waits) + 1
    assert all(WRONG not in d and PASSWORD not in d for _, d in rows)
    assert "failed sign-in" in caplog.text and WRONG not in caplog.text and PASSWORD not in caplog.text


async def test_known_and_unknown_usernames_cost_the_same(launch, backend_settings):
    """The same writes for a wrong password of a real account and for an unknown name:
    one audit row each, the account's row untouched, the same answer."""
    server = await launch(backend_settings)
    await create_staff(server, "anna")
    browser = StaffBrowser(server)
    try:
        before = await server.sql("SELECT * FROM staff_users")
        known = await browser.sign_in("anna", WRONG, expect=401)
        after_known = await server.count("audit_log")
        unknown = await browser.sign_in("nobody", WRONG, expect=401)
        assert await server.count("audit_log") == after_known + 1 == 2
        assert await server.sql("SELECT * FROM staff_users") == before
        assert _alert(await known.text()) == _alert(await unknown.text()) != ""
    finally:
        await browser.close()


async def test_throttled_form_says_how_long_to_wait(launch, sqlite_settings, browsers):
    server = await launch(sqlite_settings, POLKU_LOGIN_RATE_ADDRESS_PER_MIN=1000)
    await create_staff(server, "anna")
    browser = browsers(server)
    for _ in range(8):  # the delays double (1, 2, 4 s...): soon an attempt comes too early
        answer = await browser.password_step("anna", WRONG)
        if answer.status == 429:
            break
        assert answer.status == 401
    assert answer.status == 429
    wait = int(answer.headers["Retry-After"])
    assert 1 <= wait <= 60 and f"Odota {wait} sekuntia" in await answer.text()


# --- headers and cookies over https ------------------------------------------------------------


async def test_https_behind_a_trusted_proxy_gets_hsts_and_secure_host_cookies(launch, sqlite_settings, browsers):
    server = await launch(sqlite_settings, POLKU_TRUSTED_PROXIES=["127.0.0.1"])
    await create_staff(server, "anna")
    browser = browsers(server)
    async with browser.http.get(server.url + "/login", headers={"X-Forwarded-Proto": "https"}) as response:
        assert response.headers["Strict-Transport-Security"].startswith("max-age=")
        cookie = response.cookies["__Host-polku_login_csrf"]
        assert cookie["secure"] and not cookie["max-age"]
    async with browser.http.get(server.url + "/demo", headers={"X-Forwarded-Proto": "https"}) as response:
        assert "Strict-Transport-Security" in response.headers
        assert "script-src 'self'" in response.headers["Content-Security-Policy"]


async def test_forwarded_proto_from_anyone_else_is_ignored(server, browsers):
    browser = browsers(server)
    async with browser.http.get(server.url + "/login", headers={"X-Forwarded-Proto": "https"}) as response:
        assert "Strict-Transport-Security" not in response.headers
        assert "polku_login_csrf" in response.cookies and not response.cookies["polku_login_csrf"]["secure"]
    for path in ("/demo", "/health", "/login"):
        async with browser.http.get(server.url + path) as response:
            assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"], path


def _alert(page: str) -> str:
    import re

    match = re.search(r'role="alert".*?</div>', page, re.S)
    return match.group(0) if match else ""


# --- exposure: /ready, the admin inbox --------------------------------------------------------


async def test_ready_details_only_to_staff_or_this_machine(launch, sqlite_settings, browsers):
    # Rasa at a closed port: the details would name its URL and the error class.
    server = await launch(sqlite_settings, POLKU_TRUSTED_PROXIES=["127.0.0.1"])
    await create_staff(server, "anna")
    browser = browsers(server)
    status, body = await browser.get("/ready")
    assert status == 200 and body["checks"]["rasa"] == "error" and "details" in body  # this machine
    # The same request forwarded by the proxy for an outside client: statuses only.
    status, body = await browser.get("/ready", headers={"X-Forwarded-For": "203.0.113.5"})
    assert status == 200 and body["checks"]["rasa"] == "error" and "details" not in body
    assert "127.0.0.1" not in str(body)
    await browser.sign_in("anna")
    status, body = await browser.get("/ready", headers={"X-Forwarded-For": "203.0.113.5"})
    assert "rasa" in body["details"]


async def test_ready_behind_an_untrusted_proxy_tells_no_details(server, browsers):
    status, body = await browsers(server).get("/ready", headers={"X-Forwarded-For": "198.51.100.1"})
    assert status == 200 and "details" not in body


async def test_reading_the_admin_inbox_is_audited(server, browsers):
    await create_staff(server, "ville", role="admin")
    browser = browsers(server)
    await browser.sign_in("ville")
    status, _ = await browser.get("/admin/api/inbox")
    assert status == 200
    assert ("view_inbox",) in await server.sql("SELECT action FROM audit_log")
