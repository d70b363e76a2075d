"""What the content page shows of the training data: every intent, answer,
fact and channel's hours with their help texts and versions, the facts to
check first, the coming closed days, and every current problem (no YAML)."""

from __future__ import annotations

from typing import Any

from bot.content import CONTRACT_INTENTS, RUNTIME_PLACEHOLDERS, ContentError
from bot.types import LANGUAGES

from .checks import PAYLOAD_TARGETS
from .edit_requests import versions
from .editing import TrainingData


def content_view(data: TrainingData, version: int) -> dict[str, Any]:
    """The training data as the page shows it (no YAML), with every current problem."""
    responses_help = _response_help(data.responses_text)
    fact_help = _fact_help(data.facts_text)
    return {
        "intents": [{"id": name, "description": data.intents[name].get("description") or "",
                     "examples": {lang: data.examples(name, lang) for lang in LANGUAGES},
                     "contract": name in CONTRACT_INTENTS}
                    for name in sorted(data.intents, key=_intent_order)],
        "responses": {rid: {**entry, "help": responses_help.get(rid, ""),
                            "group": "intent" if rid in data.intents else "system"}
                      for rid, entry in data.responses.items()},
        "facts": {name: {**(entry if isinstance(entry, dict) else {"value": entry}),
                         "help": fact_help.get(name, "")}
                  for name, entry in data.facts.items()},
        "hours": {k: v for k, v in data.opening_hours.items() if isinstance(v, dict)},
        # Facts to fill, confirm or re-check first; the coming closed days (holidays, the area's own).
        **_facts_attention(data),
        "placeholders": sorted(set(data.facts) | RUNTIME_PLACEHOLDERS),
        "payload_targets": sorted(PAYLOAD_TARGETS, key=_intent_order),
        "problems": [p.to_json() for p in data.problems()],
        "version": version,
        # Sent back with each edit of an item (edit_requests.item_version): an item
        # changed since the page loaded it is not overwritten.
        "versions": versions(data),
    }


def _facts_attention(data: TrainingData) -> dict[str, Any]:
    try:
        content = data.to_content()
        report = content.fact_report()
        closures = [c.to_json() for c in content.hours.closures(30)]
        example_hours = content.hours.example
        crisis = content.unfilled_crisis_facts()
    except (ContentError, ValueError):  # the page lists the problems; the report waits for a valid file
        report, closures, example_hours, crisis = [], [], False, []
    return {"fact_report": report, "closures": closures, "example_hours": example_hours,
            "unfilled_crisis_facts": crisis}


def _intent_order(name: str) -> tuple[int, str]:
    return (CONTRACT_INTENTS.index(name) if name in CONTRACT_INTENTS else len(CONTRACT_INTENTS), name)


def _response_help(text: str) -> dict[str, str]:
    """The comment lines right above each answer in responses.yml (what it is for)."""
    out: dict[str, str] = {}
    comments: list[str] = []
    for line in text.splitlines():
        if line.startswith("#"):
            comments.append(line.lstrip("#").strip())
            continue
        if comments and line[:1].isalpha() and line.rstrip().endswith(":"):
            if not any(c and set(c) <= set("=-") for c in comments):  # not a section banner
                out[line.rstrip()[:-1]] = " ".join(c for c in comments if c)
        comments = []
    return out


def _fact_help(text: str) -> dict[str, str]:
    """The comments inside each fact's block in service_facts.yml."""
    out: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        if line.startswith("  ") and not line.startswith("   ") and line.rstrip().endswith(":") \
                and not line.strip().startswith("#"):
            current = line.strip()[:-1]
        elif current and line.startswith("    #"):
            out.setdefault(current, []).append(line.strip().lstrip("#").strip())
        elif line and not line.startswith(" "):
            current = None
    return {k: " ".join(v) for k, v in out.items()}
