"""The dialogue policy: a resident's message and the conversation's state in,
the bot's answer, its new state and any handoff request out.

Plain Python with no transport: the chat server, the CLI and the tests all
call :meth:`Bot.handle` the same way.

Safety order: the crisis lexicon runs beside the model and outranks it, so a
crisis message gets the crisis answer even when the model is wrong or Rasa is
down. The layers (see `Bot.parse`):

1. the crisis lexicon (training_data/crisis_lexicon.yml): a hit is a crisis: the
   answer for its kind and the front of the counsellor queue;
2. the model's `crisis` intent, through a decision rule over its ranking:
   `crisis` anywhere in the model's top three with at least `check_confidence`,
   or any message that carries risk words (the lexicon's `risk_words`),
   gets the safety check, which asks directly and
   makes escalation one tap, before the best other answer, or instead of "I
   did not understand". (With `crisis_confidence` set, the model's crisis on
   top with that confidence would be a crisis by itself; off by default, see
   CRISIS_CONFIDENCE.)

Each crisis gets the answer for its kind (`CRISIS_ANSWERS`): suicidal thoughts
and self-harm, violence, or no food or place to sleep tonight.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any, Awaitable, Callable

from .content import CONTRACT_INTENTS, Content
from .language import Lexicon, detect_language, lexicon_from_examples
from .nlu import NluClient, NluUnavailable, RasaClient
from .redact import redact
from .safety import CrisisLexicon, default_lexicon, use_lexicon
from .settings import Settings
from .types import FALLBACK_INTENT, Availability, BotTurn, DialogueState, Handoff, ParseResult, Reply

log = logging.getLogger(__name__)

# A Rasa outage must not write a log line per resident message: the first
# failure is logged, then at most one line this often, with how many failed.
NLU_WARNING_EVERY_SECS = 10.0


class _OutageLog:
    def __init__(self, every_secs: float = NLU_WARNING_EVERY_SECS) -> None:
        self.every_secs = every_secs
        self._since_logged = 0
        self._logged_at: float | None = None

    def failed(self, exc: Exception) -> None:
        now = time.monotonic()
        self._since_logged += 1
        if self._logged_at is None or now - self._logged_at >= self.every_secs:
            more = f" ({self._since_logged} parses failed since the last line)" if self._logged_at else ""
            log.warning("NLU unavailable: %s%s", exc, more)
            self._logged_at, self._since_logged = now, 0

    def answered(self) -> None:
        if self._logged_at is not None:
            log.info("NLU answers again (%d more parses had failed)", self._since_logged)
            self._logged_at, self._since_logged = None, 0

PENDING_OFFER_COUNSELLOR = "offer_counsellor"
# Finnish and Swedish say these both on arriving and on leaving: what they
# mean depends on where in the conversation they come, which the model
# cannot see.
TWO_WAY_SALUTATIONS = frozenset({
    "hei", "moi", "moikka", "moikku", "heippa", "heissan", "hei hei", "moi moi", "hejsan", "hej",
    "hej hej", "tjena", "moro", "morjens", "terve",
})
PENDING_SAFETY_CHECK = "safety_check"
# safety_category of a message the model took for a crisis with confidence but
# the lexicon did not (and whose risk words name no kind of crisis).
MODEL_CRISIS = "model"
# safety_category of a message that gets the safety check before (or instead of) its answer.
SAFETY_CHECK = "check"
# The answer for each crisis lexicon category; a crisis of no known kind gets `crisis`.
CRISIS_ANSWERS = {
    "suicide": "crisis_suicide", "self_harm": "crisis_suicide",
    "acute_danger": "crisis_violence", "violence": "crisis_violence",
    "homeless_tonight": "crisis_basic_needs", "no_food": "crisis_basic_needs",
}
# The model's crisis intent on top with at least this confidence is a crisis
# by itself; None: never by itself, only through the safety check. Measured on
# tests/data/crisis_eval.yml (5 Dec 2026): the model put crisis on top with at
# least 0.5 for 110 of 478 hard negatives (bereavement, idioms, "what is the
# emergency number"), and with 0.99 still for some ("nauroin itseni
# kuoliaaksi"), while every crisis message it caught so was also caught by
# the lexicon or got the safety check. So the model alone asks, it does not alarm.
CRISIS_CONFIDENCE: float | None = None
# Crisis among the model's first CHECK_RANKS intents with at least this
# confidence (or on top with less than CRISIS_CONFIDENCE) gets the safety check.
CHECK_CONFIDENCE = 0.1
CHECK_RANKS = 3
_HANDOFF_INTENTS = {"request_counsellor": "requested"}
# Button payloads that are not contract intents: the call-back form, joining the queue.
SYSTEM_PAYLOADS = frozenset({"callback_request", "join_queue"})


def rasa_client(settings: Settings) -> RasaClient:
    """The client of the Rasa servers the settings name."""
    return RasaClient(settings.rasa_url, settings.rasa_timeout_secs, settings.rasa_token,
                      settings.rasa_spill_below)


class Bot:
    def __init__(self, content: Content, nlu: NluClient, *, fallback_threshold: float = 0.45,
                 fallbacks_before_handoff: int = 2, default_language: str = "fi",
                 crisis_confidence: float | None = CRISIS_CONFIDENCE, check_confidence: float = CHECK_CONFIDENCE) -> None:
        self.nlu = nlu
        self.crisis_confidence = crisis_confidence
        self.check_confidence = check_confidence
        self.fallback_threshold = fallback_threshold
        self.fallbacks_before_handoff = fallbacks_before_handoff
        self.default_language = default_language
        self._nlu_outage = _OutageLog()
        self.replace_content(content)

    @staticmethod
    def language_lexicon(content: Content) -> Lexicon:
        """The words of the content's examples per language (language detection uses them)."""
        examples: dict[str, list[str]] = {}
        for data in content.intents.values():
            for lang, texts in data.examples.items():
                examples.setdefault(lang, []).extend(texts)
        return lexicon_from_examples(examples)

    def replace_content(self, content: Content, lexicon: Lexicon | None = None) -> None:
        """Answer from ``content`` from now on (the admins' edits take effect at once).
        ``lexicon``: its ``language_lexicon``, when computed already (it takes a while)."""
        if getattr(content, "lexicon", None) is not None:
            # Also what the chat server checks while a resident waits for a
            # counsellor (bot.safety.crisis_check), reloaded with the content.
            use_lexicon(content.lexicon)
        self.content = content
        self.lexicon = lexicon if lexicon is not None else self.language_lexicon(content)

    @property
    def crisis_lexicon(self) -> CrisisLexicon:
        """The lexicon of the bot's training data (reloaded with it), else the project's."""
        return getattr(self.content, "lexicon", None) or default_lexicon()

    @classmethod
    def from_settings(cls, settings: Settings, nlu: NluClient | None = None) -> "Bot":
        """The bot the settings describe; ``nlu`` replaces the Rasa client they name."""
        return cls(
            Content.load(settings.training_data_dir),
            nlu if nlu is not None else rasa_client(settings),
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
        lexicon = self.crisis_lexicon
        hit = lexicon.check(clean)
        if hit is not None:
            return ParseResult(clean, "crisis", 1.0, language, model_intent=None,
                               safety_category=hit.category)
        try:
            result = await self.nlu.parse(clean)
        except NluUnavailable as exc:
            self._nlu_outage.failed(exc)
            # Risk words still bring the safety check before "cannot answer right now".
            return ParseResult(clean, FALLBACK_INTENT, 0.0, language, nlu_available=False,
                               safety_category=SAFETY_CHECK if lexicon.risk(clean) is not None else None)
        self._nlu_outage.answered()
        ranked = [(name, conf) for name, conf in result.ranking if name != FALLBACK_INTENT]
        top_intent, top_conf = ranked[0] if ranked else (result.intent, result.confidence)
        model_intent = ranked[0][0] if ranked else None
        if top_intent == "crisis" and self.crisis_confidence is not None and top_conf >= self.crisis_confidence:
            # The model is sure although the lexicon did not match: a crisis. Its
            # risk words, if any, say which kind.
            return ParseResult(clean, "crisis", top_conf, language, model_intent=model_intent,
                               safety_category=lexicon.risk(clean) or MODEL_CRISIS, ranking=tuple(ranked[:5]))
        safety = None
        crisis_near_top = any(name == "crisis" and conf >= self.check_confidence
                              for name, conf in ranked[:CHECK_RANKS])
        if top_intent == "crisis" or crisis_near_top:
            # Crisis on top but unsure, or close behind another intent: the model
            # alone over-calls crisis on bereavement and past events ("äiti kuoli
            # viime vuonna..."). Answer the best other intent, and let handle()
            # put the safety check first.
            safety = SAFETY_CHECK
            top_intent, top_conf = next(((name, conf) for name, conf in ranked if name != "crisis"),
                                        (FALLBACK_INTENT, 0.0))
        if top_intent not in CONTRACT_INTENTS or top_conf < self.fallback_threshold:
            intent = FALLBACK_INTENT
        else:
            intent = top_intent
        if safety is None and lexicon.risk(clean) is not None:
            # Risk words: neither "I did not understand" nor another topic's
            # answer may be the only reply. Ask first.
            safety = SAFETY_CHECK
        if _salutation(clean) in TWO_WAY_SALUTATIONS:
            intent, top_conf = ("greet" if opening else "goodbye"), max(top_conf, self.fallback_threshold)
            safety = None
        return ParseResult(clean, intent, top_conf, language, model_intent=model_intent,
                           safety_category=safety, ranking=tuple(ranked[:5]))

    def crisis_answer_id(self, category: str | None) -> str:
        """The answer for a kind of crisis (the general one when the kind is unknown or its answer missing)."""
        answer = CRISIS_ANSWERS.get(category or "", "crisis")
        return answer if answer in self.content.responses else "crisis"

    # -- answering ----------------------------------------------------------
    async def handle(self, text: str, state: DialogueState | None = None,
                     ui_language: str | None = None, *,
                     availability: AvailabilitySource | None = None) -> BotTurn:
        """Answer one resident message. Never raises because Rasa is down.

        ``availability`` (the chat server's): whether a counsellor can come now, is
        expected soon, and whether the chat already waits in the queue; or an async function
        that tells it, called only when the answer depends on it (most answers do not, and
        asking costs the chat server a look at who is online). Without it, a counsellor
        counts as available."""
        state = state or DialogueState()
        asked = _Asked(Availability(now=True) if availability is None else availability, availability is not None)
        parsed = await self.parse(text, ui_language, state.language, opening=state.turns == 0)
        lang = parsed.language
        state = state.evolve(language=lang, turns=state.turns + 1)
        intent = parsed.intent
        reply = self.content.reply

        if intent == "crisis":
            return BotTurn(parsed, (reply(self.crisis_answer_id(parsed.safety_category), lang),),
                           state.evolve(pending=None, fallback_count=0),
                           Handoff("crisis", "crisis", state.last_topic or "crisis"))

        if parsed.safety_category == SAFETY_CHECK:
            if intent == FALLBACK_INTENT and parsed.nlu_available:
                # Not understood, but it may be a crisis: ask directly instead of
                # "I did not understand" (the check offers a counsellor too).
                return BotTurn(parsed, (reply("crisis_check", lang),),
                               state.evolve(pending=PENDING_SAFETY_CHECK), understood=False)
            turn = await self._answer(parsed, state, asked)
            pending = turn.state.pending if turn.handoff is not None else PENDING_SAFETY_CHECK
            return BotTurn(parsed, (reply("crisis_check", lang), *turn.replies), turn.state.evolve(pending=pending),
                           turn.handoff, turn.understood)
        return await self._answer(parsed, state, asked)

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

    async def _answer(self, parsed: ParseResult, state: DialogueState, asked: "_Asked") -> BotTurn:
        lang = parsed.language
        intent = parsed.intent
        reply = self.content.reply

        if not parsed.nlu_available:
            return BotTurn(parsed, (reply("nlu_unavailable", lang),),
                           state.evolve(pending=PENDING_OFFER_COUNSELLOR), understood=False)

        if intent == FALLBACK_INTENT:
            count = state.fallback_count + 1
            if count >= self.fallbacks_before_handoff:
                availability = await asked.get()
                first = reply("fallback_handoff" if availability.now and not availability.queued
                              else "fallback_not_understood", lang)
                return self._to_counsellor(parsed, state.evolve(fallback_count=0), availability,
                                           "fallback", first)
            return BotTurn(parsed, (reply("fallback", lang),),
                           state.evolve(fallback_count=count, pending=PENDING_OFFER_COUNSELLOR),
                           understood=False)

        state = state.evolve(fallback_count=0)
        if intent == "affirm":
            if state.pending == PENDING_SAFETY_CHECK:
                # "Yes" to "are you thinking of ending your life?": a crisis.
                return BotTurn(parsed, (reply(self.crisis_answer_id("suicide"), lang),),
                               state.evolve(pending=None),
                               Handoff("crisis", "crisis", state.last_topic or "crisis"))
            if state.pending == PENDING_OFFER_COUNSELLOR:
                return self._to_counsellor(parsed, state, await asked.get(), "requested")
            return BotTurn(parsed, (reply("affirm_nothing_pending", lang),), state)
        if intent == "deny":
            if state.pending == PENDING_SAFETY_CHECK and "safety_check_declined" in self.content.responses:
                return BotTurn(parsed, (reply("safety_check_declined", lang),), state.evolve(pending=None))
            if state.pending == PENDING_OFFER_COUNSELLOR:
                return BotTurn(parsed, (reply("deny_offer", lang),), state.evolve(pending=None))
            return BotTurn(parsed, (reply("deny", lang),), state)

        if intent in _HANDOFF_INTENTS:
            return self._to_counsellor(parsed, state, await asked.get(), _HANDOFF_INTENTS[intent])

        if intent == "join_queue":
            # The button of counsellors_expected: wait in the queue for the counsellor
            # expected soon (the chat server's notice says why and what to expect).
            availability = await asked.get()
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
            open_now = (await asked.get()).now if asked.told else self.content.is_open("chat")
            status_id = "polku_chat_open" if open_now else "polku_chat_closed"
            if status_id in self.content.responses:
                replies.append(reply(status_id, lang))
        topic = intent if intent not in ("greet", "goodbye", "thanks", "bot_challenge", "out_of_scope") else state.last_topic
        return BotTurn(parsed, tuple(replies), state.evolve(pending=None, last_topic=topic))


AvailabilitySource = Availability | Callable[[], Awaitable[Availability]]


class _Asked:
    """The availability of one turn, asked for once and only if the answer depends on it.
    ``told``: the caller said it (else the content's chat hours stand in where they can)."""

    def __init__(self, source: AvailabilitySource, told: bool) -> None:
        self._source = source
        self._value = source if isinstance(source, Availability) else None
        self.told = told

    async def get(self) -> Availability:
        if self._value is None:
            self._value = await self._source()
        return self._value


def _salutation(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())
