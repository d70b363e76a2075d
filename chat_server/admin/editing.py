"""Editing the training data from the admin page.

An edit is a *replacement* of one slot: one example of an intent in one
language, an intent's description, one answer, one service fact, one
channel's opening hours. It carries what the slot held before and what it
holds after, which makes every edit recordable and undoable the same way:
undo is the replacement the other way round, allowed while the slot still
holds what the edit put there.

``check_*`` validates an edit against the whole data set (it must add no
problem); ``do_*`` writes the YAML files atomically, records the change and
reloads the running bot.
"""

from __future__ import annotations

import copy
import fcntl
import hashlib
import json
import logging
import re
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from bot.content import Content, ContentError, IntentData, split_fact_entries
from bot.hours import NON_CHANNEL_KEYS
from bot.types import LANGUAGES

from . import checks, yamlfile
from .checks import Problem, problem

log = logging.getLogger(__name__)

KINDS = ("example", "description", "answer", "fact", "hours")
LOCK_FILE = ".admin-edit.lock"


class EditRefused(ValueError):
    """The edit is not allowed; ``problems`` say why and where."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(p.code for p in problems))
        self.problems = problems


# What the admin is told when the item changed after their page loaded it.
STALE_MESSAGE = {
    "fi": "Joku muu on muuttanut tätä kohtaa sen jälkeen, kun avasit sivun, joten muutostasi ei tallennettu. "
          "Lataa sivu uudelleen, tarkista tiedot ja tee muutos sitten uudelleen.",
    "sv": "Någon annan har ändrat det här efter att du öppnade sidan, så din ändring sparades inte. "
          "Ladda om sidan, kontrollera uppgifterna och gör sedan ändringen på nytt.",
    "en": "Someone else changed this after you opened the page, so your change was not saved. "
          "Reload the page, check the content and then make your change again.",
}


class EditConflict(ValueError):
    """The slot no longer holds what the edit (or undo) expects: changed meanwhile."""

    def __init__(self, detail: str, message: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.message = message or STALE_MESSAGE


@dataclass
class Edit:
    kind: str
    key: dict[str, Any]  # which slot: {"intent", "language"} / {"intent"} / {"response"} / {"fact"} / {"channel"}
    before: Any
    after: Any

    @property
    def target(self) -> str:
        return "/".join(str(v) for v in self.key.values())

    def inverse(self) -> "Edit":
        return Edit(self.kind, dict(self.key), self.after, self.before)

    def summary(self) -> str:
        """One line for the change history (no YAML)."""
        if self.kind == "example":
            where = f"{self.key['intent']} ({self.key['language']})"
            if self.before is None:
                return f"+ {where}: {self.after}"
            if self.after is None:
                return f"- {where}: {self.before}"
            return f"{where}: {self.before} -> {self.after}"
        return f"{self.kind} {self.target}"


@dataclass
class TrainingData:
    """The YAML files of a training data directory, as data plus their text."""

    directory: Path
    intents: dict[str, dict[str, Any]]  # id -> {"intent", "description", "examples", ...}
    intent_texts: dict[str, str]
    responses: dict[str, Any]
    responses_text: str
    facts_doc: dict[str, Any]  # {"facts": {...}, "opening_hours": {...}}
    facts_text: str
    dirty: set[str] = field(default_factory=set)  # files to write: "intent:<id>", "responses", "facts"

    @classmethod
    def load(cls, directory: str | Path) -> "TrainingData":
        directory = Path(directory)
        intents, texts = {}, {}
        for path in sorted((directory / "intents").glob("*.yml")):
            text = path.read_text(encoding="utf-8")
            data = yamlfile.load(text)
            name = data.get("intent") if isinstance(data, dict) else None
            if not isinstance(name, str) or not name:
                raise ContentError(f"{path}: missing 'intent'")
            if path.stem != name:
                raise ContentError(f"{path}: says intent {name!r}; the file must be intents/{name}.yml")
            intents[name], texts[name] = data, text
        responses_text = (directory / "responses.yml").read_text(encoding="utf-8")
        facts_text = (directory / "service_facts.yml").read_text(encoding="utf-8")
        return cls(directory, intents, texts, yamlfile.load(responses_text), responses_text,
                   yamlfile.load(facts_text), facts_text)

    def clone(self) -> "TrainingData":
        return TrainingData(self.directory, copy.deepcopy(self.intents), dict(self.intent_texts),
                            copy.deepcopy(self.responses), self.responses_text,
                            copy.deepcopy(self.facts_doc), self.facts_text)

    @property
    def facts(self) -> dict[str, Any]:
        return self.facts_doc.setdefault("facts", {}) or {}

    @property
    def opening_hours(self) -> dict[str, Any]:
        return self.facts_doc.get("opening_hours") or {}

    # -- reading slots -------------------------------------------------------------

    def current(self, kind: str, key: dict[str, Any]) -> Any:
        if kind == "example":
            raise TypeError("examples are a set: use has_example")
        if kind == "description":
            return self._intent(key["intent"]).get("description") or ""
        if kind == "answer":
            return copy.deepcopy(self.responses.get(key["response"]))
        if kind == "fact":
            return copy.deepcopy(self.facts.get(key["fact"]))
        if kind == "hours":
            return copy.deepcopy(self.opening_hours.get(key["channel"]))
        raise ValueError(f"unknown kind {kind}")

    def examples(self, intent: str, language: str) -> list[str]:
        return list((self._intent(intent).get("examples") or {}).get(language) or [])

    def _intent(self, intent: str) -> dict[str, Any]:
        try:
            return self.intents[intent]
        except KeyError:
            raise EditRefused([problem("malformed", {"kind": "intent", "intent": intent},
                                       detail=f"no topic {intent}")]) from None

    # -- changing slots (in memory) -------------------------------------------------

    def apply(self, edit: Edit) -> None:
        """Make the replacement, or raise EditConflict if the slot holds something else."""
        kind, key = edit.kind, edit.key
        if kind == "example":
            self._apply_example(key["intent"], key["language"], edit.before, edit.after)
            self.dirty.add(f"intent:{key['intent']}")
            return
        if self.current(kind, key) != edit.before:
            raise EditConflict(f"{kind} {edit.target} was changed meanwhile")
        if kind == "description":
            self._intent(key["intent"])["description"] = edit.after
            self.dirty.add(f"intent:{key['intent']}")
        elif kind == "answer":
            _set_or_delete(self.responses, key["response"], edit.after)
            self.dirty.add("responses")
        elif kind == "fact":
            _set_or_delete(self.facts_doc.setdefault("facts", {}), key["fact"], edit.after)
            self.dirty.add("facts")
        elif kind == "hours":
            _set_or_delete(self.facts_doc.setdefault("opening_hours", {}), key["channel"], edit.after)
            self.dirty.add("facts")
        else:
            raise ValueError(f"unknown kind {kind}")

    def _apply_example(self, intent: str, language: str, before: str | None, after: str | None) -> None:
        if language not in LANGUAGES:
            raise EditRefused([problem("unknown_language", {"kind": "intent", "intent": intent},
                                       language=language)])
        examples = self._intent(intent).setdefault("examples", {})
        items = examples.setdefault(language, [])
        if before is None:
            if after is not None:
                items.append(after)
            return
        try:
            index = items.index(before)
        except ValueError:
            raise EditConflict(f"example {before!r} is no longer in {intent} ({language})") from None
        if after is None:
            del items[index]
        else:
            items[index] = after

    # -- checking -----------------------------------------------------------------------

    def problems(self) -> list[Problem]:
        return checks.check_all(self.intents, self.responses, self.facts, self.opening_hours)

    def to_content(self) -> Content:
        """The runtime's view of this data (raises ContentError as Content.load would)."""
        intents = {}
        for name, data in self.intents.items():
            examples = {lang: [x.strip() for x in items if isinstance(x, str) and x.strip()]
                        for lang, items in (data.get("examples") or {}).items()}
            intents[name] = IntentData(name, str(data.get("description") or ""), examples,
                                       self.directory / "intents" / f"{name}.yml")
        facts, entries = split_fact_entries(self.facts)
        content = Content(intents, self.responses, facts, self.opening_hours, self.directory,
                          fact_entries=entries)
        content.validate()
        return content

    # -- writing --------------------------------------------------------------------------

    def render(self) -> dict[Path, str]:
        """New text of every dirty file."""
        out: dict[Path, str] = {}
        for name in sorted(self.dirty):
            if name.startswith("intent:"):
                intent = name.split(":", 1)[1]
                data = self.intents[intent]
                header = yamlfile.header_comments(self.intent_texts.get(intent, ""))
                text = yamlfile.intent_file(data, header)
                out[self.directory / "intents" / f"{intent}.yml"] = yamlfile.checked_text(text, data, header)
            elif name == "responses":
                text = self.responses_text
                old = yamlfile.load(text)
                removed = sorted(old.keys() - self.responses.keys())
                if removed:
                    raise EditRefused([problem("malformed", {"kind": "answer", "response": removed[0]},
                                               detail="answers cannot be removed here")])
                for rid, entry in self.responses.items():
                    if old.get(rid) != entry:
                        text = yamlfile.replace_top_block(text, rid, yamlfile.response_block(rid, entry))
                out[self.directory / "responses.yml"] = yamlfile.checked_text(
                    text, self.responses, yamlfile.header_comments(self.responses_text))
            elif name == "facts":
                text = self.facts_text
                old = yamlfile.load(text)
                try:
                    for fact, entry in self.facts.items():
                        if (old.get("facts") or {}).get(fact) != entry:
                            text = yamlfile.replace_fact_block(text, fact, entry)
                    for channel, days in self.opening_hours.items():
                        if (old.get("opening_hours") or {}).get(channel) != days:
                            text = yamlfile.replace_hours_line(text, channel, days)
                except yamlfile.YamlLayoutError:
                    text = ""  # checked_text falls back to a plain dump
                out[self.directory / "service_facts.yml"] = yamlfile.checked_text(
                    text, self.facts_doc, yamlfile.header_comments(self.facts_text))
        return out


def _set_or_delete(mapping: dict, key: str, value: Any) -> None:
    if value is None:
        mapping.pop(key, None)
    else:
        mapping[key] = value


@contextmanager
def directory_lock(directory: Path) -> Iterator[None]:
    """Serialise edits of one training data directory across processes."""
    with open(Path(directory) / LOCK_FILE, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# --- versions of the slots the page replaces whole ---------------------------------------

VERSIONED_KINDS = ("description", "answer", "fact", "hours")


def item_version(value: Any) -> str | None:
    """A fingerprint of a slot's content (None for a slot that does not exist).

    The page sends back the version of each item it loaded; an edit of an
    item whose version has changed since (another admin's edit, a change by
    hand) is refused rather than silently overwriting it."""
    if value is None:
        return None
    text = json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def versions(data: TrainingData) -> dict[str, dict[str, str | None]]:
    """{kind: {name: version}} of every item the page edits whole."""
    return {
        "description": {name: item_version(data.current("description", {"intent": name})) for name in data.intents},
        "answer": {rid: item_version(data.current("answer", {"response": rid})) for rid in data.responses},
        "fact": {name: item_version(data.current("fact", {"fact": name})) for name in data.facts},
        "hours": {channel: item_version(days) for channel, days in data.opening_hours.items()
                  if isinstance(days, dict)},
    }


def _check_version(data: TrainingData, kind: str, key: dict[str, Any], request: dict[str, Any]) -> None:
    """Refuse the edit when the item is no longer what the page loaded (no version: a new item)."""
    sent = request.get("version")
    current = item_version(data.current(kind, key))
    if sent != current:
        where = "/".join(str(v) for v in key.values())
        raise EditConflict(f"{kind} {where} was changed after the page loaded it" if sent is not None
                           else f"{kind} {where}: the page sent no version; reload it")


# --- building edits from the page's requests ---------------------------------------------


def _text(value: Any, item: dict, field_name: str = "text") -> str:
    if not isinstance(value, str):
        raise EditRefused([problem("malformed", item, detail=f"{field_name} must be text")])
    return value


def _clean_example(value: Any, item: dict) -> str:
    text = _text(value, item).strip()
    # A line break is left in for the checks to point at; other spacing is tidied.
    return text if "\n" in text or "\r" in text else " ".join(text.split())


def check_edit(data: TrainingData, request: dict[str, Any]) -> Edit:
    """The edit a page request asks for (validated as a request; not yet against the data)."""
    if not isinstance(request, dict):
        raise EditRefused([problem("malformed", {}, detail="the request must be an object")])
    kind = request.get("kind")
    if kind == "example":
        intent, language = request.get("intent"), request.get("language")
        item = {"kind": "example", "intent": intent, "language": language}
        if not isinstance(intent, str) or intent not in data.intents:
            raise EditRefused([problem("malformed", item, detail="unknown topic")])
        if language not in LANGUAGES:
            raise EditRefused([problem("unknown_language", item, language=str(language))])
        before = request.get("before")
        after = request.get("after")
        before = None if before is None else _text(before, item, "before")
        after = None if after is None else _clean_example(after, item)
        if before is None and after is None:
            raise EditRefused([problem("malformed", item, detail="nothing to change")])
        examples = data.examples(intent, language)
        index = examples.index(before) if before in examples else len(examples)
        if after is not None and not after:
            raise EditRefused([problem("empty_example", {**item, "index": index})])
        if after is not None:
            found = checks.personal_data(after, {**item, "index": index})
            if found is not None:
                raise EditRefused([found])
        return Edit("example", {"intent": intent, "language": language}, before, after)
    if kind == "description":
        intent = request.get("intent")
        if not isinstance(intent, str) or intent not in data.intents:
            raise EditRefused([problem("malformed", {"kind": "intent", "intent": intent}, detail="unknown topic")])
        _check_version(data, "description", {"intent": intent}, request)
        after = " ".join(_text(request.get("after"), {"kind": "intent", "intent": intent}).split())
        return Edit("description", {"intent": intent}, data.current("description", {"intent": intent}), after)
    if kind == "answer":
        rid = request.get("response")
        item = {"kind": "answer", "response": rid}
        if not isinstance(rid, str) or rid not in data.responses:
            raise EditRefused([problem("malformed", item, detail="unknown answer")])
        _check_version(data, "answer", {"response": rid}, request)
        after = _answer_entry(request.get("after"), item, data.responses[rid])
        return Edit("answer", {"response": rid}, data.current("answer", {"response": rid}), after)
    if kind == "fact":
        name = request.get("fact")
        item = {"kind": "fact", "fact": name}
        if not isinstance(name, str) or not name:
            raise EditRefused([problem("malformed", item, detail="a service fact needs a name")])
        if not re.fullmatch(r"[a-z_][a-z0-9_]{0,63}", name):
            raise EditRefused([problem("bad_fact_name", item)])
        _check_version(data, "fact", {"fact": name}, request)
        after = _fact_entry(request.get("after"), item, data.facts.get(name))
        return Edit("fact", {"fact": name}, data.current("fact", {"fact": name}), after)
    if kind == "hours":
        channel = request.get("channel")
        item = {"kind": "hours", "channel": channel}
        if not isinstance(channel, str) or channel not in data.opening_hours or channel in NON_CHANNEL_KEYS:
            raise EditRefused([problem("malformed", item, detail="unknown channel")])
        _check_version(data, "hours", {"channel": channel}, request)
        days = request.get("after")
        if not isinstance(days, dict):
            raise EditRefused([problem("malformed", item, detail="hours must map weekdays to times")])
        after = {d: str(days[d]).strip() for d in checks.WEEKDAYS if str(days.get(d) or "").strip()}
        return Edit("hours", {"channel": channel}, data.current("hours", {"channel": channel}), after)
    raise EditRefused([problem("malformed", {}, detail=f"unknown kind of change {kind!r}")])


def _answer_entry(value: Any, item: dict, old: dict) -> dict[str, Any]:
    if not isinstance(value, dict) or not isinstance(value.get("text"), dict):
        raise EditRefused([problem("malformed", item, detail="an answer needs its texts")])
    entry = copy.deepcopy(old) if isinstance(old, dict) else {}
    entry["text"] = {lang: _text(value["text"].get(lang, ""), {**item, "language": lang}).strip()
                     for lang in LANGUAGES}
    replies = value.get("quick_replies") or []
    if not isinstance(replies, list):
        raise EditRefused([problem("malformed", item, detail="quick replies must be a list")])
    clean = []
    for index, reply in enumerate(replies):
        qitem = {"kind": "quick_reply", "response": item["response"], "index": index}
        if not isinstance(reply, dict) or not isinstance(reply.get("title"), dict):
            raise EditRefused([problem("malformed", qitem, detail="a quick reply needs payload and titles")])
        clean.append({"payload": _text(reply.get("payload"), qitem, "payload").strip(),
                      "title": {lang: _text(reply["title"].get(lang, ""), qitem).strip() for lang in LANGUAGES}})
    if clean:
        entry["quick_replies"] = clean
    else:
        entry.pop("quick_replies", None)
    return entry


def _fact_entry(value: Any, item: dict, old: Any) -> dict[str, Any]:
    if not isinstance(value, dict) or "value" not in value:
        raise EditRefused([problem("malformed", item, detail="a service fact needs a value")])
    entry = copy.deepcopy(old) if isinstance(old, dict) else {}
    raw = value["value"]
    if isinstance(raw, dict):
        entry["value"] = {lang: _text(raw.get(lang, ""), {**item, "language": lang}).strip() for lang in LANGUAGES}
    else:
        entry["value"] = _text(raw, item, "value").strip()
    if "checked" in value:
        checked = value["checked"]
        if checked in (None, ""):
            entry.pop("checked", None)
        else:
            entry["checked"] = _text(checked, {**item, "field": "checked"}, "checked").strip()
    for flag in ("placeholder", "example"):  # unfilled / an invented example: never shown to residents
        if flag in value:
            if value[flag]:
                entry[flag] = True
            else:
                entry.pop(flag, None)
    # Keep the files' own order: value, placeholder, checked.
    return {k: entry[k] for k in ("value", "placeholder", "checked") if k in entry} | {
        k: v for k, v in entry.items() if k not in ("value", "placeholder", "checked")}


def check_against(data: TrainingData, edits: list[Edit]) -> TrainingData:
    """The data with ``edits`` made, or EditRefused/EditConflict; ``data`` is not changed."""
    personal = [checks.personal_data(edit.after, {"kind": "example", **edit.key})
                for edit in edits if edit.kind == "example" and isinstance(edit.after, str)]
    if any(personal):
        # Every way an example gets in (the page, the inbox, an undo) ends here.
        raise EditRefused([p for p in personal if p is not None])
    changed = data.clone()
    for edit in edits:
        changed.apply(edit)
    added = checks.new_problems(data.problems(), changed.problems())
    if added:
        raise EditRefused(checks.about_edits(added, [e.key for e in edits]))
    try:
        changed.to_content()
    except ContentError as exc:
        try:
            data.to_content()
        except ContentError as old_exc:
            if str(old_exc) == str(exc):
                return changed  # broken before in the same way: not this edit's doing
        raise EditRefused([problem("content_invalid", {}, detail=str(exc))]) from None
    return changed


def write(changed: TrainingData) -> dict[Path, str]:
    """Write the changed files atomically; returns their previous text (to put back on failure)."""
    rendered = changed.render()
    previous = {}
    for path in rendered:
        previous[path] = path.read_text(encoding="utf-8") if path.exists() else ""
    for path, text in rendered.items():
        yamlfile.write_atomic(path, text)
    return previous


def restore(previous: dict[Path, str]) -> None:
    for path, text in previous.items():
        yamlfile.write_atomic(path, text)
