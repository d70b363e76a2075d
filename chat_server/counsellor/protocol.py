"""What a console's request may carry (docs/protocol.md, namespace "/counsellor").

Untrusted input is checked here (``check_*``): each returns the request's
values or raises ``RequestRefused`` with the acknowledgement's code, and
changes nothing. The rules that act on valid input are in ``service.py``.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import Any

from bot.content import TOPIC_INTENTS

from ..errors import RequestRefused
from ..untrusted_text import has_lone_surrogate

COUNSELLOR_MESSAGE_MAX_CHARS = 4000
NOTE_MAX_CHARS = 4000
OTHER_LABEL_MAX_CHARS = 80
CLIENT_ID_MAX_CHARS = 64
# Tags a chat is closed with: the contract's topics (not the requests for a person) and "other".
CLOSE_TAGS: tuple[str, ...] = tuple(t for t in TOPIC_INTENTS if t != "request_counsellor") + ("other",)


def _object(data: Any) -> dict:
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise RequestRefused("malformed_payload", "payload is not an object")
    return data


def _positive_id(data: Any, key: str) -> int:
    value = _object(data).get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise RequestRefused("malformed_payload", f"{key} is not a positive integer")
    return value


def check_conversation_id(data: Any) -> int:
    return _positive_id(data, "conversation_id")


def check_callback_id(data: Any) -> int:
    return _positive_id(data, "callback_id")


def _text(value: Any, max_chars: int, what: str) -> str:
    if not isinstance(value, str) or not value.strip() or "\x00" in value or has_lone_surrogate(value):
        raise RequestRefused("malformed_payload", f"{what} is empty or not a string")
    if len(value) > max_chars:
        raise RequestRefused("message_too_long", f"{what} > {max_chars} chars")
    return value.strip()


@dataclass(frozen=True)
class CounsellorMessage:
    conversation_id: int
    text: str
    client_id: str | None


def check_send(data: Any) -> CounsellorMessage:
    payload = _object(data)
    client_id = payload.get("client_id")
    if client_id is not None and (not isinstance(client_id, str) or not 0 < len(client_id) <= CLIENT_ID_MAX_CHARS
                                  or not client_id.isprintable()):  # NUL, lone surrogates: server_busy before
        raise RequestRefused("malformed_payload", "client_id is not a short string")
    return CounsellorMessage(check_conversation_id(payload),
                             _text(payload.get("text"), COUNSELLOR_MESSAGE_MAX_CHARS, "text"), client_id)


def check_typing(data: Any) -> tuple[int, bool]:
    typing = _object(data).get("typing")
    if not isinstance(typing, bool):
        raise RequestRefused("malformed_payload", "typing is not a boolean")
    return check_conversation_id(data), typing


def check_note(data: Any) -> tuple[int, str]:
    return check_conversation_id(data), _text(_object(data).get("text"), NOTE_MAX_CHARS, "text")


@dataclass(frozen=True)
class Closing:
    conversation_id: int
    tags: tuple[str, ...]
    other_label: str | None


def check_close(data: Any) -> Closing:
    payload = _object(data)
    tags = payload.get("tags")
    if not isinstance(tags, list) or not tags or not all(isinstance(t, str) for t in tags):
        raise RequestRefused("tags_required", "tags is not a non-empty list of strings")
    unknown = [t for t in tags if t not in CLOSE_TAGS]
    if unknown:
        raise RequestRefused("unknown_tag", ", ".join(unknown[:3])[:100])
    label = payload.get("other_label")
    if label is not None:
        if not isinstance(label, str) or len(label) > OTHER_LABEL_MAX_CHARS:
            raise RequestRefused("malformed_payload", f"other_label is not a string of <= {OTHER_LABEL_MAX_CHARS}")
        label = " ".join(label.split()) or None
        if label and any(unicodedata.category(c)[0] == "C" for c in label):
            raise RequestRefused("malformed_payload", "other_label has control characters")
    ordered = tuple(dict.fromkeys(tags))
    return Closing(check_conversation_id(payload), ordered, label if "other" in ordered else None)
