"""The bot's content: intents with examples, answers and service facts.

Everything lives in ``training_data/`` as YAML that admins edit. Loading
validates it all at once (every contract intent has examples and an answer in
every language, every ``{placeholder}`` resolves) so a broken edit is caught
before it reaches a resident.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Mapping
from zoneinfo import ZoneInfo

import yaml

from .safety import CrisisLexicon, LexiconError
from .types import LANGUAGES, QuickReply, Reply

# The contract's intent ids (../shared/spec/intents.md), in its order.
CONTRACT_INTENTS: tuple[str, ...] = (
    "greet", "goodbye", "thanks", "affirm", "deny", "bot_challenge",
    "income_support_basic", "income_support_supplementary", "housing_allowance",
    "housing_problem", "unemployment", "debt_counselling", "kela_application_help",
    "social_rehabilitation", "substance_use", "mental_health", "youth_services",
    "family_services", "become_client", "polku_contact", "request_counsellor",
    "crisis", "out_of_scope",
)
SMALL_TALK_INTENTS = frozenset({"greet", "goodbye", "thanks", "affirm", "deny", "bot_challenge"})
TOPIC_INTENTS = tuple(i for i in CONTRACT_INTENTS if i not in SMALL_TALK_INTENTS)

# Placeholders the chat server fills in at send time, not from service facts.
RUNTIME_PLACEHOLDERS = frozenset({"position", "wait_minutes", "counsellor_name"})

LEXICON_FILE = "crisis_lexicon.yml"

_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class ContentError(ValueError):
    """The training data or answers are not usable; the message points at the item."""


@dataclass
class IntentData:
    intent: str
    description: str
    examples: dict[str, list[str]]  # language -> examples
    path: Path | None = None


@dataclass
class Content:
    intents: dict[str, IntentData]
    responses: dict[str, dict[str, Any]]
    facts: dict[str, Any]  # name -> str or {fi, sv, en}
    opening_hours: dict[str, Any] = field(default_factory=dict)
    directory: Path | None = None
    lexicon: CrisisLexicon | None = None  # crisis_lexicon.yml, when the directory has one

    # -- loading ----------------------------------------------------------
    @classmethod
    def load(cls, directory: str | Path) -> "Content":
        directory = Path(directory)
        intents: dict[str, IntentData] = {}
        for path in sorted((directory / "intents").glob("*.yml")):
            data = _read_yaml(path)
            name = data.get("intent")
            if not isinstance(name, str) or not name:
                raise ContentError(f"{path}: missing 'intent'")
            examples = data.get("examples") or {}
            if not isinstance(examples, dict):
                raise ContentError(f"{path}: 'examples' must map languages to lists")
            clean: dict[str, list[str]] = {}
            for lang, items in examples.items():
                if lang not in LANGUAGES:
                    raise ContentError(f"{path}: unknown language {lang!r}")
                if not isinstance(items, list) or not all(isinstance(x, str) for x in items):
                    raise ContentError(f"{path}: examples.{lang} must be a list of texts")
                clean[lang] = [x.strip() for x in items if x.strip()]
            intents[name] = IntentData(name, str(data.get("description") or ""), clean, path)
        responses = _read_yaml(directory / "responses.yml")
        facts_doc = _read_yaml(directory / "service_facts.yml")
        facts: dict[str, Any] = {}
        for name, entry in (facts_doc.get("facts") or {}).items():
            facts[name] = entry.get("value") if isinstance(entry, dict) and "value" in entry else entry
        lexicon = None
        if (directory / LEXICON_FILE).exists():
            try:
                lexicon = CrisisLexicon.load(directory / LEXICON_FILE)
            except LexiconError as exc:
                raise ContentError(str(exc)) from None
        content = cls(intents, responses, facts, facts_doc.get("opening_hours") or {}, directory, lexicon)
        content.validate()
        return content

    def example_texts(self) -> list[str]:
        """Every training example, of every intent and language."""
        return [text for data in self.intents.values() for texts in data.examples.values() for text in texts]

    def validate(self) -> None:
        problems: list[str] = []
        for intent in CONTRACT_INTENTS:
            if intent not in self.intents:
                problems.append(f"intent {intent}: no training examples (training_data/intents/{intent}.yml)")
            if intent not in self.responses:
                problems.append(f"intent {intent}: no answer in responses.yml")
        for rid, entry in self.responses.items():
            if not isinstance(entry, dict) or not isinstance(entry.get("text"), dict):
                problems.append(f"response {rid}: needs text: {{fi, sv, en}}")
                continue
            for lang in LANGUAGES:
                text = entry["text"].get(lang)
                if not isinstance(text, str) or not text.strip():
                    problems.append(f"response {rid}: empty or missing {lang} text")
                    continue
                for name in _placeholders(text):
                    if name not in self.facts and name not in RUNTIME_PLACEHOLDERS:
                        problems.append(f"response {rid} ({lang}): unknown placeholder {{{name}}}")
            for i, qr in enumerate(entry.get("quick_replies") or []):
                payload = qr.get("payload") if isinstance(qr, dict) else None
                titles = qr.get("title") if isinstance(qr, dict) else None
                if not isinstance(payload, str) or not payload.startswith("/"):
                    problems.append(f"response {rid}: quick reply {i + 1} needs a /payload")
                if not isinstance(titles, dict) or any(not titles.get(lang) for lang in LANGUAGES):
                    problems.append(f"response {rid}: quick reply {i + 1} needs titles in fi, sv and en")
        if problems:
            raise ContentError("; ".join(problems))

    # -- rendering --------------------------------------------------------
    def fact(self, name: str, language: str) -> str:
        value = self.facts[name]
        if isinstance(value, dict):
            return str(value.get(language) or value.get("fi") or next(iter(value.values())))
        return str(value)

    def reply(self, response_id: str, language: str, **params: Any) -> Reply:
        entry = self.responses[response_id]
        text = self._render(entry["text"][language], language, params)
        quick = tuple(
            QuickReply(title=qr["title"][language], payload=qr["payload"])
            for qr in entry.get("quick_replies") or []
        )
        return Reply(text=text, quick_replies=quick, response_id=response_id)

    def _render(self, template: str, language: str, params: Mapping[str, Any]) -> str:
        def value(match: re.Match) -> str:
            name = match.group(1)
            if name in params:
                return str(params[name])
            if name in self.facts:
                return self.fact(name, language)
            return match.group(0)

        return _PLACEHOLDER.sub(value, template).strip()

    def is_open(self, channel: str = "chat", now: datetime | None = None) -> bool:
        """Whether the service's channel is open now by the opening hours in service_facts.yml."""
        hours = self.opening_hours.get(channel) or {}
        tz = ZoneInfo(self.opening_hours.get("timezone") or "Europe/Helsinki")
        local = (now or datetime.now(tz)).astimezone(tz)
        span = hours.get(_WEEKDAYS[local.weekday()])
        if not span or not isinstance(span, str) or "-" not in span:
            return False
        start, end = (part.strip() for part in span.split("-", 1))
        current = local.strftime("%H:%M")
        return start <= current < end


_PLACEHOLDER = re.compile(r"\{([a-z_][a-z0-9_]*)\}")


def _placeholders(text: str) -> list[str]:
    return _PLACEHOLDER.findall(text)


def _read_yaml(path: Path) -> dict:
    try:
        with open(path, encoding="utf-8") as handle:
            data = yaml.safe_load(handle) or {}
    except FileNotFoundError:
        raise ContentError(f"{path}: file missing") from None
    except yaml.YAMLError as exc:
        raise ContentError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ContentError(f"{path}: expected a mapping at the top")
    return data
