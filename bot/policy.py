"""The dialogue policy: a resident's message and the conversation's state in,
the bot's answer, its new state and any handoff request out.

Plain Python with no transport: the chat server, the CLI and the tests all
call :meth:`Bot.handle` the same way.

Safety order: the crisis lexicon runs beside the model and outranks it, so a
crisis message gets the crisis answer even when the model is wrong or Rasa is
down.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from .content import CONTRACT_INTENTS, Content
from .language import detect_language, lexicon_from_examples
from .nlu import NluUnavailable, RasaClient
from .redact import redact
from .safety import crisis_check
from .settings import Settings
from .types import FALLBACK_INTENT, Availability, BotTurn, DialogueState, Handoff, ParseResult, Reply

log = logging.getLogger(__name__)

PENDING_OFFER_COUNSELLOR = "offer_counsellor"
# Finnish and Swedish say these both on arriving and on leaving: what they
# mean depends on where in the conversation they come, which the model
# cannot see.
TWO_WAY_SALUTATIONS = frozenset({
    "hei", "moi", "moikka", "moikku", "heippa", "heissan", "hei hei", "moi moi", "hejsan", "hej",
    "hej hej", "tjena", "moro", "morjens", "terve",
})
# safety_category of a message the model took for a crisis but the lexicon did not.
MODEL_CRISIS = "model"
_HANDOFF_INTENTS = {"request_counsellor": "requested"}
# Button payloads that are not contract intents: the call-back form, joining the queue.
SYSTEM_PAYLOADS = frozenset({"callback_request", "join_queue"})


class Bot:
    def __init__(self, content: Content, nlu: RasaClient, *, fallback_threshold: float = 0.45,
                 fallbacks_before_handoff: int = 2, default_language: str = "fi") -> None:
        self.content = content
        self.nlu = nlu
        self.fallback_threshold = fallback_threshold
        self.fallbacks_before_handoff = fallbacks_before_handoff
        self.default_language = default_language
        examples: dict[str, list[str]] = {}
        for data in content.intents.values():
            for lang, texts in data.examples.items():
                examples.setdefault(lang, []).extend(texts)
        self.lexicon = lexicon_from_examples(examples)

    @classmethod
    def from_settings(cls, settings: Settings) -> "Bot":
        return cls(
            Content.load(settings.training_data_dir),
            RasaClient(settings.rasa_url, settings.rasa_timeout_secs, settings.rasa_token,
                       settings.rasa_spill_below),
            fallback_threshold=settings.fallback_threshold,
            fallbacks_before_handoff=settings.fallbacks_before_handoff,
            default_language=settings.default_language,
        )

    async def close(self) -> None:
        await self.nlu.close()

    @staticmethod
    def redact(text: str) -> str:
        return redact(text)

    @staticmethod
    def nlu_text(text: str) -> str:
        """The text ``parse`` gives the model for a resident's message."""
        return redact(text.strip())

    def notice(self, response_id: str, language: str, **params: Any) -> Reply:
        """A system notice (handoff, queue, availability) in the resident's language."""
        return self.content.reply(response_id, language, **params)

    # -- understanding ------------------------------------------------------
    async def parse(self, text: str, ui_language: str | None = None,
                    previous_language: str | None = None, *, opening: bool = True) -> ParseResult:
        """What the message means, as the resident will be answered: redacted,
        crisis lexicon first, then the model with the fallback threshold.

        `opening` says the message opens the conversation (a lone "moi" then
        greets; later it says goodbye)."""
        clean = self.nlu_text(text)
        language = detect_language(clean, hint=ui_language or self.default_language,
                                   previous=previous_language, lexicon=self.lexicon)
        if clean.startswith("/"):
            payload = clean[1:].split("{", 1)[0].strip()
            if payload in CONTRACT_INTENTS or payload in SYSTEM_PAYLOADS:
                return ParseResult(clean, payload, 1.0, language, model_intent=payload)
        hit = crisis_check(clean)
        if hit is not None:
            return ParseResult(clean, "crisis", 1.0, language, model_intent=None,
                               safety_category=hit.category)
        try:
            result = await self.nlu.parse(clean)
        except NluUnavailable as exc:
            log.warning("NLU unavailable: %s", exc)
            return ParseResult(clean, FALLBACK_INTENT, 0.0, language, nlu_available=False)
        ranked = [(name, conf) for name, conf in result.ranking if name != FALLBACK_INTENT]
        top_intent, top_conf = ranked[0] if ranked else (result.intent, result.confidence)
        safety = None
        if top_intent == "crisis":
            # The lexicon did not match: the model alone over-calls crisis on
            # bereavement and past events ("äiti kuoli viime vuonna..."). Answer
            # the next intent, and let handle() put a safety check first.
            safety = MODEL_CRISIS
            runner_up = ranked[1] if len(ranked) > 1 else (FALLBACK_INTENT, 0.0)
            top_intent, top_conf = runner_up
        if top_intent not in CONTRACT_INTENTS or top_conf < self.fallback_threshold:
            intent = FALLBACK_INTENT
        else:
            intent = top_intent
        if _salutation(clean) in TWO_WAY_SALUTATIONS:
            intent, top_conf = ("greet" if opening else "goodbye"), max(top_conf, self.fallback_threshold)
        return ParseResult(clean, intent, top_conf, language, model_intent=ranked[0][0] if ranked else None,
                           safety_category=safety, ranking=tuple(ranked[:5]))

    # -- answering ----------------------------------------------------------
    async def handle(self, text: str, state: DialogueState | None = None,
                     ui_language: str | None = None, *,
                     counsellors_online: bool | None = None,
                     availability: Availability | None = None) -> BotTurn:
        """Answer one resident message. Never raises because Rasa is down.

        ``availability`` (the chat server's): whether a counsellor can come now, is
        expected soon, and whether the chat already waits in the queue. Without it,
        ``counsellors_online`` (or, with neither, a counsellor counts as available)."""
        state = state or DialogueState()
        if availability is None:
            availability = Availability(now=True if counsellors_online is None else counsellors_online)
        else:
            counsellors_online = availability.now
        parsed = await self.parse(text, ui_language, state.language, opening=state.turns == 0)
        lang = parsed.language
        state = state.evolve(language=lang, turns=state.turns + 1)
        intent = parsed.intent
        reply = self.content.reply

        if intent == "crisis":
            return BotTurn(parsed, (reply("crisis", lang),),
                           state.evolve(pending=None, fallback_count=0),
                           Handoff("crisis", "crisis", state.last_topic or "crisis"))

        if parsed.safety_category == MODEL_CRISIS:
            turn = await self._answer(parsed, state, counsellors_online, availability)
            return BotTurn(parsed, (reply("crisis_check", lang), *turn.replies), turn.state,
                           turn.handoff, turn.understood)
        return await self._answer(parsed, state, counsellors_online, availability)

    def _to_counsellor(self, parsed: ParseResult, state: DialogueState, availability: Availability,
                       reason: str, first: Reply | None = None) -> BotTurn:
        """The resident asked for a person (or the bot could not understand twice).

        Only when a counsellor can come now is the chat queued (the chat server's
        notice then says the place and wait: the one message). Otherwise one honest
        message with the next steps, and the bot keeps the chat: already queued, a
        counsellor expected soon (the resident may choose to wait in the queue), or
        nobody today (call-back, phone, walk-in, emergency numbers)."""
        lang = parsed.language
        state = state.evolve(pending=None)
        if availability.queued:
            response_id = "handoff_still_queued"
        elif availability.now:
            if first is None and not availability.notices:
                first = self.content.reply("request_counsellor", lang)
            replies = (first,) if first is not None else ()
            return BotTurn(parsed, replies, state, Handoff(reason, "normal", state.last_topic),
                           understood=reason != "fallback")
        elif availability.expected_soon:
            response_id = "counsellors_expected"
        else:
            response_id = "counsellors_unavailable"
        answer = self.content.reply(response_id, lang)
        if first is not None:  # "I didn't understand" and the next steps, as one message
            answer = Reply(f"{first.text} {answer.text}".strip(), answer.quick_replies, response_id)
        return BotTurn(parsed, (answer,), state, understood=reason != "fallback")

    async def _answer(self, parsed: ParseResult, state: DialogueState,
                      counsellors_online: bool | None, availability: Availability) -> BotTurn:
        lang = parsed.language
        intent = parsed.intent
        reply = self.content.reply

        if not parsed.nlu_available:
            return BotTurn(parsed, (reply("nlu_unavailable", lang),),
                           state.evolve(pending=PENDING_OFFER_COUNSELLOR), understood=False)

        if intent == FALLBACK_INTENT:
            count = state.fallback_count + 1
            if count >= self.fallbacks_before_handoff:
                first = reply("fallback_handoff" if availability.now and not availability.queued
                              else "fallback_not_understood", lang)
                return self._to_counsellor(parsed, state.evolve(fallback_count=0), availability,
                                           "fallback", first)
            return BotTurn(parsed, (reply("fallback", lang),),
                           state.evolve(fallback_count=count, pending=PENDING_OFFER_COUNSELLOR),
                           understood=False)

        state = state.evolve(fallback_count=0)
        if intent == "affirm":
            if state.pending == PENDING_OFFER_COUNSELLOR:
                return self._to_counsellor(parsed, state, availability, "requested")
            return BotTurn(parsed, (reply("affirm_nothing_pending", lang),), state)
        if intent == "deny":
            if state.pending == PENDING_OFFER_COUNSELLOR:
                return BotTurn(parsed, (reply("deny_offer", lang),), state.evolve(pending=None))
            return BotTurn(parsed, (reply("deny", lang),), state)

        if intent in _HANDOFF_INTENTS:
            return self._to_counsellor(parsed, state, availability, _HANDOFF_INTENTS[intent])

        if intent == "join_queue":
            # The button of counsellors_expected: wait in the queue for the counsellor
            # expected soon (the chat server's notice says why and what to expect).
            if availability.queued:
                return BotTurn(parsed, (reply("handoff_still_queued", lang),), state.evolve(pending=None))
            if availability.now or availability.expected_soon:
                return BotTurn(parsed, (), state.evolve(pending=None),
                               Handoff("requested", "normal", state.last_topic))
            return BotTurn(parsed, (reply("counsellors_unavailable", lang),), state.evolve(pending=None))

        if intent == "callback_request":
            # A button of the counsellors_unavailable notice: the chat server opens the form.
            return BotTurn(parsed, (), state.evolve(pending=None))

        replies = [reply(intent, lang)]
        if intent == "polku_contact":
            open_now = counsellors_online if counsellors_online is not None else self.content.is_open("chat")
            status_id = "polku_chat_open" if open_now else "polku_chat_closed"
            if status_id in self.content.responses:
                replies.append(reply(status_id, lang))
        topic = intent if intent not in ("greet", "goodbye", "thanks", "bot_challenge", "out_of_scope") else state.last_topic
        return BotTurn(parsed, tuple(replies), state.evolve(pending=None, last_topic=topic))


def _salutation(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())
