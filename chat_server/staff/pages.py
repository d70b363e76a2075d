"""The sign-in pages of staff (HTML and their handlers).

    GET/POST /login                      username and password (local accounts)
    GET/POST /login/enrol                first sign-in: the authenticator (QR code and the secret as text)
    GET/POST /login/second-factor        the code of the authenticator, or a recovery code
    GET /login/sso, /login/sso/callback  single sign-on (OpenID Connect, ``oidc.py``)

Signing out and the session's deadlines are ``session_routes.py``. Every page
is a plain form (works without JavaScript); errors are announced
(role="alert") and focused by login.js.
"""

from __future__ import annotations

import html
import logging
import secrets
import string
from urllib.parse import quote

from aiohttp import web
from multidict import MultiDictProxy

from bot.types import LANGUAGES

from .. import i18n
from ..context import server_of
from ..errors import AuthError, SignInThrottled, SsoError
from . import totp
from .throttle import wait_text_secs
from .csrf import login_csrf_cookie, staff_page_headers
from .oidc import OidcClient
from .sessions import CSRF_TOKEN_BYTES, PendingSignIn
from .web import (
    LANGUAGE_NAMES, STATIC_DIR, address_of, cookie_name, current_staff, pending_sign_in, safe_next, secure_cookies,
    see_other, set_language_cookie, set_session_cookie, staff_auth, ui_language,
)

log = logging.getLogger(__name__)

TEXTS: dict[str, dict[str, str]] = i18n.section("sign_in")

e = html.escape


def _template(name: str) -> string.Template:
    return string.Template((STATIC_DIR / name).read_text(encoding="utf-8"))


def _alert(heading: str, text: str) -> str:
    return (f'<div class="alert alert--error" role="alert" id="login-error" tabindex="-1">'
            f'<h2>{e(heading)}</h2><p>{e(text)}</p></div>')


def _error_text(t: dict[str, str], code: str, wait_secs: float | None = None) -> str:
    text = t.get(code, t["wrong_credentials"])
    return text.replace("{secs}", str(wait_text_secs(wait_secs))) if wait_secs else text


def _html(body: str, status: int = 200) -> web.Response:
    return staff_page_headers(web.Response(text=body, status=status, content_type="text/html", charset="utf-8"))


def _wait_secs(exc: AuthError) -> float | None:
    return exc.wait_secs if isinstance(exc, SignInThrottled) else None


def _lang_of_form(request: web.Request, form: MultiDictProxy) -> str:
    lang = form.get("lang")
    return lang if lang in LANGUAGES else _language(request)


def _language(request: web.Request) -> str:
    return ui_language(request, server_of(request).settings.default_language)


# --- step 1: username and password ----------------------------------------------------------


def _login_page(request: web.Request, lang: str, csrf: str, next_path: str, *, error: str | None = None,
                notice: str | None = None, username: str = "", wait_secs: float | None = None) -> str:
    server = server_of(request)
    t = TEXTS[lang]
    message = ""
    if error:
        message = _alert(t["error_heading"], _error_text(t, error, wait_secs))
    elif notice:
        message = f'<div class="alert" role="status"><p>{e(t[notice])}</p></div>'
    current = ' aria-current="true"'
    languages = " ".join(
        (f'<a href="/login?lang={code}&amp;next={e(quote(next_path, safe=""))}" lang="{code}"'
         f'{current if code == lang else ""}>{LANGUAGE_NAMES[code]}</a>')
        for code in LANGUAGES)
    sso = ""
    if server.oidc is not None:
        sso = (f'<div class="login__sso"><a class="button button--primary" id="sso" '
               f'href="/login/sso?next={e(quote(next_path, safe=""))}">{e(t["sso"])}</a></div>')
        if server.settings.local_accounts:
            sso += f'<p>{e(t["or"])}</p>'
    return _template("login.html").substitute(
        lang=lang, title=e(t["title"]), heading=e(t["heading"]), intro=e(t["intro"]),
        username_label=e(t["username"]), password_label=e(t["password"]), submit=e(t["submit"]),
        csrf=e(csrf), next=e(next_path), username=e(username), message=message,
        language_label=e(t["language"]), languages=languages, sso=sso,
        form_hidden="" if server.settings.local_accounts else " hidden",
        invalid=' aria-invalid="true" aria-describedby="login-error"' if error == "wrong_credentials" else "")


async def login_page(request: web.Request) -> web.StreamResponse:
    lang = _language(request)
    notices = [n for n in ("signed_out_everywhere", "signed_out", "expired") if n in request.query]
    if await current_staff(request) is not None and not notices:
        raise web.HTTPSeeOther(safe_next(request.query.get("next")))
    error = request.query.get("error") if request.query.get("error") in ("sso_failed", "sso_no_role") else None
    token = secrets.token_urlsafe(CSRF_TOKEN_BYTES)
    body = _login_page(request, lang, token, safe_next(request.query.get("next")), error=error,
                       notice=notices[0] if notices else None)
    response = _html(body, 401 if error else 200)
    set_session_cookie(response, request, login_csrf_cookie(request), token)
    return response


async def login_submit(request: web.Request) -> web.StreamResponse:
    """POST /login (CSRF checked by the middleware): on to the second factor, or the form again."""
    form = await request.post()
    lang = _lang_of_form(request, form)
    next_path = safe_next(form.get("next") if isinstance(form.get("next"), str) else None)
    username = form.get("username") if isinstance(form.get("username"), str) else ""
    password = form.get("password") if isinstance(form.get("password"), str) else ""
    try:
        pending, token = await staff_auth(request).sign_in(username, password, address_of(request))
    except AuthError as exc:
        csrf = (request.cookies.get(login_csrf_cookie(request)) or secrets.token_urlsafe(CSRF_TOKEN_BYTES))
        body = _login_page(request, lang, csrf, next_path, error=exc.code, username=username[:64],
                           wait_secs=_wait_secs(exc))
        response = _html(body, exc.http_status)
        if isinstance(exc, SignInThrottled):
            response.headers["Retry-After"] = str(wait_text_secs(exc.wait_secs))
        set_session_cookie(response, request, login_csrf_cookie(request), csrf)
        return response
    step = "/login/second-factor" if pending.enrolled else "/login/enrol"
    response = see_other(f"{step}?next={quote(next_path, safe='')}&lang={lang}")
    set_session_cookie(response, request, cookie_name(request), token)
    response.del_cookie(login_csrf_cookie(request), path="/")
    set_language_cookie(response, request, lang)
    return staff_page_headers(response)


# --- step 2: the second factor ----------------------------------------------------------------


async def _pending_or_back(request: web.Request) -> PendingSignIn:
    pending = await pending_sign_in(request)
    if pending is None:
        raise web.HTTPSeeOther("/login?expired=1")
    return pending


def _second_factor_page(lang: str, pending: PendingSignIn, next_path: str, *, enrol_secret: str | None = None,
                        error: str | None = None, wait_secs: float | None = None) -> str:
    t = TEXTS[lang]
    enrol = ""
    if enrol_secret is not None:
        uri = totp.provisioning_uri(enrol_secret, pending.username)
        enrol = (f'<div class="enrol"><p>{e(t["en_intro"])}</p><ol>'
                 f'<li>{e(t["en_step1"])}</li>'
                 f'<li>{e(t["en_step2"])}'
                 f'<img class="enrol__qr" src="{totp.qr_data_uri(uri)}" alt="{e(t["qr_alt"])}" width="245" height="245">'
                 f'<span class="visually-hidden">{e(t["secret_label"])}: </span>'
                 f'<code class="enrol__secret" id="totp-secret">{e(totp.grouped(enrol_secret))}</code></li>'
                 f'<li>{e(t["en_step3"])}</li></ol></div>')
    return _template("second_factor.html").substitute(
        lang=lang, title=e(t["en_title" if enrol_secret else "tf_title"]),
        heading=e(t["en_heading" if enrol_secret else "tf_heading"]),
        message=_alert(t["error_heading"], _error_text(t, error, wait_secs)) if error else "",
        enrol=enrol, action="/login/enrol" if enrol_secret else "/login/second-factor",
        csrf=e(pending.csrf), next=e(next_path), code_label=e(t["code"]),
        code_hint=e(t["enrol_code_hint" if enrol_secret else "code_hint"]), submit=e(t["verify"]),
        cancel=e(t["cancel"]), describedby=" login-error" if error else "",
        invalid=' aria-invalid="true"' if error == "wrong_code" else "")


async def second_factor_page(request: web.Request) -> web.StreamResponse:
    pending = await _pending_or_back(request)
    if not pending.enrolled:
        raise web.HTTPSeeOther("/login/enrol?" + request.query_string)
    return _html(_second_factor_page(_language(request), pending, safe_next(request.query.get("next"))))


async def enrol_page(request: web.Request) -> web.StreamResponse:
    pending = await _pending_or_back(request)
    if pending.enrolled:
        raise web.HTTPSeeOther("/login/second-factor?" + request.query_string)
    secret = await staff_auth(request).enrolment_secret(pending)
    return _html(_second_factor_page(_language(request), pending, safe_next(request.query.get("next")),
                                     enrol_secret=secret))


async def second_factor_submit(request: web.Request) -> web.StreamResponse:
    """POST /login/second-factor and /login/enrol: the code; signed in, or the page again."""
    auth = staff_auth(request)
    pending = await _pending_or_back(request)
    form = await request.post()
    lang = _lang_of_form(request, form)
    next_path = safe_next(form.get("next") if isinstance(form.get("next"), str) else None)
    code = form.get("code") if isinstance(form.get("code"), str) else ""
    try:
        staff, token, recovery = await auth.second_factor(pending, code[:64], address_of(request))
    except AuthError as exc:
        if exc.code == "wrong_credentials":  # the pending sign-in is gone
            raise web.HTTPSeeOther("/login?expired=1") from None
        secret = None if pending.enrolled else await auth.enrolment_secret(pending)
        body = _second_factor_page(lang, pending, next_path, enrol_secret=secret, error=exc.code,
                                   wait_secs=_wait_secs(exc))
        return _html(body, exc.http_status)
    if recovery:
        t = TEXTS[lang]
        body = _template("recovery_codes.html").substitute(
            lang=lang, title=e(t["rc_title"]), heading=e(t["rc_heading"]), intro=e(t["rc_intro"]),
            codes="".join(f"<li>{e(c)}</li>" for c in recovery), after=e(t["rc_after"]),
            next=e(next_path), **{"continue": e(t["continue"])})
        response = _html(body)
    else:
        response = staff_page_headers(see_other(next_path))
    set_session_cookie(response, request, cookie_name(request), token)
    return response


# --- single sign-on ------------------------------------------------------------------------------

SSO_STATE_COOKIE = "polku_sso_state"


def _oidc(request: web.Request) -> OidcClient:
    client = server_of(request).oidc
    if client is None:
        raise web.HTTPNotFound(text="Single sign-on is not configured.\n")
    return client


def _redirect_uri(request: web.Request) -> str:
    """Our callback's URL: under POLKU_PUBLIC_URL, or the URL this request came to."""
    base = (server_of(request).settings.public_url or "").rstrip("/")
    if not base:
        base = f"{'https' if secure_cookies(request) else 'http'}://{request.host}"
    return base + "/login/sso/callback"


async def sso_start(request: web.Request) -> web.StreamResponse:
    """GET /login/sso: to the organisation's sign-in (authorization code flow with PKCE)."""
    oidc = _oidc(request)
    next_path = safe_next(request.query.get("next"))
    try:
        url, state = await oidc.start(_redirect_uri(request), next_path, prompt_login="reauth" in request.query)
    except SsoError as exc:
        await staff_auth(request).audit(None, "sso_failed", None, str(exc)[:200])
        raise web.HTTPSeeOther("/login?error=sso_failed") from None
    response = web.Response(status=303, headers={"Location": url})
    # Lax, not Strict: the provider's redirect back to us is a cross-site navigation.
    response.set_cookie(SSO_STATE_COOKIE, state, path="/login/sso", httponly=True, samesite="Lax",
                        secure=secure_cookies(request))
    return staff_page_headers(response)


async def sso_callback(request: web.Request) -> web.StreamResponse:
    """GET /login/sso/callback?code&state: check everything, sign in, go on."""
    oidc = _oidc(request)
    auth = staff_auth(request)
    try:
        if "error" in request.query:
            raise SsoError(f"provider: {request.query.get('error', '')[:100]}")
        user = await oidc.finish(code=request.query.get("code", ""), state=request.query.get("state", ""),
                                 browser_state=request.cookies.get(SSO_STATE_COOKIE),
                                 redirect_uri=_redirect_uri(request))
        staff, token = await auth.sign_in_external(user.subject, user.username, user.display_name, user.role)
    except (SsoError, AuthError) as exc:
        code = exc.code if exc.code in ("sso_failed", "sso_no_role") else "sso_failed"
        log_detail = str(exc)[:300]
        await auth.audit(None, "sso_refused" if code == "sso_no_role" else "sso_failed", None, log_detail)
        log.warning("single sign-on refused: %s", log_detail)
        response = see_other(f"/login?error={code}")
        response.del_cookie(SSO_STATE_COOKIE, path="/login/sso")
        return staff_page_headers(response)
    # A page that moves on by itself: the session cookie is SameSite=Strict, and a browser
    # does not send it on a redirect chain that a cross-site navigation (the provider's) began.
    lang = _language(request)
    target = e(user.next_path)
    body = (f'<!doctype html><html lang="{lang}"><head><meta charset="utf-8">'
            f'<meta http-equiv="refresh" content="0;url={target}"><title>Polku</title>'
            f'<link rel="stylesheet" href="/console/static/console.css"></head>'
            f'<body class="login-body"><main class="login"><p><a id="continue" href="{target}">'
            f'{e(TEXTS[lang]["continue"].split("–")[-1].strip().capitalize())}</a></p></main></body></html>')
    response = _html(body)
    set_session_cookie(response, request, cookie_name(request), token)
    response.del_cookie(SSO_STATE_COOKIE, path="/login/sso")
    return response


def add_routes(app: web.Application) -> None:
    app.router.add_get("/login/sso", sso_start)
    app.router.add_get("/login/sso/callback", sso_callback)
    app.router.add_get("/login", login_page)
    app.router.add_post("/login", login_submit)
    app.router.add_get("/login/second-factor", second_factor_page)
    app.router.add_post("/login/second-factor", second_factor_submit)
    app.router.add_get("/login/enrol", enrol_page)
    app.router.add_post("/login/enrol", second_factor_submit)
