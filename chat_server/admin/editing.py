"""Editing the training data from the admin page.

An edit is a *replacement* of one slot: one example of an intent in one
language, an intent's description, one answer, one service fact, one
channel's opening hours. It carries what the slot held before and what it
holds after, which makes every edit recordable and undoable the same way:
undo is the replacement the other way round, allowed while the slot still
holds what the edit put there.

``check_against`` validates edits against the whole data set (they must add
no problem); ``write`` writes the YAML files atomically. The page's requests
become edits in ``edit_requests``; ``changes`` records them and reloads the
running bot.
"""

from __future__ import annotations

import copy
import fcntl
import logging
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from bot.content import Content, ContentError, IntentData, split_fact_entries
from bot.types import LANGUAGES

from .. import i18n
from ..errors import EditConflict, EditRefused
from . import checks, yamlfile
from .checks import Problem, problem

log = logging.getLogger(__name__)

LOCK_FILE = ".admin-edit.lock"


def stale(detail: str) -> EditConflict:
    """The slot no longer holds what an edit expects; the admin is told to reload the page."""
    return EditConflict(detail, i18n.by_key("admin")["stale_item"])


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
            raise stale(f"{kind} {edit.target} was changed meanwhile")
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
            raise stale(f"example {before!r} is no longer in {intent} ({language})") from None
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
