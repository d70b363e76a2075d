"""The inbox of what the bot did not understand: resident messages that got
the fallback, or an intent with low confidence (below
POLKU_INBOX_CONFIDENCE_BELOW), grouped by similarity, each with the model's
best guesses. An admin assigns a message (or a whole group) to an intent,
which adds it to the training data as an example in the message's language,
recorded and undoable like any edit; or dismisses it.

The texts are the stored ones, already redacted ([PHONE], [HETU]...); the
admin may still edit a text before it becomes an example.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from typing import Any

from bot.policy import Bot
from bot.settings import Settings
from bot.types import LANGUAGES

from ..errors import EditRefused, InboxError
from ..numbers import is_id, parse_id
from ..store.admin.inbox import InboxRepository
from ..store.conversations import guess_list
from . import similarity
from .changes import ContentService, StaffRef
from .checks import normalise_example, personal_data, problem
from .editing import Edit, TrainingData

log = logging.getLogger(__name__)

INBOX_LIMIT = 500  # newest open messages grouped per view
GUESSES_KEPT = 3
RECOMPUTE_PER_VIEW = 50  # messages without stored guesses asked from the model per view
RECOMPUTE_TIMEOUT_SECS = 5.0  # one parse
RECOMPUTE_CONCURRENCY = 4  # parses in flight at once
RECOMPUTE_BUDGET_SECS = 10.0  # all of one view's parses


class Inbox:
    """The messages the bot did not understand, grouped, and the admins' decisions on them."""

    def __init__(self, repository: InboxRepository, content: ContentService, bot: Bot,
                 settings: Settings) -> None:
        self.repository = repository
        self.content = content
        self.bot = bot
        self.threshold = settings.inbox_confidence_below
        self.default_language = settings.default_language

    # --- reading ------------------------------------------------------------------------

    async def items(self) -> list[dict[str, Any]]:
        rows = await self.repository.open_messages(self.threshold, INBOX_LIMIT)
        items = [{"message_id": r.id, "text": r.text, "language": r.language, "intent": r.intent,
                  "confidence": round(r.confidence or 0.0, 3), "at": r.created_at.isoformat(),
                  "guesses": [{"intent": g[0], "confidence": round(float(g[1]), 3)} for g in (r.guesses or [])]}
                 for r in rows if not r.text.startswith("/")]
        await self._recompute_missing(items)
        items.sort(key=lambda item: item["message_id"])
        return items

    async def _recompute_missing(self, items: list[dict]) -> None:
        """Guesses for messages stored without them (older ones, or while Rasa was down)."""
        parse = getattr(self.bot, "parse", None)
        missing = [item for item in items if not item["guesses"]][:RECOMPUTE_PER_VIEW]
        if parse is None or not missing:
            return
        found: dict[int, list] = {}
        # A few at a time (Rasa also answers the residents meanwhile), within a
        # budget for the whole view; whatever is left gets its guesses next time.
        gate = asyncio.Semaphore(RECOMPUTE_CONCURRENCY)
        down = False

        async def guess(item: dict) -> None:
            nonlocal down
            async with gate:
                if down:
                    return
                try:
                    async with asyncio.timeout(RECOMPUTE_TIMEOUT_SECS):
                        result = await parse(item["text"], item["language"])
                except Exception as exc:
                    log.info("could not recompute inbox guesses: %s", type(exc).__name__)
                    down = True
                    return
                if not result.nlu_available:
                    down = True  # Rasa is down: try again next time
                    return
                guesses = guess_list(result.ranking[:GUESSES_KEPT])
                if guesses:
                    found[item["message_id"]] = guesses
                    item["guesses"] = [{"intent": n, "confidence": round(c, 3)} for n, c in guesses]

        try:
            async with asyncio.timeout(RECOMPUTE_BUDGET_SECS):
                await asyncio.gather(*(guess(item) for item in missing))
        except TimeoutError:
            log.info("inbox guesses: %d of %d recomputed within %.0f s", len(found), len(missing),
                     RECOMPUTE_BUDGET_SECS)
        if found:
            await self.repository.add_guesses(found)

    async def groups(self) -> dict[str, Any]:
        items = await self.items()
        # Pure Python and quadratic-ish in the messages (up to INBOX_LIMIT): in a
        # thread, so that the residents' chats on this event loop do not wait.
        out = await asyncio.to_thread(_grouped, items)
        return {"groups": out, "total": len(items), "threshold": self.threshold}

    # --- deciding ------------------------------------------------------------------------

    async def _messages(self, message_ids: list[int]) -> list[Any]:
        ids = _ids(message_ids)
        rows = await self.repository.resident_messages(ids)
        if len(rows) != len(ids):
            raise InboxError("some messages no longer exist (deleted meanwhile?)")
        return rows

    async def assign(self, message_ids: list[int], intent: str, texts: dict, staff: StaffRef) -> dict:
        """Add the messages to ``intent``'s examples (each in its own language)."""
        messages = await self._messages(message_ids)
        if texts is not None and not isinstance(texts, dict):
            raise InboxError("texts must map message ids to texts")
        keys = {key: parse_id(key) for key in (texts or {})}
        if any(number is None for number in keys.values()):
            raise InboxError("texts are keyed by message id (digits 0-9)")
        texts = {keys[k]: v for k, v in (texts or {}).items()}
        default_language = self.default_language
        edit_of: dict[int, int] = {}  # message id -> index of its edit

        def build(data: TrainingData) -> list[Edit]:
            if intent not in data.intents:
                raise EditRefused([problem("malformed", {"kind": "intent", "intent": intent},
                                           detail=f"no topic {intent}")])
            edits: list[Edit] = []
            refused: list = []
            for message in messages:
                language = message.language if message.language in LANGUAGES else default_language
                text = texts.get(message.id, message.text)
                if not isinstance(text, str):
                    raise EditRefused([problem("malformed", {"kind": "message", "message_id": message.id},
                                               detail="text must be text")])
                text = " ".join(text.split())
                # The stored text is redacted, but the admin may have edited it (or
                # redaction missed something): nothing personal goes into training data.
                found = personal_data(text, {"kind": "message", "message_id": message.id,
                                             "intent": intent, "language": language})
                if found is not None:
                    refused.append(found)
                    continue
                known = {normalise_example(x) for x in data.examples(intent, language)}
                known |= {normalise_example(e.after) for e in edits if e.key["language"] == language}
                if normalise_example(text) in known:
                    continue  # already an example: nothing to add
                edit_of[message.id] = len(edits)
                edits.append(Edit("example", {"intent": intent, "language": language}, None, text))
            if refused:
                raise EditRefused(refused)  # every message with personal data pointed at; none added
            return edits

        changes = await self.content.submit_edits(build, staff, source="inbox")
        await self._decide([m.id for m in messages], "assigned", intent, staff,
                           {mid: changes[i]["id"] for mid, i in edit_of.items() if i < len(changes)})
        return {"assigned": len(messages), "changes": changes}

    async def dismiss(self, message_ids: list[int], staff: StaffRef) -> dict:
        messages = await self._messages(message_ids)
        await self._decide([m.id for m in messages], "dismissed", None, staff, {})
        return {"dismissed": len(messages)}

    async def restore(self, message_ids: list[int]) -> dict:
        """Back to the inbox (a dismissal taken back)."""
        ids = _ids(message_ids)
        await self.repository.restore_dismissed(ids)
        return {"restored": len(ids)}

    async def _decide(self, ids: list[int], action: str, intent: str | None, staff: StaffRef,
                      change_ids: dict[int, int]) -> None:
        await self.repository.decide(ids, action, intent, staff_id=staff.id, staff_name=staff.name,
                                     change_ids=change_ids)


def _ids(message_ids: Any) -> list[int]:
    if not isinstance(message_ids, list) or not message_ids or len(message_ids) > INBOX_LIMIT:
        raise InboxError("message_ids must be a list of 1 to 500 ids")
    if not all(is_id(i) for i in message_ids):
        raise InboxError("message ids are numbers")
    return sorted(set(message_ids))


def _grouped(items: list[dict]) -> list[dict]:
    """The items in groups of similar texts, biggest groups first (TF-IDF computed once)."""
    vectors = similarity.tfidf([item["text"] for item in items])
    out = []
    for indices in similarity.group_vectors(vectors):
        members = [items[i] for i in indices]
        label = items[similarity.most_central(indices, vectors)]["text"]
        out.append({"id": members[0]["message_id"], "label": label, "size": len(members),
                    "guesses": _group_guesses(members), "items": members,
                    "languages": sorted({m["language"] for m in members if m["language"]}),
                    "newest": max(m["at"] for m in members)})
    # Biggest groups first; among equals, the most recent first.
    out.sort(key=lambda g: g["newest"], reverse=True)
    out.sort(key=lambda g: g["size"], reverse=True)
    return out


def _group_guesses(members: list[dict]) -> list[dict]:
    """The group's likeliest intents: mean confidence over its members, best three."""
    totals: dict[str, float] = defaultdict(float)
    for member in members:
        for guess in member["guesses"]:
            totals[guess["intent"]] += guess["confidence"]
    ranked = sorted(totals.items(), key=lambda kv: (-kv[1], kv[0]))[:GUESSES_KEPT]
    return [{"intent": name, "confidence": round(total / len(members), 3)} for name, total in ranked]
