"""What a resident's payload may be (docs/protocol.md), and what the ``error`` event says.

Every ``check_*`` validates an untrusted payload and raises a ResidentError (changing nothing)
or returns the validated input. ``error_text`` is the resident-facing text of an error code:
the admins' wording in ``training_data/responses.yml`` (``error_<code>``) when the bot's content
has it, else the server's own (``chat_server/i18n``, section ``errors``), which always exists, so
an error can be explained even when the content is broken or does not know a code yet.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Protocol

from bot.types import LANGUAGES

from .. import i18n
from ..errors import ERROR_CODES, MalformedPayload, MessageTooLong
from ..untrusted_text import has_lone_surrogate

log = logging.getLogger(__package__)

CLIENT_ID_MAX_CHARS = 64


@dataclass(frozen=True)
class SessionRequest:
    session_id: str | None
    language: str | None


@dataclass(frozen=True)
class ResidentMessage:
    text: str
    session_id: str | None
    language: str | None
    client_id: str | None


def known_language(value: Any) -> str | None:
    """The language if we speak it, else None."""
    # Widgets may send any UI language; the ones we do not speak count as none.
    return value if isinstance(value, str) and value in LANGUAGES else None


def _payload_dict(data: Any, *, optional: bool = False) -> dict:
    if data is None and optional:
        return {}
    if not isinstance(data, dict):
        raise MalformedPayload("payload is not an object")
    return data


def _session_id_field(data: dict, client_id: str | None = None) -> str | None:
    value = data.get("session_id")
    if value is not None and not isinstance(value, str):
        raise MalformedPayload("session_id is not a string", client_id=client_id)
    return value or None


def client_id_of(data: Any) -> str | None:
    """The payload's client_id if it has a usable one (to echo it in an error)."""
    if not isinstance(data, dict):
        return None
    custom = data.get("customData", data.get("metadata"))
    value = custom.get("client_id") if isinstance(custom, dict) else None
    value = value if value is not None else data.get("client_id")
    return value if isinstance(value, str) and 0 < len(value) <= CLIENT_ID_MAX_CHARS else None


def payload_language(data: Any) -> str | None:
    """The language a (maybe invalid) payload asks for, so its error speaks it."""
    if not isinstance(data, dict):
        return None
    custom = data.get("customData", data.get("metadata"))
    return known_language(custom.get("language")) if isinstance(custom, dict) else known_language(data.get("language"))


def check_session_request(data: Any) -> SessionRequest:
    payload = _payload_dict(data, optional=True)
    session_id = payload.get("session_id")
    # Anything that is not one of our ids simply gets a fresh session (as in Rasa).
    return SessionRequest(session_id if isinstance(session_id, str) else None,
                          known_language(payload.get("language")))


def check_user_uttered(data: Any, max_chars: int) -> ResidentMessage:
    payload = _payload_dict(data)
    custom = payload.get("customData", payload.get("metadata"))
    if custom is None:
        custom = {}
    if not isinstance(custom, dict):
        raise MalformedPayload("customData is not an object")
    client_id = custom.get("client_id", payload.get("client_id"))
    if client_id is not None and (not isinstance(client_id, str) or not client_id
                                  or len(client_id) > CLIENT_ID_MAX_CHARS or has_lone_surrogate(client_id)):
        raise MalformedPayload("client_id is not a short string")
    if client_id is not None and "\x00" in client_id:  # PostgreSQL's text cannot hold NUL: server_busy before
        raise MalformedPayload("client_id contains NUL")
    text = payload.get("message")
    if not isinstance(text, str):
        raise MalformedPayload("message is not a string", client_id=client_id)
    # JSON may carry a lone UTF-16 surrogate ("\ud800"), which no database
    # driver can encode: it becomes U+FFFD, and the message is answered like
    # any other (a surrogate pair split in two code points is joined again).
    if has_lone_surrogate(text):
        text = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    if not text.strip():
        raise MalformedPayload("message is empty", client_id=client_id)
    if "\x00" in text:
        raise MalformedPayload("message contains NUL", client_id=client_id)
    if len(text) > max_chars:
        raise MessageTooLong(f"{len(text)} > {max_chars} chars", client_id=client_id)
    return ResidentMessage(text=text, session_id=_session_id_field(payload, client_id),
                           language=known_language(custom.get("language")), client_id=client_id)


def check_session_only(data: Any) -> str | None:
    """history_request and leave_queue: an optional session_id, nothing else needed."""
    return _session_id_field(_payload_dict(data, optional=True))


def check_typing(data: Any) -> tuple[str | None, bool]:
    payload = _payload_dict(data)
    typing = payload.get("typing")
    if not isinstance(typing, bool):
        raise MalformedPayload("typing is not a boolean")
    return _session_id_field(payload), typing


_ACCEPT_LANGUAGE_MAX_CHARS = 200


def connect_language(auth: Any, headers: Any) -> str | None:
    """The language a connecting widget speaks: its Socket.IO auth ``{"language"}``, else the
    browser's Accept-Language (the first of fi, sv, en it names)."""
    if isinstance(auth, dict) and known_language(auth.get("language")):
        return auth["language"]
    accept = headers.get("Accept-Language", "") if headers is not None else ""
    return i18n.accept_language(str(accept), _ACCEPT_LANGUAGE_MAX_CHARS)


# --- the error event's text ----------------------------------------------------------

ERROR_TEXTS: dict[str, dict[str, str]] = i18n.by_key("errors")

assert set(ERROR_TEXTS) == set(ERROR_CODES), "every error code needs its texts"


class NoticeSource(Protocol):
    def notice(self, response_id: str, language: str, **params: Any) -> Any: ...


def error_text(code: str, language: str, content: NoticeSource | None = None) -> str:
    """The error message for ``code`` in ``language`` (fi/sv/en; anything else is fi)."""
    if language not in LANGUAGES:
        language = "fi"
    if content is not None:
        try:
            return content.notice(f"error_{code}", language).text
        except Exception:  # a missing or broken entry must not hide the error itself
            log.debug("no error_%s in the bot's content; using the built-in text", code)
    return ERROR_TEXTS.get(code, ERROR_TEXTS["server_busy"])[language]
