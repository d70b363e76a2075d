"""The admin page's edit requests, checked and turned into edits
(``check_edit``), and the versions of the items the page replaces whole: an
item changed since the page loaded it is not overwritten."""

from __future__ import annotations

import copy
import hashlib
import json
import re
from typing import Any

from bot.hours import NON_CHANNEL_KEYS
from bot.types import LANGUAGES

from ..errors import EditRefused
from . import checks
from .checks import problem
from .editing import Edit, TrainingData, stale


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
        raise stale(f"{kind} {where} was changed after the page loaded it" if sent is not None
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
