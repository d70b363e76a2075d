"""What is left to fill in service_facts.yml: the `facts` command, the server's
start-up log and the production check (POLKU_REQUIRE_CRISIS_FACTS)."""

from __future__ import annotations

import logging
from datetime import date
from typing import Any

from .content import STALE_AFTER_DAYS, Content


class CrisisFactsMissing(RuntimeError):
    """A fact on the crisis path is unfilled and the production setting requires them all."""


def needs_attention(content: Content, today: date | None = None) -> dict[str, list[dict[str, Any]]]:
    """The facts to fill (unfilled), to confirm (example, or partly verified) and to re-check (stale)."""
    rows = content.fact_report(today)
    return {
        "unfilled": [r for r in rows if r["status"] == "unfilled"],
        "example": [r for r in rows if r["status"] == "example"],
        "stale": [r for r in rows if r["stale"]],
        "partly_verified": [r for r in rows if r["status"] == "filled" and r["confidence"]],
    }


def report_lines(content: Content, today: date | None = None) -> list[str]:
    """Plain-text report, the facts needing attention first."""
    groups = needs_attention(content, today)
    lines = []
    titles = {
        "unfilled": "UNFILLED (never shown to residents; the sentence is left out or replaced)",
        "example": "EXAMPLE values (invented; never shown to residents until confirmed)",
        "stale": f"STALE (not checked in {STALE_AFTER_DAYS} days, or no date)",
        "partly_verified": "PARTLY VERIFIED (confirm on the source page)",
    }
    for key, title in titles.items():
        rows = groups[key]
        lines.append(f"{title}: {len(rows)}")
        for row in rows:
            flags = [row["scope"]]
            if row["crisis_path"]:
                flags.append("CRISIS PATH")
            if row["has_fallback"]:
                flags.append("has a safe sentence")
            checked = row["checked"] or "never"
            lines.append(f"  {row['name']:<34} {', '.join(flags):<40} checked {checked}")
    hours = content.hours
    if hours.example:
        lines.append("EXAMPLE opening hours: opening_hours has example: true (invented hours decide "
                     "whether the chat is open): confirm them and delete the line")
    closures = hours.closures(30)
    lines.append(f"Coming closures (30 days): {len(closures)}")
    for closure in closures:
        spans = ", ".join(f"{ch} {span or 'closed'}" for ch, span in closure.channels.items())
        lines.append(f"  {closure.day.isoformat()} {closure.reason or closure.kind}: {spans}")
    missing = content.unfilled_crisis_facts()
    lines.append("Crisis path: " + ("complete" if not missing else "UNFILLED " + ", ".join(missing)))
    return lines


def check_on_start(content: Content, require_crisis_facts: bool, log: logging.Logger) -> None:
    """Log what is left to fill; refuse (CrisisFactsMissing) when production requires the
    crisis path complete and it is not."""
    groups = needs_attention(content)
    missing = content.unfilled_crisis_facts()
    if groups["unfilled"] or groups["example"] or groups["stale"]:
        log.warning("service facts: %d unfilled (%s), %d example (%s), %d stale (%s); residents never see "
                    "them (python -m bot facts)",
                    len(groups["unfilled"]), ", ".join(r["name"] for r in groups["unfilled"]),
                    len(groups["example"]), ", ".join(r["name"] for r in groups["example"]),
                    len(groups["stale"]), ", ".join(r["name"] for r in groups["stale"]))
    if content.hours.example:
        log.warning("opening hours are marked example: true: confirm them in service_facts.yml")
    if missing:
        message = ("service facts on the crisis path are unfilled: " + ", ".join(missing)
                   + " (fill them in training_data/service_facts.yml)")
        if require_crisis_facts:
            raise CrisisFactsMissing(message + "; POLKU_REQUIRE_CRISIS_FACTS is on")
        log.warning("%s; the crisis answers use the general 112 sentences meanwhile", message)
