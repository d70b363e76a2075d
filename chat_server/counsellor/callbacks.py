"""Callback requests: when no counsellor can chat, a resident may ask Polku to call.

The resident's widget sends ``callback_request`` (docs/protocol.md) with a
phone number, optionally a name, a preferred time and a topic, and explicit
consent. These contact details are the only personal data the chat keeps
unredacted: stored only with consent, shown only to signed-in counsellors,
never logged, and wiped when a counsellor marks the request done. One open
request per conversation: asking again updates it. The rows are
``store/callbacks.py``'s; the resident's form is checked here
(``check_callback_request``), the console's request in ``protocol.py``.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from dataclasses import dataclass
from typing import Any

from ..errors import CallbackInvalid, MalformedPayload, RequestRefused
from ..events import Events, iso_time
from ..staff.audit import add_audit
from ..staff.sessions import Staff
from ..store.callbacks import OPEN, CallbackRequests
from ..store.core import Store
from ..store.models import Conversation, utcnow
from ..store.staff_models import CallbackRequest

log = logging.getLogger(__name__)

NAME_MAX_CHARS = 100
PREFERRED_TIME_MAX_CHARS = 100
TOPIC_MAX_CHARS = 64
PHONE_MAX_CHARS = 32
PHONE_MIN_DIGITS = 6
PHONE_MAX_DIGITS = 15  # E.164
_PHONE_RE = re.compile(r"\+?[0-9][0-9 ()./-]*")


@dataclass(frozen=True)
class CallbackForm:
    session_id: str | None
    phone: str
    name: str | None
    preferred_time: str | None
    topic: str | None


def _optional_text(data: dict, key: str, max_chars: int) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise CallbackInvalid(f"{key} is not a string")
    value = " ".join(value.split())
    if len(value) > max_chars or any(unicodedata.category(c)[0] == "C" for c in value):
        raise CallbackInvalid(f"{key} too long or with control characters")
    return value or None


def check_phone(value: Any) -> str:
    """A phone number as people write it: digits, spaces, dashes, brackets, a leading +."""
    if not isinstance(value, str):
        raise CallbackInvalid("phone is not a string")
    phone = " ".join(value.split())
    digits = sum("0" <= c <= "9" for c in phone)  # isdigit() would count "²"
    if (len(phone) > PHONE_MAX_CHARS or not _PHONE_RE.fullmatch(phone)
            or not PHONE_MIN_DIGITS <= digits <= PHONE_MAX_DIGITS):
        raise CallbackInvalid("phone is not a phone number")
    return phone


def check_callback_request(data: Any) -> CallbackForm:
    """The form as sent, or CallbackInvalid (nothing stored). Consent must be exactly true."""
    if not isinstance(data, dict):
        raise MalformedPayload("payload is not an object")
    session_id = data.get("session_id")
    if session_id is not None and not isinstance(session_id, str):
        raise MalformedPayload("session_id is not a string")
    if data.get("consent") is not True:
        raise CallbackInvalid("no consent")
    return CallbackForm(
        session_id=session_id or None, phone=check_phone(data.get("phone")),
        name=_optional_text(data, "name", NAME_MAX_CHARS),
        preferred_time=_optional_text(data, "preferred_time", PREFERRED_TIME_MAX_CHARS),
        topic=_optional_text(data, "topic", TOPIC_MAX_CHARS))


def callback_payload(row: CallbackRequest) -> dict[str, Any]:
    """A request as the console lists it."""
    return {"callback_id": row.id, "conversation_id": row.conversation_id, "name": row.name,
            "phone": row.phone, "preferred_time": row.preferred_time, "topic": row.topic,
            "language": row.language, "created_at": iso_time(row.created_at), "status": row.status}


class Callbacks:
    """The rules of call-back requests: a resident asks, a counsellor marks one done."""

    def __init__(self, store: Store, requests: CallbackRequests, events: Events) -> None:
        self.store = store
        self.requests = requests
        self.events = events

    async def do_request(self, sid: str, conversation: Conversation, form: CallbackForm) -> int:
        """Store (or update) the conversation's open request; ack the resident, tell the consoles."""
        now = utcnow()
        async with self.store.transaction() as tx:
            existing = await self.requests.lock_open(tx, conversation.id)
            row = existing or self.requests.new_open(conversation.id, now)
            row.name, row.phone, row.preferred_time = form.name, form.phone, form.preferred_time
            row.topic = form.topic or conversation.topic
            row.language = conversation.language
            row.consent_at = now
            callback_id = await self.requests.save(tx, row)
            tx.on_commit(lambda: self.events.callback_ack(sid, callback_id))
            tx.on_commit(self.broadcast)
        log.info("conversation %s: callback request %s %s", conversation.id, callback_id,
                 "updated" if existing else "stored")
        return callback_id

    async def open_requests(self) -> list[dict[str, Any]]:
        return [callback_payload(row) for row in await self.requests.open_requests()]

    async def broadcast(self) -> None:
        await self.events.console_callbacks({"callbacks": await self.open_requests()})

    async def do_done(self, staff: Staff, callback_id: int) -> None:
        """Mark done and wipe the contact details: they were kept only to make the call."""
        async with self.store.transaction() as tx:
            row = await self.requests.lock(tx, callback_id)
            if row is None:
                raise RequestRefused("not_found")
            if row.status != OPEN:
                raise RequestRefused("already_done")
            self.requests.mark_done(row, staff.id, utcnow())
            add_audit(tx, staff, "callback_done", row.conversation_id, f"callback {callback_id}")
            tx.on_commit(self.broadcast)
        log.info("callback request %s done by staff %s", callback_id, staff.id)
