"""The bot's content: intents with examples, answers and service facts.

Everything lives in ``training_data/`` as YAML that admins edit. Loading
validates it all at once (every contract intent has examples and an answer in
every language, every ``{placeholder}`` resolves) so a broken edit is caught
before it reaches a resident.

Facts that are not real yet never reach a resident. A fact is *usable* when it
is filled: not ``placeholder: true`` (unfilled) nor ``example: true`` (an
invented example), and its value has no fill-in mark. Rendering works
sentence by sentence: a sentence that needs an unusable fact is left out; a
parenthesis holding only such a fact (" ({employment_services_web})") is left
out and the sentence kept; and the sentence's place is taken by a safe
general sentence when there is one: the answer's own ``fallbacks: {fact:
{fi, sv, en}}``, else the fact's ``fallback``. A fact that varies by language
is one fact per language, ``<name>_fi``, ``<name>_sv``, ``<name>_en``:
``{name}`` in a text picks the fact of the text's language.

An answer may also say where its rules come from: ``checked`` (a date),
``source`` (a list of http(s) URLs) and ``rule_changed`` ("YYYY-MM-DD: what
changed" notes). They are optional and validated; residents never see them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import urlsplit

import yaml

from .hours import OpeningHours, date_or_none
from .safety import CrisisLexicon, LexiconError
from .types import LANGUAGES, QuickReply, Reply

# The contract's intent ids (../shared/spec/intents.md), in its order.
CONTRACT_INTENTS: tuple[str, ...] = (
    "greet", "goodbye", "thanks", "affirm", "deny", "bot_challenge",
    "income_support_basic", "income_support_supplementary", "housing_allowance",
    "housing_problem", "unemployment", "debt_counselling", "kela_application_help",
    "social_rehabilitation", "substance_use", "mental_health", "youth_services",
    "family_services", "become_client", "polku_contact", "own_worker", "appeal_decision",
    "child_welfare_notice", "request_counsellor",
    "crisis", "out_of_scope",
)
SMALL_TALK_INTENTS = frozenset({"greet", "goodbye", "thanks", "affirm", "deny", "bot_challenge"})
TOPIC_INTENTS = tuple(i for i in CONTRACT_INTENTS if i not in SMALL_TALK_INTENTS)

# Placeholders the chat server fills in at send time, not from service facts.
RUNTIME_PLACEHOLDERS = frozenset({"position", "wait_minutes", "counsellor_name"})

LEXICON_FILE = "crisis_lexicon.yml"

# A value with one of these is a fill-in mark, never a fact (checked case-insensitively).
FILL_IN_MARKS = ("täydennä", "fill in", "fyll i", "[", "]", "{", "}")
# A fact checked longer ago than this is listed as stale (`python -m bot facts`, the admin page).
STALE_AFTER_DAYS = 180
# Answers on the crisis path: every fact they name must be filled in production.
CRISIS_RESPONSE_PREFIXES = ("crisis", "handoff_crisis")


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
    # name -> the whole entry of service_facts.yml (placeholder, example, source, checked, fallback...)
    fact_entries: dict[str, dict[str, Any]] = field(default_factory=dict)

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
        facts, entries = split_fact_entries(facts_doc.get("facts") or {})
        lexicon = None
        if (directory / LEXICON_FILE).exists():
            try:
                lexicon = CrisisLexicon.load(directory / LEXICON_FILE)
            except LexiconError as exc:
                raise ContentError(str(exc)) from None
        content = cls(intents, responses, facts, facts_doc.get("opening_hours") or {}, directory, lexicon,
                      fact_entries=entries)
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
                    if self.fact_name(name, lang) is None and name not in RUNTIME_PLACEHOLDERS:
                        problems.append(f"response {rid} ({lang}): unknown placeholder {{{name}}}")
            fallbacks = entry.get("fallbacks") or {}
            if not isinstance(fallbacks, dict):
                problems.append(f"response {rid}: fallbacks must map fact names to {{fi, sv, en}} sentences")
                fallbacks = {}
            for name, texts in fallbacks.items():
                if not isinstance(texts, dict) or any(not isinstance(texts.get(lang), str) for lang in LANGUAGES):
                    problems.append(f"response {rid}: fallbacks.{name} needs a sentence in fi, sv and en")
            problems.extend(_provenance_problems(rid, entry))
            for i, qr in enumerate(entry.get("quick_replies") or []):
                payload = qr.get("payload") if isinstance(qr, dict) else None
                titles = qr.get("title") if isinstance(qr, dict) else None
                if not isinstance(payload, str) or not payload.startswith("/"):
                    problems.append(f"response {rid}: quick reply {i + 1} needs a /payload")
                if not isinstance(titles, dict) or any(not titles.get(lang) for lang in LANGUAGES):
                    problems.append(f"response {rid}: quick reply {i + 1} needs titles in fi, sv and en")
        for name, entry in self.fact_entries.items():
            fallback = entry.get("fallback")
            if fallback is not None and not isinstance(fallback, (str, dict)):
                problems.append(f"fact {name}: fallback must be a sentence or {{fi, sv, en}} sentences")
        try:
            self.hours
        except ValueError as exc:
            problems.append(str(exc))
        if problems:
            raise ContentError("; ".join(problems))

    # -- facts --------------------------------------------------------------
    def fact_name(self, name: str, language: str) -> str | None:
        """The fact ``{name}`` means in a ``language`` text: ``name`` itself, else
        ``name_<language>`` (a fact that varies by language), else None."""
        if name in self.facts:
            return name
        own = f"{name}_{language}"
        return own if own in self.facts else None

    def fact(self, name: str, language: str) -> str:
        """The fact's value in ``language``, whether or not it is usable."""
        value = self.facts[self.fact_name(name, language) or name]
        if isinstance(value, dict):
            return str(value.get(language) or value.get("fi") or next(iter(value.values()), ""))
        return "" if value is None else str(value)

    def fact_status(self, name: str) -> str:
        """"filled", "unfilled" (placeholder: true, empty or a fill-in mark) or "example"."""
        entry = self.fact_entries.get(name) or {}
        if entry.get("placeholder"):
            return "unfilled"
        if entry.get("example"):
            return "example"
        value = self.facts.get(name)
        texts = list(value.values()) if isinstance(value, dict) else [value]
        if not texts or any(_is_fill_in(t) for t in texts):
            return "unfilled"
        if isinstance(value, dict) and any(not value.get(lang) for lang in LANGUAGES):
            return "unfilled"
        return "filled"

    def usable(self, name: str, language: str) -> bool:
        """Whether ``{name}`` may be shown to a resident in ``language``."""
        real = self.fact_name(name, language)
        return real is not None and self.fact_status(real) == "filled"

    def fact_report(self, today: date | None = None,
                    stale_after_days: int = STALE_AFTER_DAYS) -> list[dict[str, Any]]:
        """Every fact with its state, the ones needing attention first: unfilled,
        then examples, then stale (checked over ``stale_after_days`` ago) or undated."""
        today = today or date.today()
        crisis = self.crisis_facts()
        rows = []
        for name in self.facts:
            entry = self.fact_entries.get(name) or {}
            status = self.fact_status(name)
            checked = date_or_none(entry.get("checked"))
            stale = status == "filled" and (checked is None or (today - checked).days > stale_after_days)
            rows.append({
                "name": name, "status": status, "stale": stale,
                "scope": str(entry.get("scope") or "area"),
                "crisis_path": name in crisis,
                "checked": checked.isoformat() if checked else None,
                "source": entry.get("source"),
                "confidence": entry.get("confidence"),
                "has_fallback": entry.get("fallback") is not None,
            })
        order = {"unfilled": 0, "example": 1, "filled": 2}
        rows.sort(key=lambda r: (order[r["status"]], not r["stale"], not r["crisis_path"], r["name"]))
        return rows

    def crisis_facts(self) -> set[str]:
        """Facts on the crisis path: named by a crisis answer (crisis*, handoff_crisis*), or
        marked ``crisis_path: true``; ``crisis_path: false`` takes a fact off it (a language's
        hours that have a verified safe sentence, say)."""
        names: set[str] = set()
        for rid, entry in self.responses.items():
            if not rid.startswith(CRISIS_RESPONSE_PREFIXES) or not isinstance(entry, dict):
                continue
            for lang, text in (entry.get("text") or {}).items():
                for name in _placeholders(str(text)):
                    real = self.fact_name(name, lang)
                    if real is not None:
                        names.add(real)
        for name, entry in self.fact_entries.items():
            if entry.get("crisis_path") is True:
                names.add(name)
            elif entry.get("crisis_path") is False:
                names.discard(name)
        return names

    def unfilled_crisis_facts(self) -> list[str]:
        return sorted(name for name in self.crisis_facts() if self.fact_status(name) != "filled")

    # -- rendering --------------------------------------------------------
    def reply(self, response_id: str, language: str, **params: Any) -> Reply:
        entry = self.responses[response_id]
        text = self.render(entry["text"][language], language, params, entry.get("fallbacks"))
        quick = tuple(
            QuickReply(title=qr["title"][language], payload=qr["payload"])
            for qr in entry.get("quick_replies") or []
        )
        return Reply(text=text, quick_replies=quick, response_id=response_id)

    def render(self, template: str, language: str, params: Mapping[str, Any] | None = None,
               fallbacks: Mapping[str, Any] | None = None) -> str:
        """The template with its facts filled in, sentence by sentence (see the module doc):
        no sentence that needs an unusable fact is kept."""
        params = params or {}
        out: list[str] = []
        for sentence in _SENTENCE_END.split(template.strip()):
            missing = self._missing(sentence, language, params)
            if missing:
                for name in missing:  # " ({fact})" alone in a parenthesis: drop just that
                    sentence = sentence.replace(f" ({{{name}}})", "").replace(f"({{{name}}}) ", "")
                missing = self._missing(sentence, language, params)
            if not missing:
                _append(out, self._fill(sentence, language, params))
                continue
            for name in missing:
                fallback = self._fallback(name, language, fallbacks)
                if fallback and not self._missing(fallback, language, params):
                    _append(out, self._fill(fallback, language, params))
        return " ".join(out).strip()

    def _missing(self, text: str, language: str, params: Mapping[str, Any]) -> list[str]:
        return [name for name in dict.fromkeys(_placeholders(text))
                if name not in params and not self.usable(name, language)]

    def _fallback(self, name: str, language: str, fallbacks: Mapping[str, Any] | None) -> str | None:
        own = (fallbacks or {}).get(name)
        if isinstance(own, dict):  # the answer's own; "" leaves the sentence out
            return str(own.get(language) or "") or None
        real = self.fact_name(name, language)
        fallback = (self.fact_entries.get(real) or {}).get("fallback") if real else None
        if isinstance(fallback, dict):
            return str(fallback.get(language) or "") or None
        return str(fallback) if fallback else None

    def _fill(self, text: str, language: str, params: Mapping[str, Any]) -> str:
        def value(match: re.Match) -> str:
            name = match.group(1)
            if name in params:
                return str(params[name])
            return self.fact(name, language)

        return _PLACEHOLDER.sub(value, text).strip()

    # -- hours --------------------------------------------------------------
    @property
    def hours(self) -> OpeningHours:
        """The opening hours (public holidays, closed dates and exceptions included)."""
        cached = self.__dict__.get("_hours")
        if cached is None or cached.config is not self.opening_hours:
            cached = OpeningHours(self.opening_hours)
            self.__dict__["_hours"] = cached
        return cached

    def is_open(self, channel: str = "chat", now: datetime | None = None) -> bool:
        """Whether the service's channel is open now by the opening hours in service_facts.yml:
        weekly hours, public holidays, the area's closed dates and exceptions."""
        return self.hours.is_open(channel, now)


def split_fact_entries(raw: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """service_facts.yml's ``facts`` as (name -> value, name -> the entry's other keys)."""
    facts: dict[str, Any] = {}
    entries: dict[str, dict[str, Any]] = {}
    for name, entry in raw.items():
        if isinstance(entry, dict) and "value" in entry:
            facts[name] = entry.get("value")
            entries[name] = {key: item for key, item in entry.items() if key != "value"}
        else:
            facts[name], entries[name] = entry, {}
    return facts, entries


def _provenance_problems(rid: str, entry: Mapping[str, Any]) -> list[str]:
    """Problems with an answer's optional provenance keys: ``checked`` (the date its rule
    was last checked, YYYY-MM-DD), ``source`` (a list of http(s) URLs it was checked
    against) and ``rule_changed`` (a list of "YYYY-MM-DD: what changed" notes)."""
    problems: list[str] = []
    if "checked" in entry and date_or_none(entry["checked"]) is None:
        problems.append(f"response {rid}: checked must be a date (YYYY-MM-DD)")
    if "source" in entry:
        sources = entry["source"]
        if not isinstance(sources, list) or not sources:
            problems.append(f"response {rid}: source must be a list of URLs")
        else:
            for url in sources:
                parts = urlsplit(url.strip()) if isinstance(url, str) else None
                if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
                    problems.append(f"response {rid}: source {url!r} is not an http(s) URL")
    if "rule_changed" in entry:
        notes = entry["rule_changed"]
        if not isinstance(notes, list) or not notes:
            problems.append(f"response {rid}: rule_changed must be a list of \"YYYY-MM-DD: what changed\" notes")
        else:
            for note in notes:
                day, sep, what = note.partition(":") if isinstance(note, str) else ("", "", "")
                if not sep or date_or_none(day) is None or not what.strip():
                    problems.append(f"response {rid}: rule_changed note {note!r} needs the form "
                                    "\"YYYY-MM-DD: what changed\"")
    return problems


def _is_fill_in(value: Any) -> bool:
    if value is None:
        return True
    text = str(value).strip().lower()
    return not text or any(mark in text for mark in FILL_IN_MARKS)


def _append(out: list[str], sentence: str) -> None:
    if sentence and sentence not in out:
        out.append(sentence)


# A sentence ends at . ! or ? followed by white space (templates are admins' text, not residents').
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
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
