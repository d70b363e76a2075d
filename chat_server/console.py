"""HTTP of the counsellor console and the audit log.

- ``GET /console``: the console page (counsellors and admins), vanilla JS and
  CSS from ``static/console/``, no build step; it talks to the
  ``/counsellor`` Socket.IO namespace (``counsellor.py``).
- ``GET /console/static/<file>``: its assets, and the Socket.IO client from
  ``widget/node_modules`` (installed by ``./polku``).
- ``GET /api/console/conversations/<id>``: a transcript as JSON, under the
  same rule as the console (queued, assigned to you, or handled by you), and
  audited.
- ``GET /api/admin/audit`` (JSON) and ``GET /admin/audit`` (a page): the
  audit log, for admins.
"""

from __future__ import annotations

import html
import json
import re
import string
from typing import Any

from aiohttp import web

from bot.settings import PROJECT_ROOT
from bot.types import LANGUAGES

from .auth import (
    LANGUAGE_NAMES, STATIC_DIR, Staff, csrf_token, require_staff, secure_cookies, staff_page_headers,
    ui_language,
)
from .counsellor import ConsoleError
from .numbers import parse_id

SOCKET_IO_CLIENT = PROJECT_ROOT / "widget" / "node_modules" / "socket.io-client" / "dist" / "socket.io.min.js"
_SAFE_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}\.(css|js)")
_TYPES = {".js": "text/javascript", ".css": "text/css"}
AUDIT_PAGE_LIMIT = 200
AUDIT_API_MAX_LIMIT = 1000

# Every text of the console, per language. The page's skeleton is rendered from
# these; the script gets them as JSON (so one list, one place to translate).
CONSOLE_TEXTS: dict[str, dict[str, str]] = {
    "fi": {
        "title": "Ohjaajan näkymä – Polku-chat", "app_name": "Polku-chat", "heading": "Ohjaajan näkymä",
        "skip": "Siirry keskusteluun", "sign_out": "Kirjaudu ulos", "admin": "Ylläpito", "audit": "Lokitiedot",
        "role_counsellor": "ohjaaja", "role_admin": "ylläpitäjä", "language": "Kieli",
        "sidebar": "Jono ja keskustelut", "queue": "Jono", "queue_empty": "Jonossa ei ole ketään.",
        "mine": "Omat keskustelut", "mine_empty": "Sinulla ei ole avoimia keskusteluja.",
        "callbacks": "Soittopyynnöt", "callbacks_empty": "Ei avoimia soittopyyntöjä.",
        "closures": "Tulevat sulkemispäivät", "closures_empty": "Ei sulkemispäiviä seuraavan kahden viikon aikana.",
        "closed_word": "suljettu", "channel_chat": "chat", "channel_phone": "puhelin", "channel_walk_in": "käynti",
        "no_chat": "Valitse keskustelu jonosta tai omista keskusteluistasi.",
        "crisis": "Kriisi", "crisis_long": "Kriisi – etusijalla",
        "waiting": "odottanut {minutes} min", "waiting_new": "juuri tullut",
        "position": "{position}.", "no_topic": "ei aihetta", "chat": "Keskustelu {id}",
        "open": "Näytä", "pick_up": "Ota keskustelu", "put_back": "Palauta jonoon", "close": "Päätä keskustelu",
        "transcript": "Keskustelun viestit", "send": "Lähetä", "message_label": "Viesti asukkaalle",
        "message_hint": "Enter lähettää, Shift+Enter tekee rivinvaihdon.",
        "snippets": "Pikavastaus", "snippet_choose": "Valitse pikavastaus…", "snippet_insert": "Lisää viestiin",
        "notes": "Sisäiset muistiinpanot", "notes_hint": "Asukas ei näe näitä.", "notes_empty": "Ei muistiinpanoja.",
        "note_label": "Uusi muistiinpano", "note_save": "Tallenna muistiinpano",
        "close_heading": "Päätä keskustelu", "close_intro": "Valitse aiheet tilastointia varten. Asukas siirtyy takaisin botille.",
        "tags": "Aiheet", "other_label": "Muu aihe, mikä?", "close_confirm": "Päätä keskustelu", "cancel": "Peruuta",
        "sender_resident": "Asukas", "sender_bot": "Botti", "sender_system": "Ilmoitus",
        "sender_counsellor": "Ohjaaja", "sender_you": "Sinä",
        "resident_typing": "Asukas kirjoittaa…",
        "state_queued": "Jonossa", "state_counsellor": "Sinulla", "state_counsellor_other": "Toisella ohjaajalla",
        "state_closed": "Päätetty", "state_bot": "Botilla",
        "read_only_queued": "Keskustelu on jonossa. Ota se, niin voit vastata.",
        "read_only_other": "Keskustelu on nyt toisella ohjaajalla.",
        "read_only_closed": "Keskustelu on päätetty.",
        "partial": "Näet keskustelun siihen asti, kun se oli sinulla.",
        "connected": "Yhteys kunnossa", "disconnected": "Yhteys katkesi, yhdistetään uudelleen…",
        "available": "Chat on auki", "unavailable": "Chat ei ole nyt asukkaille auki",
        "new_in_queue": "Uusi keskustelu jonossa: {topic}, {language}.",
        "queue_more": "Jonossa odottaa lisäksi {count} keskustelua. Ne näkyvät tässä, kun jono etenee.",
        "new_crisis": "Kriisikeskustelu jonossa: {topic}, {language}.",
        "new_message": "Uusi viesti keskustelussa {id}.", "picked_up": "Keskustelu {id} on nyt sinulla.",
        "closed_done": "Keskustelu {id} päätetty.", "put_back_done": "Keskustelu {id} palautettu jonoon.",
        "taken_by_other": "Keskustelu {id} siirtyi toiselle ohjaajalle.",
        "requeued": "Keskustelu {id} palasi jonoon.",
        "callback_phone": "Puhelin", "callback_name": "Nimi", "callback_time": "Toivottu aika",
        "callback_topic": "Aihe", "callback_done": "Merkitse soitetuksi", "callback_done_ok": "Soittopyyntö merkitty tehdyksi.",
        "error_already_taken": "Toinen ohjaaja ehti ottaa tämän keskustelun.",
        "error_not_yours": "Keskustelu ei ole enää sinulla.", "error_forbidden": "Sinulla ei ole oikeutta tähän keskusteluun.",
        "error_not_found": "Keskustelua ei löytynyt.", "error_tags_required": "Valitse vähintään yksi aihe.",
        "error_message_too_long": "Viesti on liian pitkä.", "error_server_busy": "Palvelu ei vastannut. Yritä uudelleen.",
        "error_generic": "Toiminto ei onnistunut ({code}).",
        "lang_fi": "suomi", "lang_sv": "ruotsi", "lang_en": "englanti",
        "signed_out": "Istuntosi päättyi. Kirjaudu uudelleen.",
    },
    "sv": {
        "title": "Handledarvy – Polku-chatten", "app_name": "Polku-chatten", "heading": "Handledarvy",
        "skip": "Gå till chatten", "sign_out": "Logga ut", "admin": "Administration", "audit": "Logg",
        "role_counsellor": "handledare", "role_admin": "administratör", "language": "Språk",
        "sidebar": "Kö och chattar", "queue": "Kö", "queue_empty": "Ingen står i kö.",
        "mine": "Mina chattar", "mine_empty": "Du har inga öppna chattar.",
        "callbacks": "Begäran om samtal", "callbacks_empty": "Inga öppna begäran om samtal.",
        "closures": "Kommande stängda dagar", "closures_empty": "Inga stängda dagar de närmaste två veckorna.",
        "closed_word": "stängt", "channel_chat": "chatt", "channel_phone": "telefon", "channel_walk_in": "besök",
        "no_chat": "Välj en chatt i kön eller bland dina chattar.",
        "crisis": "Kris", "crisis_long": "Kris – högsta prioritet",
        "waiting": "har väntat {minutes} min", "waiting_new": "just kommit",
        "position": "{position}.", "no_topic": "inget ämne", "chat": "Chatt {id}",
        "open": "Visa", "pick_up": "Ta chatten", "put_back": "Flytta tillbaka till kön", "close": "Avsluta chatten",
        "transcript": "Chattens meddelanden", "send": "Skicka", "message_label": "Meddelande till invånaren",
        "message_hint": "Enter skickar, Shift+Enter ger ny rad.",
        "snippets": "Snabbsvar", "snippet_choose": "Välj ett snabbsvar…", "snippet_insert": "Lägg till i meddelandet",
        "notes": "Interna anteckningar", "notes_hint": "Invånaren ser inte dessa.", "notes_empty": "Inga anteckningar.",
        "note_label": "Ny anteckning", "note_save": "Spara anteckningen",
        "close_heading": "Avsluta chatten", "close_intro": "Välj ämnen för statistiken. Invånaren fortsätter med boten.",
        "tags": "Ämnen", "other_label": "Annat ämne, vilket?", "close_confirm": "Avsluta chatten", "cancel": "Avbryt",
        "sender_resident": "Invånare", "sender_bot": "Bot", "sender_system": "Meddelande",
        "sender_counsellor": "Handledare", "sender_you": "Du",
        "resident_typing": "Invånaren skriver…",
        "state_queued": "I kö", "state_counsellor": "Hos dig", "state_counsellor_other": "Hos en annan handledare",
        "state_closed": "Avslutad", "state_bot": "Hos boten",
        "read_only_queued": "Chatten står i kö. Ta den för att kunna svara.",
        "read_only_other": "Chatten är nu hos en annan handledare.",
        "read_only_closed": "Chatten är avslutad.",
        "partial": "Du ser chatten fram till när den var hos dig.",
        "connected": "Anslutningen fungerar", "disconnected": "Anslutningen bröts, ansluter igen…",
        "available": "Chatten är öppen", "unavailable": "Chatten är inte öppen för invånare nu",
        "new_in_queue": "Ny chatt i kön: {topic}, {language}.",
        "queue_more": "Ytterligare {count} chattar väntar i kön. De visas här när kön går framåt.",
        "new_crisis": "Krischatt i kön: {topic}, {language}.",
        "new_message": "Nytt meddelande i chatt {id}.", "picked_up": "Chatt {id} är nu hos dig.",
        "closed_done": "Chatt {id} avslutad.", "put_back_done": "Chatt {id} flyttad tillbaka till kön.",
        "taken_by_other": "Chatt {id} gick till en annan handledare.",
        "requeued": "Chatt {id} är tillbaka i kön.",
        "callback_phone": "Telefon", "callback_name": "Namn", "callback_time": "Önskad tid",
        "callback_topic": "Ämne", "callback_done": "Markera som ringd", "callback_done_ok": "Begäran markerad som klar.",
        "error_already_taken": "En annan handledare hann ta den här chatten.",
        "error_not_yours": "Chatten är inte längre hos dig.", "error_forbidden": "Du har inte rätt till den här chatten.",
        "error_not_found": "Chatten hittades inte.", "error_tags_required": "Välj minst ett ämne.",
        "error_message_too_long": "Meddelandet är för långt.", "error_server_busy": "Tjänsten svarade inte. Försök igen.",
        "error_generic": "Åtgärden misslyckades ({code}).",
        "lang_fi": "finska", "lang_sv": "svenska", "lang_en": "engelska",
        "signed_out": "Din session har upphört. Logga in igen.",
    },
    "en": {
        "title": "Counsellor console – Polku chat", "app_name": "Polku chat", "heading": "Counsellor console",
        "skip": "Skip to the chat", "sign_out": "Sign out", "admin": "Admin", "audit": "Audit log",
        "role_counsellor": "counsellor", "role_admin": "admin", "language": "Language",
        "sidebar": "Queue and chats", "queue": "Queue", "queue_empty": "Nobody is waiting.",
        "mine": "My chats", "mine_empty": "You have no open chats.",
        "callbacks": "Call-back requests", "callbacks_empty": "No open call-back requests.",
        "closures": "Coming closures", "closures_empty": "No closed days in the next two weeks.",
        "closed_word": "closed", "channel_chat": "chat", "channel_phone": "phone", "channel_walk_in": "walk-in",
        "no_chat": "Choose a chat from the queue or from your chats.",
        "crisis": "Crisis", "crisis_long": "Crisis – top priority",
        "waiting": "waiting {minutes} min", "waiting_new": "just arrived",
        "position": "{position}.", "no_topic": "no topic", "chat": "Chat {id}",
        "open": "View", "pick_up": "Take the chat", "put_back": "Put back in the queue", "close": "Close the chat",
        "transcript": "Messages of the chat", "send": "Send", "message_label": "Message to the resident",
        "message_hint": "Enter sends, Shift+Enter makes a new line.",
        "snippets": "Quick answer", "snippet_choose": "Choose a quick answer…", "snippet_insert": "Insert",
        "notes": "Internal notes", "notes_hint": "The resident does not see these.", "notes_empty": "No notes.",
        "note_label": "New note", "note_save": "Save the note",
        "close_heading": "Close the chat", "close_intro": "Choose the topics for the statistics. The resident goes back to the bot.",
        "tags": "Topics", "other_label": "Other topic, which?", "close_confirm": "Close the chat", "cancel": "Cancel",
        "sender_resident": "Resident", "sender_bot": "Bot", "sender_system": "Notice",
        "sender_counsellor": "Counsellor", "sender_you": "You",
        "resident_typing": "The resident is typing…",
        "state_queued": "Queued", "state_counsellor": "With you", "state_counsellor_other": "With another counsellor",
        "state_closed": "Closed", "state_bot": "With the bot",
        "read_only_queued": "The chat is in the queue. Take it to answer.",
        "read_only_other": "The chat is now with another counsellor.",
        "read_only_closed": "The chat is closed.",
        "partial": "You see the chat up to when it was with you.",
        "connected": "Connected", "disconnected": "Connection lost, reconnecting…",
        "available": "The chat is open", "unavailable": "The chat is not open to residents now",
        "new_in_queue": "New chat in the queue: {topic}, {language}.",
        "queue_more": "{count} more chats are waiting in the queue. They appear here as the queue moves on.",
        "new_crisis": "Crisis chat in the queue: {topic}, {language}.",
        "new_message": "New message in chat {id}.", "picked_up": "Chat {id} is now with you.",
        "closed_done": "Chat {id} closed.", "put_back_done": "Chat {id} put back in the queue.",
        "taken_by_other": "Chat {id} went to another counsellor.",
        "requeued": "Chat {id} is back in the queue.",
        "callback_phone": "Phone", "callback_name": "Name", "callback_time": "Preferred time",
        "callback_topic": "Topic", "callback_done": "Mark as called", "callback_done_ok": "Call-back request marked done.",
        "error_already_taken": "Another counsellor took this chat first.",
        "error_not_yours": "The chat is no longer with you.", "error_forbidden": "You may not read this chat.",
        "error_not_found": "The chat was not found.", "error_tags_required": "Choose at least one topic.",
        "error_message_too_long": "The message is too long.", "error_server_busy": "The service did not answer. Please try again.",
        "error_generic": "That did not work ({code}).",
        "lang_fi": "Finnish", "lang_sv": "Swedish", "lang_en": "English",
        "signed_out": "Your session ended. Please sign in again.",
    },
}

AUDIT_TEXTS: dict[str, dict[str, str]] = {
    "fi": {"title": "Lokitiedot – Polku-chat", "heading": "Lokitiedot", "intro": "Kuka avasi tai käsitteli mitäkin keskustelua ja milloin. Uusimmat ensin.",
           "time": "Aika (UTC)", "who": "Kuka", "action": "Toiminto", "conversation": "Keskustelu", "detail": "Lisätieto",
           "empty": "Ei tapahtumia.", "back": "Takaisin ylläpitoon", "console": "Ohjaajan näkymä", "older": "Vanhemmat",
           "system": "järjestelmä"},
    "sv": {"title": "Logg – Polku-chatten", "heading": "Logg", "intro": "Vem öppnade eller hanterade vilken chatt och när. Nyaste först.",
           "time": "Tid (UTC)", "who": "Vem", "action": "Åtgärd", "conversation": "Chatt", "detail": "Detaljer",
           "empty": "Inga händelser.", "back": "Tillbaka till administrationen", "console": "Handledarvy", "older": "Äldre",
           "system": "systemet"},
    "en": {"title": "Audit log – Polku chat", "heading": "Audit log", "intro": "Who opened or handled which chat, and when. Newest first.",
           "time": "Time (UTC)", "who": "Who", "action": "Action", "conversation": "Chat", "detail": "Detail",
           "empty": "No events.", "back": "Back to admin", "console": "Counsellor console", "older": "Older",
           "system": "system"},
}


def _server(request: web.Request) -> Any:
    from .app import SERVER_KEY

    return request.app[SERVER_KEY]


def _render(name: str, **values: str) -> str:
    return string.Template((STATIC_DIR / name).read_text(encoding="utf-8")).substitute(**values)


def _language_links(path: str, lang: str) -> str:
    links = []
    for code in LANGUAGES:
        current = ' aria-current="true"' if code == lang else ""
        links.append(f'<a href="{path}?lang={code}" lang="{code}"{current}>{LANGUAGE_NAMES[code]}</a>')
    return " ".join(links)


def _script_json(value: Any) -> str:
    """JSON for a <script type="application/json"> block: nothing in it can end the element."""
    text = json.dumps(value, ensure_ascii=False)
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


def _html(text: str, lang: str | None = None, *, secure: bool = False) -> web.Response:
    response = web.Response(text=text, content_type="text/html", charset="utf-8")
    if lang is not None and lang in LANGUAGES:
        # The language picked here is kept for the sign-in page and the other staff pages.
        response.set_cookie("polku_ui_lang", lang, max_age=365 * 24 * 3600, path="/", httponly=True,
                            samesite="Strict", secure=secure)
    return staff_page_headers(response)


@require_staff("counsellor")
async def console_page(request: web.Request) -> web.StreamResponse:
    server = _server(request)
    staff: Staff = request["staff"]
    lang = ui_language(request, server.settings.default_language)
    t = CONSOLE_TEXTS[lang]
    e = html.escape
    admin_links = ""
    if staff.is_admin:
        admin_links = (f'<a class="topbar__link" href="/admin">{e(t["admin"])}</a>'
                       f'<a class="topbar__link" href="/admin/audit">{e(t["audit"])}</a>')
    body = _render(
        "console.html", lang=lang, title=e(t["title"]), app_name=e(t["app_name"]), heading=e(t["heading"]),
        skip=e(t["skip"]), csrf=e(csrf_token(request)), sign_out=e(t["sign_out"]),
        user=e(staff.display_name), role=e(t["role_" + staff.role]), admin_links=admin_links,
        language_label=e(t["language"]), languages=_language_links("/console", lang),
        texts=_script_json(t), **{k: e(v) for k, v in t.items() if k in _SKELETON_KEYS})
    return _html(body, lang if "lang" in request.query else None, secure=secure_cookies(server.settings))


_SKELETON_KEYS = frozenset({
    "sidebar", "queue", "queue_empty", "mine", "mine_empty", "callbacks", "callbacks_empty", "no_chat",
    "closures", "closures_empty",
    "transcript", "send", "message_label", "message_hint", "snippets", "snippet_choose", "snippet_insert",
    "notes", "notes_hint", "notes_empty", "note_label", "note_save", "close_heading", "close_intro", "tags",
    "other_label", "close_confirm", "cancel", "pick_up", "put_back", "close", "connected",
})


async def static_file(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    if name == "socket.io.min.js":
        if not SOCKET_IO_CLIENT.is_file():
            return web.Response(status=404, text="socket.io-client is not installed: run ./polku start "
                                                 "(or `npm ci` in widget/).\n")
        path = SOCKET_IO_CLIENT
    else:
        path = STATIC_DIR / name
        if not _SAFE_NAME.fullmatch(name) or not path.is_file():
            return web.Response(status=404, text="No such file.\n")
    return web.FileResponse(path, headers={"Content-Type": _TYPES[path.suffix] + "; charset=utf-8",
                                           "Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"})


@require_staff("counsellor")
async def conversation_json(request: web.Request) -> web.StreamResponse:
    """A transcript, as the console's open request gives it (same rule, same audit)."""
    server = _server(request)
    staff: Staff = request["staff"]
    try:
        conversation_id = parse_id(request.match_info["id"])
        if conversation_id is None:
            return web.json_response({"error": "bad_request", "detail": "the conversation id must be a number (digits 0-9)"},
                                     status=400, headers={"Cache-Control": "no-store"})
        conversation, until = await server.counsellor.check_may_read(staff, conversation_id)
    except ValueError:
        raise web.HTTPNotFound(text='{"error": "not_found"}', content_type="application/json") from None
    except ConsoleError as exc:
        status = 404 if exc.code == "not_found" else 403
        return web.json_response({"error": exc.code}, status=status, headers={"Cache-Control": "no-store"})
    await server.auth.audit(staff, "view_transcript", conversation_id, "" if until is None else "handled part")
    body = await server.counsellor.transcript(conversation, until)
    return web.json_response(body, headers={"Cache-Control": "no-store"})


def _int_query(request: web.Request, name: str, default: int | None = None,
               maximum: int | None = None) -> int | None:
    raw = request.query.get(name)
    if raw in (None, ""):
        return default
    value = parse_id(raw)
    if value is None:
        raise web.HTTPBadRequest(text=f'{{"error": "{name} is not a number (digits 0-9)"}}',
                                 content_type="application/json")
    if value <= 0:
        raise web.HTTPBadRequest(text=f'{{"error": "{name} must be positive"}}', content_type="application/json")
    return min(value, maximum) if maximum else value


async def _audit_records(request: web.Request, default_limit: int) -> list[dict[str, Any]]:
    server = _server(request)
    action = request.query.get("action") or None
    return await server.auth.audit_records(
        limit=_int_query(request, "limit", default_limit, AUDIT_API_MAX_LIMIT),
        before_id=_int_query(request, "before_id"), staff_id=_int_query(request, "staff_id"),
        conversation_id=_int_query(request, "conversation_id"), action=action[:64] if action else None)


@require_staff("admin")
async def audit_json(request: web.Request) -> web.StreamResponse:
    """GET /api/admin/audit?limit=&before_id=&staff_id=&conversation_id=&action= (newest first)."""
    records = await _audit_records(request, 100)
    await _server(request).auth.audit(request["staff"], "view_audit", None)
    return web.json_response({"records": records}, headers={"Cache-Control": "no-store"})


@require_staff("admin")
async def audit_page(request: web.Request) -> web.StreamResponse:
    server = _server(request)
    lang = ui_language(request, server.settings.default_language)
    t = AUDIT_TEXTS[lang]
    e = html.escape
    records = await _audit_records(request, AUDIT_PAGE_LIMIT)
    await server.auth.audit(request["staff"], "view_audit", None)
    rows = []
    for r in records:
        who = e(f'{r["display_name"]} ({r["username"]})') if r["username"] else e(t["system"])
        conversation = str(r["conversation_id"]) if r["conversation_id"] is not None else ""
        rows.append(f'<tr><td><time datetime="{e(r["at"])}">{e(r["at"][:19].replace("T", " "))}</time></td>'
                    f'<td>{who}</td><td>{e(r["action"])}</td><td>{e(conversation)}</td>'
                    f'<td>{e(r["detail"])}</td></tr>')
    older = ""
    if len(records) == AUDIT_PAGE_LIMIT:
        older = f'<p><a href="/admin/audit?before_id={records[-1]["id"]}">{e(t["older"])}</a></p>'
    table = (f'<table class="audit"><caption class="visually-hidden">{e(t["heading"])}</caption>'
             f'<thead><tr><th scope="col">{e(t["time"])}</th><th scope="col">{e(t["who"])}</th>'
             f'<th scope="col">{e(t["action"])}</th><th scope="col">{e(t["conversation"])}</th>'
             f'<th scope="col">{e(t["detail"])}</th></tr></thead><tbody>{"".join(rows)}</tbody></table>'
             if rows else f'<p>{e(t["empty"])}</p>')
    body = _render("audit.html", lang=lang, title=e(t["title"]), heading=e(t["heading"]), intro=e(t["intro"]),
                   back=e(t["back"]), console=e(t["console"]), table=table + older,
                   languages=_language_links("/admin/audit", lang))
    return _html(body)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/console", console_page)
    app.router.add_get("/console/static/{name}", static_file)
    app.router.add_get("/api/console/conversations/{id}", conversation_json)
    app.router.add_get("/api/admin/audit", audit_json)
    app.router.add_get("/admin/audit", audit_page)
