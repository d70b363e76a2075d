"""Checks of the training data, answers and service facts, each problem
pointing at the item it is about (so the page can show it beside the field).

``bot.content.Content.validate`` is the runtime's own gate and runs last;
these checks come first because they say *where*, and they look further:
duplicate examples within and across intents, examples too long or with
line breaks, missing languages, placeholders that do not resolve or are
malformed, quick replies to intents that do not exist, opening hours that do
not parse.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any, Iterable

from bot.content import CONTRACT_INTENTS, RUNTIME_PLACEHOLDERS
from bot.hours import NON_CHANNEL_KEYS, WEEKDAYS, HoursError, OpeningHours
from bot.policy import SYSTEM_PAYLOADS
from bot.redact import holds_personal_data
from bot.types import LANGUAGES

MAX_EXAMPLE_CHARS = 300
MAX_ANSWER_CHARS = 1200
MAX_QUICK_REPLIES = 3
MAX_TITLE_CHARS = 60
PAYLOAD_TARGETS = frozenset(CONTRACT_INTENTS) | SYSTEM_PAYLOADS

_PLACEHOLDER = re.compile(r"\{([a-z_][a-z0-9_]*)\}")
_HOURS = re.compile(r"([01]\d|2[0-3]):[0-5]\d-([01]\d|2[0-4]):[0-5]\d")
_DATE = re.compile(r"\d{4}-\d\d-\d\d")

# code -> message per language; {name} fields come from the problem's params.
MESSAGES: dict[str, dict[str, str]] = {
    "missing_intent": {
        "fi": "Aiheelta puuttuu esimerkkitiedosto.", "sv": "Ämnet saknar exempelfil.",
        "en": "The topic has no examples file."},
    "missing_language_examples": {
        "fi": "Aiheella ei ole yhtään esimerkkiä kielellä {language}.",
        "sv": "Ämnet har inga exempel på språket {language}.",
        "en": "The topic has no examples in {language}."},
    "empty_example": {
        "fi": "Esimerkki on tyhjä.", "sv": "Exemplet är tomt.", "en": "The example is empty."},
    "example_too_long": {
        "fi": "Esimerkki on liian pitkä ({length} merkkiä, enintään {limit}).",
        "sv": "Exemplet är för långt ({length} tecken, högst {limit}).",
        "en": "The example is too long ({length} characters, at most {limit})."},
    "example_line_break": {
        "fi": "Esimerkissä on rivinvaihto; kirjoita se yhdelle riville.",
        "sv": "Exemplet har en radbrytning; skriv det på en rad.",
        "en": "The example has a line break; write it on one line."},
    "duplicate_example": {
        "fi": "Sama esimerkki on jo tässä aiheessa: \"{other_text}\".",
        "sv": "Samma exempel finns redan i detta ämne: \"{other_text}\".",
        "en": "The same example is already in this topic: \"{other_text}\"."},
    "duplicate_across_intents": {
        "fi": "Sama esimerkki on myös aiheessa {other_intent}: \"{other_text}\". Botti ei voi oppia kahta vastausta samaan viestiin.",
        "sv": "Samma exempel finns också i ämnet {other_intent}: \"{other_text}\". Boten kan inte lära sig två svar på samma meddelande.",
        "en": "The same example is also in topic {other_intent}: \"{other_text}\". The bot cannot learn two answers to one message."},
    "unknown_language": {
        "fi": "Tuntematon kieli {language} (sallitut: fi, sv, en).",
        "sv": "Okänt språk {language} (tillåtna: fi, sv, en).",
        "en": "Unknown language {language} (allowed: fi, sv, en)."},
    "missing_answer": {
        "fi": "Aiheella ei ole vastausta.", "sv": "Ämnet har inget svar.", "en": "The topic has no answer."},
    "empty_answer": {
        "fi": "Vastaus puuttuu kieleltä {language}.", "sv": "Svaret saknas på språket {language}.",
        "en": "The answer is missing in {language}."},
    "answer_too_long": {
        "fi": "Vastaus on liian pitkä ({length} merkkiä, enintään {limit}).",
        "sv": "Svaret är för långt ({length} tecken, högst {limit}).",
        "en": "The answer is too long ({length} characters, at most {limit})."},
    "unknown_placeholder": {
        "fi": "Tuntematon paikkamerkki {{{name}}}: sellaista palvelutietoa ei ole.",
        "sv": "Okänd platshållare {{{name}}}: någon sådan serviceuppgift finns inte.",
        "en": "Unknown placeholder {{{name}}}: there is no such service fact."},
    "malformed_placeholder": {
        "fi": "Aaltosulkeita saa käyttää vain paikkamerkeissä, esimerkiksi {{polku_phone}}.",
        "sv": "Klammerparenteser får bara användas i platshållare, till exempel {{polku_phone}}.",
        "en": "Curly braces are only for placeholders, such as {{polku_phone}}."},
    "too_many_quick_replies": {
        "fi": "Enintään {limit} pikapainiketta.", "sv": "Högst {limit} snabbknappar.",
        "en": "At most {limit} quick reply buttons."},
    "bad_payload": {
        "fi": "Painikkeen kohteena pitää olla jokin aihe.", "sv": "Knappens mål måste vara ett ämne.",
        "en": "The button must lead to a topic."},
    "missing_title": {
        "fi": "Painikkeen teksti puuttuu kieleltä {language}.",
        "sv": "Knappens text saknas på språket {language}.",
        "en": "The button's text is missing in {language}."},
    "title_too_long": {
        "fi": "Painikkeen teksti on liian pitkä (enintään {limit} merkkiä).",
        "sv": "Knappens text är för lång (högst {limit} tecken).",
        "en": "The button's text is too long (at most {limit} characters)."},
    "empty_fact": {
        "fi": "Palvelutieto on tyhjä.", "sv": "Serviceuppgiften är tom.", "en": "The service fact is empty."},
    "missing_language_fact": {
        "fi": "Palvelutieto puuttuu kieleltä {language}.",
        "sv": "Serviceuppgiften saknas på språket {language}.",
        "en": "The service fact is missing in {language}."},
    "bad_date": {
        "fi": "Tarkistuspäivä pitää kirjoittaa muodossa VVVV-KK-PP.",
        "sv": "Kontrolldatumet ska skrivas ÅÅÅÅ-MM-DD.",
        "en": "Write the date checked as YYYY-MM-DD."},
    "bad_fact_name": {
        "fi": "Nimessä saa olla vain pieniä kirjaimia a–z, numeroita ja alaviivoja.",
        "sv": "Namnet får bara innehålla små bokstäver a–z, siffror och understreck.",
        "en": "The name may only have lower-case letters a–z, digits and underscores."},
    "bad_hours": {
        "fi": "Aukioloaika pitää kirjoittaa muodossa 09:00-15:00 (tai jättää tyhjäksi, jos suljettu).",
        "sv": "Öppettiden ska skrivas 09:00-15:00 (eller lämnas tom om stängt).",
        "en": "Write opening hours as 09:00-15:00 (or leave empty when closed)."},
    "personal_data": {
        "fi": "Esimerkissä on henkilötietoja (henkilötunnus, puhelinnumero, sähköpostiosoite tai tilinumero). "
              "Botin opetusaineistoon ei saa tallentaa henkilötietoja. Poista ne esimerkistä tai korvaa "
              "merkinnällä, esimerkiksi [PHONE].",
        "sv": "Exemplet innehåller personuppgifter (personbeteckning, telefonnummer, e-postadress eller "
              "kontonummer). Personuppgifter får inte sparas i botens träningsdata. Ta bort dem ur exemplet "
              "eller ersätt dem med en markering, till exempel [PHONE].",
        "en": "The example contains personal data (an identity code, phone number, e-mail address or bank "
              "account). Personal data must not go into the bot's training data. Remove it from the example "
              "or replace it with a marker such as [PHONE]."},
    "malformed": {
        "fi": "Tieto on väärän muotoinen: {detail}", "sv": "Uppgiften har fel form: {detail}",
        "en": "The entry is malformed: {detail}"},
    "content_invalid": {
        "fi": "Botti ei hyväksy sisältöä: {detail}", "sv": "Boten godkänner inte innehållet: {detail}",
        "en": "The bot does not accept the content: {detail}"},
}


@dataclass(frozen=True)
class Problem:
    code: str
    item: tuple[tuple[str, Any], ...]  # e.g. (("kind", "example"), ("intent", ...), ("language", "fi"), ("index", 3))
    params: tuple[tuple[str, Any], ...] = field(default=())

    @property
    def key(self) -> tuple:
        """What identifies the problem across two versions of the data."""
        item = {k: v for k, v in self.item if k != "index"}
        params = {k: v for k, v in self.params if k in ("text", "name", "language", "other_intent")}
        return (self.code, tuple(sorted(item.items())), tuple(sorted(params.items())))

    def to_json(self) -> dict[str, Any]:
        params = dict(self.params)
        messages = MESSAGES.get(self.code, MESSAGES["malformed"])
        return {"code": self.code, "item": dict(self.item), "params": params,
                "message": {lang: _format(text, params) for lang, text in messages.items()}}


def _format(template: str, params: dict[str, Any]) -> str:
    try:
        return template.format(**params)
    except (KeyError, IndexError, ValueError):
        return template


def problem(code: str, item: dict[str, Any], **params: Any) -> Problem:
    return Problem(code, tuple(item.items()), tuple(params.items()))


def normalise_example(text: str) -> str:
    """What Rasa sees of an example: case, punctuation and spacing do not count."""
    text = unicodedata.normalize("NFC", text).lower()
    text = re.sub(r"[^\w\s]", " ", text)
    return " ".join(text.split())


def personal_data(text: str, item: dict[str, Any]) -> Problem | None:
    """A problem when ``text`` holds personal data: what bot.redact would replace
    (identity codes, phone numbers, e-mail addresses, IBANs).

    The redaction's own markers ([HETU], [PHONE], [EMAIL], [IBAN]) are kept as
    they are: they hold no personal data, and a resident's message reaches the
    model redacted, with these very markers, so an example with one matches
    what the model will be asked. (Refusing them would leave the inbox's
    redacted messages unassignable, or make admins invent fake numbers.)
    """
    if not holds_personal_data(text):  # linear time, Unicode spaces/dashes/digits folded
        return None
    return problem("personal_data", item)


# --- the checks -----------------------------------------------------------------------


def check_intents(intents: dict[str, dict]) -> list[Problem]:
    problems: list[Problem] = []
    for intent in CONTRACT_INTENTS:
        if intent not in intents:
            problems.append(problem("missing_intent", {"kind": "intent", "intent": intent}))
    seen: dict[str, tuple[str, str, int, str]] = {}  # normalised -> (intent, language, index, text)
    for intent in sorted(intents):
        examples = intents[intent].get("examples") or {}
        if not isinstance(examples, dict):
            problems.append(problem("malformed", {"kind": "intent", "intent": intent},
                                    detail="examples must map languages to lists"))
            continue
        for lang in LANGUAGES:
            if not examples.get(lang):
                problems.append(problem("missing_language_examples",
                                        {"kind": "intent", "intent": intent, "language": lang}, language=lang))
        for lang, items in examples.items():
            if lang not in LANGUAGES:
                problems.append(problem("unknown_language", {"kind": "intent", "intent": intent},
                                        language=lang))
                continue
            if not isinstance(items, list):
                problems.append(problem("malformed", {"kind": "intent", "intent": intent, "language": lang},
                                        detail="examples must be a list"))
                continue
            for index, text in enumerate(items):
                item = {"kind": "example", "intent": intent, "language": lang, "index": index}
                if not isinstance(text, str):
                    problems.append(problem("malformed", item, detail="an example must be text"))
                    continue
                problems.extend(_check_example(item, text, seen))
    return problems


def _check_example(item: dict, text: str, seen: dict) -> Iterable[Problem]:
    if not text.strip():
        yield problem("empty_example", item)
        return
    if "\n" in text or "\r" in text:
        yield problem("example_line_break", item, text=text)
    if len(text) > MAX_EXAMPLE_CHARS:
        yield problem("example_too_long", item, length=len(text), limit=MAX_EXAMPLE_CHARS, text=text)
    norm = normalise_example(text)
    if not norm:
        yield problem("empty_example", item)
        return
    first = seen.get(norm)
    if first is None:
        seen[norm] = (item, text, [False])
        return
    first_item, first_text, first_flagged = first
    # Both sides of a duplicate are pointed at (each naming the other): which one
    # is "the new one" depends on the edit, not on the files' order.
    yield _duplicate(item, text, first_item, first_text)
    if not first_flagged[0]:
        first_flagged[0] = True
        yield _duplicate(first_item, first_text, item, text)


def _duplicate(item: dict, text: str, other: dict, other_text: str) -> Problem:
    if other["intent"] == item["intent"]:
        return problem("duplicate_example", item, text=text, other_text=other_text)
    return problem("duplicate_across_intents", item, text=text, other_intent=other["intent"],
                   other_text=other_text)


def touches(found: Problem, key: dict[str, Any]) -> bool:
    """Whether the problem is about the slot ``key`` of an edit."""
    item = dict(found.item)
    return all(item.get(name) == value for name, value in key.items())


def about_edits(added: list[Problem], keys: list[dict[str, Any]]) -> list[Problem]:
    """The problems to show for an edit: a duplicate's other side is left out when the
    side the edit made is shown (the admin fixes what they just wrote)."""
    shown = []
    for found in added:
        if found.code in ("duplicate_example", "duplicate_across_intents") and not any(
                touches(found, key) for key in keys):
            text = normalise_example(dict(found.params).get("text", ""))
            if any(other is not found and touches(other, key) and other.code == found.code
                   and normalise_example(dict(other.params).get("text", "")) == text
                   for other in added for key in keys):
                continue
        shown.append(found)
    return shown


def check_responses(responses: dict[str, Any], fact_names: Iterable[str]) -> list[Problem]:
    problems: list[Problem] = []
    known = set(fact_names) | RUNTIME_PLACEHOLDERS
    for intent in CONTRACT_INTENTS:
        if intent not in responses:
            problems.append(problem("missing_answer", {"kind": "answer", "response": intent}))
    for rid, entry in responses.items():
        base = {"kind": "answer", "response": rid}
        if not isinstance(entry, dict) or not isinstance(entry.get("text"), dict):
            problems.append(problem("malformed", base, detail="text: {fi, sv, en} is needed"))
            continue
        for lang in entry["text"]:
            if lang not in LANGUAGES:
                problems.append(problem("unknown_language", base, language=lang))
        for lang in LANGUAGES:
            item = {**base, "language": lang}
            text = entry["text"].get(lang)
            if not isinstance(text, str) or not text.strip():
                problems.append(problem("empty_answer", item, language=lang))
                continue
            if len(text) > MAX_ANSWER_CHARS:
                problems.append(problem("answer_too_long", item, length=len(text), limit=MAX_ANSWER_CHARS))
            for name in _PLACEHOLDER.findall(text):
                if name not in known and f"{name}_{lang}" not in known:  # name_<lang>: a fact per language
                    problems.append(problem("unknown_placeholder", item, name=name))
            if "{" in _PLACEHOLDER.sub("", text) or "}" in _PLACEHOLDER.sub("", text):
                problems.append(problem("malformed_placeholder", item))
        replies = entry.get("quick_replies") or []
        if not isinstance(replies, list):
            problems.append(problem("malformed", base, detail="quick_replies must be a list"))
            continue
        if len(replies) > MAX_QUICK_REPLIES:
            problems.append(problem("too_many_quick_replies", base, limit=MAX_QUICK_REPLIES))
        for index, reply in enumerate(replies):
            problems.extend(_check_quick_reply({"kind": "quick_reply", "response": rid, "index": index}, reply))
    return problems


def _check_quick_reply(item: dict, reply: Any) -> Iterable[Problem]:
    if not isinstance(reply, dict):
        yield problem("malformed", item, detail="a quick reply needs payload and title")
        return
    payload = reply.get("payload")
    if not isinstance(payload, str) or not payload.startswith("/") or payload[1:] not in PAYLOAD_TARGETS:
        yield problem("bad_payload", item, payload=str(payload))
    titles = reply.get("title")
    if not isinstance(titles, dict):
        titles = {}
    for lang in LANGUAGES:
        title = titles.get(lang)
        if not isinstance(title, str) or not title.strip():
            yield problem("missing_title", {**item, "language": lang}, language=lang)
        elif len(title) > MAX_TITLE_CHARS:
            yield problem("title_too_long", {**item, "language": lang}, limit=MAX_TITLE_CHARS)


def check_facts(facts: dict[str, Any], opening_hours: dict[str, Any]) -> list[Problem]:
    problems: list[Problem] = []
    for name, entry in facts.items():
        base = {"kind": "fact", "fact": name}
        if not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
            problems.append(problem("bad_fact_name", base))
        raw = entry.get("value") if isinstance(entry, dict) else entry
        if isinstance(raw, dict):
            for lang in raw:
                if lang not in LANGUAGES:
                    problems.append(problem("unknown_language", base, language=lang))
            for lang in LANGUAGES:
                if not str(raw.get(lang) or "").strip():
                    problems.append(problem("missing_language_fact", {**base, "language": lang}, language=lang))
        elif raw is None or not str(raw).strip():
            problems.append(problem("empty_fact", base))
        checked = entry.get("checked") if isinstance(entry, dict) else None
        if checked is not None and not (isinstance(checked, str) and _DATE.fullmatch(checked)):
            problems.append(problem("bad_date", {**base, "field": "checked"}))
    for channel, days in opening_hours.items():
        if channel in NON_CHANNEL_KEYS:
            continue
        if not isinstance(days, dict):
            problems.append(problem("malformed", {"kind": "hours", "channel": channel},
                                    detail="opening hours must map weekdays to times"))
            continue
        for day, span in days.items():
            item = {"kind": "hours", "channel": channel, "day": day}
            if day not in WEEKDAYS:
                problems.append(problem("malformed", item, detail=f"unknown weekday {day}"))
            elif not isinstance(span, str) or not _HOURS.fullmatch(span) or span[:5] >= span[6:]:
                problems.append(problem("bad_hours", item))
    if not any(dict(p.item).get("kind") == "hours" for p in problems):
        try:  # closed_dates and exceptions (by date)
            OpeningHours(opening_hours)
        except HoursError as exc:
            problems.append(problem("malformed", {"kind": "hours", "channel": "exceptions"}, detail=str(exc)))
    return problems


def check_all(intents: dict, responses: dict, facts: dict, opening_hours: dict) -> list[Problem]:
    return (check_intents(intents) + check_responses(responses, facts)
            + check_facts(facts, opening_hours))


def new_problems(before: list[Problem], after: list[Problem]) -> list[Problem]:
    """Problems in ``after`` that ``before`` did not have (an edit must not add any)."""
    old = {p.key for p in before}
    return [p for p in after if p.key not in old]
