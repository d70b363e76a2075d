"""Single sign-on end to end in a real browser: the sign-in page's button, the
organisation's provider (tests/oidc/provider.js, the npm package oidc-provider)
and back to a working console; a user without a Polku group is told why."""

from __future__ import annotations

import importlib.util
import re

import pytest
from playwright.sync_api import expect

from bot.settings import PROJECT_ROOT

from .conftest import ChatServerProcess
from .helpers import run_axe

pytestmark = pytest.mark.browser


def _provider_class():
    spec = importlib.util.spec_from_file_location("polku_oidc_provider",
                                                  PROJECT_ROOT / "tests" / "server" / "oidc_provider.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.OidcProvider


@pytest.fixture(scope="module")
def sso_server(widget_bundle, browser_rasa_url, tmp_path_factory):
    provider = _provider_class()()
    settings = {k: ",".join(v) if isinstance(v, list) else str(v) for k, v in provider.settings().items()}
    server = ChatServerProcess(tmp_path_factory.mktemp("sso-chat"), browser_rasa_url,
                               POLKU_CHAT_ALWAYS_OPEN="1", **settings)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        provider.stop()


def _provider_sign_in(page, login: str) -> None:
    page.locator('input[name="login"]').fill(login)
    page.locator('input[name="password"]').fill("any password")
    page.locator('button[type="submit"]').click()


def test_sso_opens_the_console_end_to_end(new_page, sso_server):
    page = new_page(bypass_csp=True)  # axe is injected
    page.goto(sso_server.url + "/console")
    expect(page).to_have_url(re.compile(r"/login\?next="))
    button = page.get_by_role("link", name="Kirjaudu organisaation tunnuksella")
    expect(button).to_be_visible()
    assert run_axe(page) == []
    button.click()
    expect(page).to_have_url(re.compile(r"^http://127\.0\.0\.1:\d+/interaction/"))  # the provider's page
    _provider_sign_in(page, "anna.sso")
    expect(page).to_have_url(re.compile(r"/console$"))
    expect(page.locator("#connection-status")).to_have_attribute("data-state", "connected")
    expect(page.get_by_text("Anna Sso")).to_be_visible()


def test_sso_user_without_a_polku_group_is_told_why(new_page, sso_server):
    page = new_page()
    page.goto(sso_server.url + "/login")
    page.get_by_role("link", name="Kirjaudu organisaation tunnuksella").click()
    _provider_sign_in(page, "outsider")
    expect(page).to_have_url(re.compile(r"/login\?error=sso_no_role"))
    expect(page.get_by_role("alert")).to_contain_text("Tunnuksellasi ei ole oikeutta Polku-chattiin")
    page.goto(sso_server.url + "/console")
    expect(page).to_have_url(re.compile(r"/login\?next="))
