"""The sign-in pages and the session endpoints of staff.

    GET/POST /login                      username and password (local accounts)
    GET/POST /login/enrol                first sign-in: the authenticator (QR code and the secret as text)
    GET/POST /login/second-factor        the code of the authenticator, or a recovery code
    POST /logout, POST /logout/everywhere
    GET /session                         the deadlines (JSON; not activity)
    POST /session/touch                  "I am still here" (the idle warning's button)
    POST /session/reauth                 the second factor again, before a sensitive action

Every page is a plain form (works without JavaScript); errors are announced
(role="alert") and focused by login.js.
"""

from __future__ import annotations

import html
import secrets
import string
from typing import Any
from urllib.parse import quote

from aiohttp import web

from ..auth import (
    CSRF_TOKEN_BYTES, LANGUAGE_NAMES, STATIC_DIR, UI_LANGUAGES, AuthError, SignInThrottled, Staff,
    _server, client_address, cookie_name, current_staff, login_csrf_cookie, require_staff, safe_next,
    secure_cookies, session_cookie_token, staff_page_headers, ui_language,
)
from .. import i18n
from ..store.models import utcnow
from . import totp

TEXTS: dict[str, dict[str, str]] = i18n.section("sign_in")

e = html.escape


def _template(name: str) -> string.Template:
    return string.Template((STATIC_DIR / name).read_text(encoding="utf-8"))


def _alert(heading: str, text: str) -> str:
    return (f'<div class="alert alert--error" role="alert" id="login-error" tabindex="-1">'
            f'<h2>{e(heading)}</h2><p>{e(text)}</p></div>')


def _error_text(t: dict[str, str], code: str, wait_secs: float | None = None) -> str:
    text = t.get(code, t["wrong_credentials"])
    return text.replace("{secs}", str(max(1, int(wait_secs + 0.999)))) if wait_secs else text


def _html(body: str, status: int = 200) -> web.Response:
    return staff_page_headers(web.Response(text=body, status=status, content_type="text/html", charset="utf-8"))


def _set_cookie(response: web.StreamResponse, request: web.Request, name: str, value: str) -> None:
    """A session cookie: no Max-Age or Expires, so it ends with the browser."""
    response.set_cookie(name, value, path="/", httponly=True, samesite="Strict", secure=secure_cookies(request))


def _see_other(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


def _lang_of_form(request: web.Request, form: Any) -> str:
    server = _server(request)
    lang = form.get("lang")
    return lang if lang in UI_LANGUAGES else ui_language(request, server.settings.default_language)


def _address(request: web.Request) -> str:
    server = _server(request)
    return client_address(request.remote, request.headers, server.trusted_proxies)


# --- step 1: username and password ----------------------------------------------------------


def _login_page(request: web.Request, lang: str, csrf: str, next_path: str, *, error: str | None = None,
                notice: str | None = None, username: str = "", wait_secs: float | None = None) -> str:
    server = _server(request)
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
        for code in UI_LANGUAGES)
    sso = ""
    oidc = getattr(server, "oidc", None)
    if oidc is not None:
        sso = (f'<div class="login__sso"><a class="button button--primary" id="sso" '
               f'href="/login/sso?next={e(quote(next_path, safe=""))}">{e(t["sso"])}</a></div>')
        if server.settings.local_accounts:
            sso += f'<p>{e(t["or"])}</p>'
    body = _template("login.html").substitute(
        lang=lang, title=e(t["title"]), heading=e(t["heading"]), intro=e(t["intro"]),
        username_label=e(t["username"]), password_label=e(t["password"]), submit=e(t["submit"]),
        csrf=e(csrf), next=e(next_path), username=e(username), message=message,
        language_label=e(t["language"]), languages=languages, sso=sso,
        form_hidden="" if server.settings.local_accounts else " hidden",
        invalid=' aria-invalid="true" aria-describedby="login-error"' if error == "wrong_credentials" else "")
    return body


async def login_page(request: web.Request) -> web.StreamResponse:
    server = _server(request)
    lang = ui_language(request, server.settings.default_language)
    notices = [n for n in ("signed_out_everywhere", "signed_out", "expired") if n in request.query]
    if await current_staff(request) is not None and not notices:
        raise web.HTTPSeeOther(safe_next(request.query.get("next")))
    error = request.query.get("error") if request.query.get("error") in ("sso_failed", "sso_no_role") else None
    token = secrets.token_urlsafe(CSRF_TOKEN_BYTES)
    body = _login_page(request, lang, token, safe_next(request.query.get("next")), error=error,
                       notice=notices[0] if notices else None)
    response = _html(body, 401 if error else 200)
    _set_cookie(response, request, login_csrf_cookie(request), token)
    return response


async def login_submit(request: web.Request) -> web.StreamResponse:
    """POST /login (CSRF checked by the middleware): on to the second factor, or the form again."""
    server = _server(request)
    form = await request.post()
    lang = _lang_of_form(request, form)
    next_path = safe_next(form.get("next") if isinstance(form.get("next"), str) else None)
    username = form.get("username") if isinstance(form.get("username"), str) else ""
    password = form.get("password") if isinstance(form.get("password"), str) else ""
    try:
        pending, token = await server.auth.sign_in(username, password, _address(request))
    except AuthError as exc:
        status = 429 if exc.code == "too_many_attempts" else 401
        csrf = (request.cookies.get(login_csrf_cookie(request)) or secrets.token_urlsafe(CSRF_TOKEN_BYTES))
        body = _login_page(request, lang, csrf, next_path, error=exc.code, username=username[:64],
                           wait_secs=getattr(exc, "wait_secs", None))
        response = _html(body, status)
        if status == 429:
            response.headers["Retry-After"] = str(max(1, int(getattr(exc, "wait_secs", 1) + 0.999)))
        _set_cookie(response, request, login_csrf_cookie(request), csrf)
        return response
    step = "/login/second-factor" if pending.enrolled else "/login/enrol"
    response = _see_other(f"{step}?next={quote(next_path, safe='')}&lang={lang}")
    _set_cookie(response, request, cookie_name(request), token)
    response.del_cookie(login_csrf_cookie(request), path="/")
    _set_lang_cookie(response, request, lang)
    return staff_page_headers(response)


def _set_lang_cookie(response: web.StreamResponse, request: web.Request, lang: str) -> None:
    response.set_cookie("polku_ui_lang", lang, max_age=365 * 24 * 3600, path="/", httponly=True,
                        samesite="Strict", secure=secure_cookies(request))


# --- step 2: the second factor ----------------------------------------------------------------


async def _pending_or_back(request: web.Request):
    server = _server(request)
    pending = await server.auth.pending(session_cookie_token(request.cookies))
    if pending is None:
        raise web.HTTPSeeOther("/login?expired=1")
    return pending


def _second_factor_page(lang: str, pending: Any, next_path: str, *, enrol_secret: str | None = None,
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
    server = _server(request)
    pending = await _pending_or_back(request)
    if not pending.enrolled:
        raise web.HTTPSeeOther("/login/enrol?" + request.query_string)
    lang = ui_language(request, server.settings.default_language)
    return _html(_second_factor_page(lang, pending, safe_next(request.query.get("next"))))


async def enrol_page(request: web.Request) -> web.StreamResponse:
    server = _server(request)
    pending = await _pending_or_back(request)
    if pending.enrolled:
        raise web.HTTPSeeOther("/login/second-factor?" + request.query_string)
    lang = ui_language(request, server.settings.default_language)
    secret = await server.auth.enrolment_secret(pending)
    return _html(_second_factor_page(lang, pending, safe_next(request.query.get("next")), enrol_secret=secret))


async def second_factor_submit(request: web.Request) -> web.StreamResponse:
    """POST /login/second-factor and /login/enrol: the code; signed in, or the page again."""
    server = _server(request)
    pending = await _pending_or_back(request)
    form = await request.post()
    lang = _lang_of_form(request, form)
    next_path = safe_next(form.get("next") if isinstance(form.get("next"), str) else None)
    code = form.get("code") if isinstance(form.get("code"), str) else ""
    try:
        staff, token, recovery = await server.auth.second_factor(pending, code[:64], _address(request))
    except AuthError as exc:
        if exc.code == "wrong_credentials":  # the pending sign-in is gone
            raise web.HTTPSeeOther("/login?expired=1") from None
        status = 429 if isinstance(exc, SignInThrottled) else 401
        secret = None if pending.enrolled else await server.auth.enrolment_secret(pending)
        body = _second_factor_page(lang, pending, next_path, enrol_secret=secret, error=exc.code,
                                   wait_secs=getattr(exc, "wait_secs", None))
        return _html(body, status)
    if recovery:
        t = TEXTS[lang]
        body = _template("recovery_codes.html").substitute(
            lang=lang, title=e(t["rc_title"]), heading=e(t["rc_heading"]), intro=e(t["rc_intro"]),
            codes="".join(f"<li>{e(c)}</li>" for c in recovery), after=e(t["rc_after"]),
            next=e(next_path), **{"continue": e(t["continue"])})
        response = _html(body)
    else:
        response = staff_page_headers(_see_other(next_path))
    _set_cookie(response, request, cookie_name(request), token)
    return response


# --- signing out, the session's deadlines ---------------------------------------------------


async def logout(request: web.Request) -> web.StreamResponse:
    """POST /logout: ends this session (or the pending sign-in) here and on every open console of it."""
    server = _server(request)
    staff = await current_staff(request)
    if staff is not None:
        await server.auth.sign_out(staff)
        if server.counsellor is not None:
            await server.counsellor.session_ended(staff.session_id)
    else:
        pending = await server.auth.pending(session_cookie_token(request.cookies))
        if pending is None:
            raise web.HTTPUnauthorized(text='{"error": "not_signed_in"}', content_type="application/json")
        await server.auth.end_pending(pending)
    response = _see_other("/login?signed_out=1")
    response.del_cookie(cookie_name(request), path="/")
    return staff_page_headers(response)


@require_staff()
async def logout_everywhere(request: web.Request) -> web.StreamResponse:
    """POST /logout/everywhere: ends every session of this account, on every device."""
    server = _server(request)
    staff: Staff = request["staff"]
    for session_id in await server.auth.sign_out_everywhere(staff):
        if server.counsellor is not None:
            await server.counsellor.session_ended(session_id)
    response = _see_other("/login?signed_out_everywhere=1")
    response.del_cookie(cookie_name(request), path="/")
    return staff_page_headers(response)


def _deadlines(server: Any, staff: Staff) -> dict[str, Any]:
    now = utcnow()
    idle_end = (staff.last_seen_at or now) + server.auth.idle
    absolute_end = staff.expires_at
    return {"idle_secs_left": max(0.0, (idle_end - now).total_seconds()),
            "absolute_secs_left": max(0.0, (absolute_end - now).total_seconds()),
            "idle_timeout_secs": server.auth.idle.total_seconds(),
            "recently_authenticated": server.auth.recently_authenticated(staff),
            "can_reauthenticate": staff.method == "password"}


@require_staff()
async def session_status(request: web.Request) -> web.StreamResponse:
    """GET /session: how long this sign-in has left (the idle warning asks; not activity)."""
    return staff_page_headers(web.json_response(_deadlines(_server(request), request["staff"])))


@require_staff()
async def session_touch(request: web.Request) -> web.StreamResponse:
    """POST /session/touch: the user is here ("stay signed in", or typing in the console)."""
    server = _server(request)
    staff = await server.auth.touch(request["staff"], force=True)
    return staff_page_headers(web.json_response(_deadlines(server, staff)))


@require_staff()
async def session_reauth(request: web.Request) -> web.StreamResponse:
    """POST /session/reauth {"code"}: the second factor again; then sensitive actions are open
    for POLKU_STAFF_REAUTH_MINUTES."""
    server = _server(request)
    try:
        body = await request.json()
    except ValueError:
        body = None
    code = body.get("code") if isinstance(body, dict) and isinstance(body.get("code"), str) else ""
    try:
        staff = await server.auth.reauthenticate(request["staff"], code[:64], _address(request))
    except AuthError as exc:
        status = 429 if isinstance(exc, SignInThrottled) else 401
        return staff_page_headers(web.json_response({"error": exc.code}, status=status))
    return staff_page_headers(web.json_response(_deadlines(server, staff)))


# --- single sign-on ------------------------------------------------------------------------------

SSO_STATE_COOKIE = "polku_sso_state"


def _redirect_uri(request: web.Request) -> str:
    """Our callback's URL: under POLKU_PUBLIC_URL, or the URL this request came to."""
    server = _server(request)
    base = (server.settings.public_url or "").rstrip("/")
    if not base:
        base = f"{'https' if secure_cookies(request) else 'http'}://{request.host}"
    return base + "/login/sso/callback"


async def sso_start(request: web.Request) -> web.StreamResponse:
    """GET /login/sso: to the organisation's sign-in (authorization code flow with PKCE)."""
    server = _server(request)
    if server.oidc is None:
        raise web.HTTPNotFound(text="Single sign-on is not configured.\n")
    from .oidc import SsoError

    next_path = safe_next(request.query.get("next"))
    try:
        url, state = await server.oidc.start(_redirect_uri(request), next_path,
                                             prompt_login="reauth" in request.query)
    except SsoError as exc:
        await server.auth.audit(None, "sso_failed", None, str(exc)[:200])
        raise web.HTTPSeeOther("/login?error=sso_failed") from None
    response = web.Response(status=303, headers={"Location": url})
    # Lax, not Strict: the provider's redirect back to us is a cross-site navigation.
    response.set_cookie(SSO_STATE_COOKIE, state, path="/login/sso", httponly=True, samesite="Lax",
                        secure=secure_cookies(request))
    return staff_page_headers(response)


async def sso_callback(request: web.Request) -> web.StreamResponse:
    """GET /login/sso/callback?code&state: check everything, sign in, go on."""
    server = _server(request)
    if server.oidc is None:
        raise web.HTTPNotFound(text="Single sign-on is not configured.\n")
    from .oidc import SsoError

    try:
        if "error" in request.query:
            raise SsoError(f"provider: {request.query.get('error', '')[:100]}")
        user = await server.oidc.finish(code=request.query.get("code", ""), state=request.query.get("state", ""),
                                        browser_state=request.cookies.get(SSO_STATE_COOKIE),
                                        redirect_uri=_redirect_uri(request))
        staff, token = await server.auth.sign_in_external(user.subject, user.username, user.display_name,
                                                          user.role)
    except (SsoError, AuthError) as exc:
        code = getattr(exc, "code", "sso_failed")
        code = code if code in ("sso_failed", "sso_no_role") else "sso_failed"
        log_detail = str(exc)[:300]
        await server.auth.audit(None, "sso_refused" if code == "sso_no_role" else "sso_failed", None, log_detail)
        import logging

        logging.getLogger(__name__).warning("single sign-on refused: %s", log_detail)
        response = web.Response(status=303, headers={"Location": f"/login?error={code}"})
        response.del_cookie(SSO_STATE_COOKIE, path="/login/sso")
        return staff_page_headers(response)
    # A page that moves on by itself: the session cookie is SameSite=Strict, and a browser
    # does not send it on a redirect chain that a cross-site navigation (the provider's) began.
    lang = ui_language(request, server.settings.default_language)
    target = e(user.next_path)
    body = (f'<!doctype html><html lang="{lang}"><head><meta charset="utf-8">'
            f'<meta http-equiv="refresh" content="0;url={target}"><title>Polku</title>'
            f'<link rel="stylesheet" href="/console/static/console.css"></head>'
            f'<body class="login-body"><main class="login"><p><a id="continue" href="{target}">'
            f'{e(TEXTS[lang]["continue"].split("–")[-1].strip().capitalize())}</a></p></main></body></html>')
    response = _html(body)
    _set_cookie(response, request, cookie_name(request), token)
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
    app.router.add_post("/logout", logout)
    app.router.add_post("/logout/everywhere", logout_everywhere)
    app.router.add_get("/session", session_status)
    app.router.add_post("/session/touch", session_touch)
    app.router.add_post("/session/reauth", session_reauth)
