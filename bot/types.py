"""Plain data the bot takes and returns. No transport code here or anywhere in bot/."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

LANGUAGES = ("fi", "sv", "en")
Language = Literal["fi", "sv", "en"]

HandoffReason = Literal["requested", "crisis", "fallback", "nlu_unavailable"]

FALLBACK_INTENT = "nlu_fallback"


@dataclass(frozen=True)
class QuickReply:
    title: str
    payload: str  # "/intent_id", as Rasa button payloads

    def to_rasa(self) -> dict:
        return {"content_type": "text", "title": self.title, "payload": self.payload}


@dataclass(frozen=True)
class Reply:
    """One message the resident sees."""

    text: str
    quick_replies: tuple[QuickReply, ...] = ()
    response_id: str = ""  # which entry of training_data/responses.yml it came from

    def to_rasa(self) -> dict:
        """The `bot_uttered` body of Rasa's socketio channel (without metadata)."""
        body: dict = {"text": self.text}
        if self.quick_replies:
            body["quick_replies"] = [qr.to_rasa() for qr in self.quick_replies]
        return body


@dataclass(frozen=True)
class Handoff:
    """The bot asks for the conversation to go to the counsellor queue."""

    reason: HandoffReason
    priority: Literal["crisis", "normal"] = "normal"
    topic: str | None = None  # last topic intent, shown to the counsellor


@dataclass(frozen=True)
class ParseResult:
    """What the resident's message means, safety check included."""

    text: str  # redacted
    intent: str  # contract id or nlu_fallback
    confidence: float
    language: Language
    model_intent: str | None = None  # what the NLU model said, before safety check and threshold
    safety_category: str | None = None  # set when the crisis lexicon matched
    nlu_available: bool = True
    ranking: tuple[tuple[str, float], ...] = ()

    def to_json(self) -> dict:
        return {
            "text": self.text,
            "intent": self.intent,
            "confidence": round(self.confidence, 4),
            "language": self.language,
        }


@dataclass(frozen=True)
class DialogueState:
    """What the bot remembers of one conversation between turns."""

    language: Language | None = None
    fallback_count: int = 0
    pending: str | None = None  # e.g. "offer_counsellor": what affirm/deny answer
    last_topic: str | None = None
    turns: int = 0  # resident messages the bot has answered

    def to_dict(self) -> dict:
        return {
            "language": self.language,
            "fallback_count": self.fallback_count,
            "pending": self.pending,
            "last_topic": self.last_topic,
            "turns": self.turns,
        }

    @classmethod
    def from_dict(cls, data: dict | None) -> "DialogueState":
        data = data or {}
        language = data.get("language")
        return cls(
            language=language if language in LANGUAGES else None,
            fallback_count=int(data.get("fallback_count") or 0),
            pending=data.get("pending"),
            last_topic=data.get("last_topic"),
            turns=int(data.get("turns") or 0),
        )

    def evolve(self, **changes) -> "DialogueState":
        return replace(self, **changes)


@dataclass(frozen=True)
class Availability:
    """Whether a counsellor can come to the chat, as the chat server knows it when a
    resident's message comes. The bot never hands a (non-crisis) chat to a queue no
    one will read: it says so, gives the next steps and keeps answering."""

    now: bool = True  # chat hours, and a counsellor online: a handoff goes to the queue
    expected_soon: bool = False  # nobody now, but a counsellor is expected (chat hours today)
    queued: bool = False  # the conversation already waits in the queue (the bot answers meanwhile)
    # The chat server tells a move to the queue in its own notice (place and wait), so the bot
    # says nothing of its own then; without a chat server (the shell, tests) the bot says it.
    notices: bool = False


@dataclass(frozen=True)
class BotTurn:
    """The bot's whole answer to one resident message."""

    parse: ParseResult
    replies: tuple[Reply, ...]
    state: DialogueState
    handoff: Handoff | None = None
    understood: bool = True  # False for fallback / low confidence: goes to the admin inbox

    @property
    def language(self) -> Language:
        return self.parse.language


__all__ = [
    "LANGUAGES", "Language", "FALLBACK_INTENT", "QuickReply", "Reply", "Handoff",
    "ParseResult", "DialogueState", "BotTurn", "Availability",
]
