"""Single sign-on against a real OpenID Connect provider (tests/oidc/provider.js,
the npm package oidc-provider): success, the wrong group, a replayed state, a
callback in another browser, an expired ID token, an ID token for another
audience, and local accounts turned off."""

from __future__ import annotations

import asyncio
import hashlib
import re
from urllib.parse import parse_qs, urljoin, urlsplit

import aiohttp
import pytest

from chat_server.errors import SsoError
from chat_server.staff.oidc import LEEWAY_SECS, OidcClient
from chat_server.store.staff import StaffRepository


from .counsellor_helpers import PASSWORD, StaffBrowser, create_staff
from .oidc_provider import OidcProvider


@pytest.fixture(scope="module")
def provider():
    started = OidcProvider()
    yield started
    started.stop()


async def provider_sign_in(http: aiohttp.ClientSession, authorize_url: str, login: str) -> str:
    """At the provider: its sign-in form as a person fills it. The URL it sends the browser back to."""
    url = authorize_url
    for _ in range(10):
        async with http.get(url, allow_redirects=False) as response:
            if response.status in (302, 303):
                url = urljoin(url, response.headers["Location"])
                continue
            page = await response.text()
            break
    action = urljoin(url, re.search(r'<form[^>]*action="([^"]+)"', page).group(1))
    async with http.post(action, data={"prompt": "login", "login": login, "password": "any"},
                         allow_redirects=False) as response:
        url = urljoin(action, response.headers["Location"])
    for _ in range(10):
        if "/login/sso/callback" in url:
            return url
        async with http.get(url, allow_redirects=False) as response:
            assert response.status in (302, 303), (response.status, await response.text())
            url = urljoin(url, response.headers["Location"])
    raise AssertionError("the provider did not send the browser back")


async def start_sso(browser: StaffBrowser, login: str) -> str:
    """Our /login/sso, then the provider's form: the callback URL (not opened yet)."""
    async with browser.http.get(browser.url + "/login/sso?next=%2Fconsole", allow_redirects=False) as response:
        assert response.status == 303, await response.text()
        authorize = response.headers["Location"]
    query = parse_qs(urlsplit(authorize).query)
    assert query["code_challenge_method"] == ["S256"] and query["code_challenge"] and query["nonce"]
    return await provider_sign_in(browser.http, authorize, login)


async def open_callback(browser: StaffBrowser, callback: str) -> tuple[int, str, str]:
    async with browser.http.get(callback, allow_redirects=False) as response:
        return response.status, response.headers.get("Location", ""), await response.text()


async def test_sso_signs_in_with_the_role_of_the_group(launch, sqlite_settings, provider, browsers):
    server = await launch(sqlite_settings, **provider.settings())
    browser = browsers(server)
    status, page = await browser.get("/login", headers={"Accept": "text/html"})
    assert 'href="/login/sso?next=' in page
    callback = await start_sso(browser, "ville.sso")
    status, _, page = await open_callback(browser, callback)
    assert status == 200 and 'http-equiv="refresh" content="0;url=/console"' in page
    assert (await browser.get("/console", headers={"Accept": "text/html"}))[0] == 200
    assert (await browser.get("/api/admin/audit"))[0] == 200  # an admin by the group
    rows = await server.sql("SELECT username, display_name, role, password_hash, external_subject FROM staff_users")
    assert rows == [("ville.sso", "Ville Sso", "admin", None, f"{provider.issuer} ville.sso")]
    assert await server.sql("SELECT method, stage FROM staff_sessions") == [("oidc", "full")]
    # Such an account has no password to sign in with.
    await browsers(server).sign_in("ville.sso", PASSWORD, expect=401)
    # A second sign-in finds the same account (by issuer and subject), not a new one.
    again = browsers(server)
    assert (await open_callback(again, await start_sso(again, "ville.sso")))[0] == 200
    assert await server.count("staff_users") == 1
    # A counsellor by the other group: the console, not the admin pages.
    anna = browsers(server)
    assert (await open_callback(anna, await start_sso(anna, "anna.sso")))[0] == 200
    assert (await anna.get("/console", headers={"Accept": "text/html"}))[0] == 200
    assert (await anna.get("/api/admin/audit"))[0] == 403


async def test_a_user_without_a_polku_group_is_refused(launch, sqlite_settings, provider, browsers):
    server = await launch(sqlite_settings, **provider.settings())
    browser = browsers(server)
    status, location, _ = await open_callback(browser, await start_sso(browser, "outsider"))
    assert (status, location) == (303, "/login?error=sso_no_role")
    assert await server.count("staff_users") == 0 and await server.count("staff_sessions") == 0
    assert ("sso_refused",) in await server.sql("SELECT action FROM audit_log")
    status, page = await browser.get(location, headers={"Accept": "text/html"})
    assert status == 401 and "no access to Polku chat" in page or "oikeutta Polku-chattiin" in page


async def test_a_replayed_state_or_another_browser_is_refused(launch, sqlite_settings, provider, browsers):
    server = await launch(sqlite_settings, **provider.settings())
    browser = browsers(server)
    callback = await start_sso(browser, "anna.sso")
    state = parse_qs(urlsplit(callback).query)["state"][0]
    # The callback opened in another browser (login CSRF: an attacker's sign-in pushed on a victim).
    victim = browsers(server)
    status, location, _ = await open_callback(victim, callback)
    assert (status, location) == (303, "/login?error=sso_failed")
    # The right browser: signed in once.
    assert (await open_callback(browser, callback))[0] == 200
    # The same callback again, even with the state cookie put back: the state was used up.
    replay = browsers(server)
    replay.http.cookie_jar.update_cookies({"polku_sso_state": state}, response_url=aiohttp.client.URL(server.url + "/login/sso/"))
    status, location, _ = await open_callback(replay, callback)
    assert (status, location) == (303, "/login?error=sso_failed")
    assert await server.count("staff_sessions") == 1
    details = [d for a, d in await server.sql("SELECT action, detail FROM audit_log") if a == "sso_failed"]
    assert any("does not match" in d for d in details) and any("already used" in d for d in details)


async def real_tokens(server, client: OidcClient, browser: StaffBrowser, login: str) -> tuple[dict, str]:
    """A real sign-in at the provider for ``client``, up to its token response: (tokens, nonce)."""
    redirect_uri = server.url + "/login/sso/callback"
    authorize, state = await client.start(redirect_uri, "/console")
    callback = await provider_sign_in(browser.http, authorize, login)
    code = parse_qs(urlsplit(callback).query)["code"][0]
    ((nonce, verifier),) = await server.sql(
        "SELECT nonce, code_verifier FROM staff_sso_states WHERE state_hash = :h",
        h=hashlib.sha256(state.encode()).hexdigest())
    return await client._exchange(code, verifier, redirect_uri), nonce


async def test_an_expired_id_token_is_refused(launch, sqlite_settings, provider, browsers):
    # Client polku-short: the provider's ID tokens for it live 2 seconds.
    server = await launch(sqlite_settings, **provider.settings("polku-short"))
    quick = browsers(server)
    assert (await open_callback(quick, await start_sso(quick, "anna.sso")))[0] == 200  # in time: fine
    tokens, nonce = await real_tokens(server, server.server.oidc, browsers(server), "anna.sso")
    assert (await server.server.oidc.check_id_token(tokens["id_token"], nonce))["sub"] == "anna.sso"
    await asyncio.sleep(2 + LEEWAY_SECS + 1.5)
    with pytest.raises(SsoError, match="Expired"):
        await server.server.oidc.check_id_token(tokens["id_token"], nonce)


async def test_an_id_token_for_another_audience_is_refused(launch, sqlite_settings, provider, browsers):
    """A real ID token of the same provider, issued to another application of the
    organisation (client other-app): signature and issuer are right, the audience is not."""
    server = await launch(sqlite_settings, **provider.settings())
    other = OidcClient(server.settings.replace(POLKU_OIDC_CLIENT_ID="other-app"),
                       StaffRepository(server.server.store))
    tokens, nonce = await real_tokens(server, other, browsers(server), "anna.sso")
    claims = await other.check_id_token(tokens["id_token"], nonce)  # valid for its own audience
    assert claims["aud"] == "other-app"
    with pytest.raises(SsoError, match="another audience"):
        await server.server.oidc.check_id_token(tokens["id_token"], nonce)
    # And a token for us with a nonce of another sign-in is refused as well.
    with pytest.raises(SsoError, match="nonce"):
        await other.check_id_token(tokens["id_token"], "another-nonce")


async def test_local_accounts_can_be_turned_off(launch, sqlite_settings, provider, browsers):
    server = await launch(sqlite_settings, **provider.settings(), POLKU_LOCAL_ACCOUNTS=False)
    await create_staff(server, "anna")
    browser = browsers(server)
    status, page = await browser.get("/login", headers={"Accept": "text/html"})
    assert 'class="login__form" novalidate hidden' in page and 'id="sso"' in page
    await browser.sign_in("anna", PASSWORD, expect=401)
    assert await server.count("staff_sessions") == 0
    assert (await open_callback(browser, await start_sso(browser, "anna.sso")))[0] == 200
