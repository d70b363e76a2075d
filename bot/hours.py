"""Opening hours that are true: the weekly hours, Finland's public holidays,
the area's own closed dates, and exceptions by date (shorter hours on the eve
of a holiday).

The machine-readable hours live in ``service_facts.yml`` under
``opening_hours``::

    opening_hours:
      timezone: Europe/Helsinki
      public_holidays: FI          # the `holidays` package's Finland; "" to ignore holidays
      chat:    {mon: "09:00-15:00", ...}   # a missing day is closed
      closed_dates:                # the area's own closures, "YYYY-MM-DD" or {date, reason}
        - {date: 2026-12-31, reason: "Uudenvuodenaatto"}
      exceptions:                  # other hours on a date, per channel ("" = closed that day)
        - {date: 2026-04-30, reason: "Vappuaatto", chat: "09:00-12:00", phone: "09:00-12:00"}

Precedence for a day: an exception for the channel, then the area's closed
dates, then public holidays, then the weekday. ``holidays`` knows Finland's
public holidays and the days everything is closed anyway (Midsummer Eve,
Christmas Eve); other eves are the area's exceptions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from typing import Any, Iterable
from zoneinfo import ZoneInfo

import holidays

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# Keys of the opening_hours block that are not a channel's weekly hours.
NON_CHANNEL_KEYS = frozenset({"timezone", "checked", "closed_dates", "exceptions", "public_holidays",
                              "holiday_language",
                              "status", "example", "source", "placeholder"})
DEFAULT_TIMEZONE = "Europe/Helsinki"
_SPAN = re.compile(r"([01]\d|2[0-3]):[0-5]\d-([01]\d|2[0-4]):[0-5]\d")
# How far ahead next_opening() looks for an open day (long holiday seasons included).
LOOKAHEAD_DAYS = 21


class HoursError(ValueError):
    """The opening_hours block cannot be used; the message names the item."""


@dataclass(frozen=True)
class Closure:
    """A coming day when a channel is closed or has other hours than usual."""
    day: date
    reason: str
    kind: str  # "public_holiday", "closed", "exception"
    channels: dict[str, str | None]  # channel -> "HH:MM-HH:MM", or None when closed

    def to_json(self) -> dict[str, Any]:
        return {"date": self.day.isoformat(), "weekday": WEEKDAYS[self.day.weekday()],
                "reason": self.reason, "kind": self.kind, "channels": dict(self.channels)}


def date_or_none(value: Any) -> date | None:
    """A date from YAML (a date, a datetime or "YYYY-MM-DD"), else None."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            return None
    return None


def _as_date(value: Any, where: str) -> date:
    day = date_or_none(value)
    if day is not None:
        return day
    raise HoursError(f"opening_hours.{where}: {value!r} is not a date (YYYY-MM-DD)")


def _span(value: Any, where: str) -> tuple[time, time] | None:
    """"HH:MM-HH:MM" -> (start, end); "" / None / "closed" -> None (closed)."""
    if value is None:
        return None
    text = str(value).strip().replace(" ", "")
    if text in ("", "closed", "-"):
        return None
    if not _SPAN.fullmatch(text):
        raise HoursError(f"opening_hours.{where}: {value!r} is not HH:MM-HH:MM")
    start_s, end_s = text.split("-")
    start = time.fromisoformat(start_s)
    end = time.max if end_s == "24:00" else time.fromisoformat(end_s)
    if end <= start:
        raise HoursError(f"opening_hours.{where}: {value!r} ends before it starts")
    return start, end


@lru_cache(maxsize=16)
def _country_holidays(country: str, year: int, language: str) -> dict[date, str]:
    try:
        return dict(holidays.country_holidays(country, years=year, language=language))
    except (NotImplementedError, KeyError, ValueError):  # a country or language it does not know
        return dict(holidays.country_holidays(country, years=year))


class OpeningHours:
    """When each channel (chat, phone, walk_in) is open, day by day."""

    def __init__(self, config: dict[str, Any] | None) -> None:
        config = config or {}
        self.config = config
        self.tz = ZoneInfo(str(config.get("timezone") or DEFAULT_TIMEZONE))
        country = config.get("public_holidays", "FI")
        self.country = str(country).strip() if country else ""
        # The holidays' names as the staff pages show them (the `holidays` package's fi, sv_FI, en_US).
        self.holiday_language = str(config.get("holiday_language") or "fi")
        self.example = bool(config.get("example")) or config.get("status") == "example"
        self.weekly: dict[str, dict[str, tuple[time, time] | None]] = {}
        for channel, days in config.items():
            if channel in NON_CHANNEL_KEYS or not isinstance(days, dict):
                continue
            self.weekly[channel] = {}
            for day, span in days.items():
                if day not in WEEKDAYS:
                    raise HoursError(f"opening_hours.{channel}: unknown weekday {day!r}")
                self.weekly[channel][day] = _span(span, f"{channel}.{day}")
        self.closed: dict[date, str] = {}
        for i, item in enumerate(config.get("closed_dates") or []):
            if isinstance(item, dict):
                self.closed[_as_date(item.get("date"), f"closed_dates[{i}]")] = str(item.get("reason") or "")
            else:
                self.closed[_as_date(item, f"closed_dates[{i}]")] = ""
        self.exceptions: dict[date, tuple[str, dict[str, tuple[time, time] | None]]] = {}
        for i, item in enumerate(config.get("exceptions") or []):
            if not isinstance(item, dict):
                raise HoursError(f"opening_hours.exceptions[{i}]: needs date and the channels' hours")
            day = _as_date(item.get("date"), f"exceptions[{i}].date")
            spans = {ch: _span(item[ch], f"exceptions[{i}].{ch}") for ch in item if ch not in ("date", "reason")}
            self.exceptions[day] = (str(item.get("reason") or ""), spans)

    # -- one day -------------------------------------------------------------------
    def public_holiday(self, day: date) -> str | None:
        if not self.country:
            return None
        return _country_holidays(self.country, day.year, self.holiday_language).get(day)

    def span(self, channel: str, day: date) -> tuple[time, time] | None:
        """The channel's hours on ``day`` (local date), or None when it is closed all day."""
        exception = self.exceptions.get(day)
        if exception is not None and channel in exception[1]:
            return exception[1][channel]
        if day in self.closed or self.public_holiday(day) is not None:
            return None
        return self.weekly.get(channel, {}).get(WEEKDAYS[day.weekday()])

    def local(self, now: datetime | None = None) -> datetime:
        if now is None:
            return datetime.now(self.tz)
        if now.tzinfo is None:
            raise ValueError("a naive datetime: give the time zone")
        return now.astimezone(self.tz)

    def is_open(self, channel: str = "chat", now: datetime | None = None) -> bool:
        local = self.local(now)
        span = self.span(channel, local.date())
        return span is not None and span[0] <= local.time().replace(tzinfo=None) < span[1]

    def closes_at(self, channel: str = "chat", now: datetime | None = None) -> datetime | None:
        """When the channel closes today, if it is open now."""
        local = self.local(now)
        if not self.is_open(channel, local):
            return None
        span = self.span(channel, local.date())
        assert span is not None
        return datetime.combine(local.date(), span[1], self.tz)

    def next_opening(self, channel: str = "chat", now: datetime | None = None) -> datetime | None:
        """The next time the channel opens after ``now`` (None within LOOKAHEAD_DAYS: none)."""
        local = self.local(now)
        for offset in range(LOOKAHEAD_DAYS + 1):
            day = local.date() + timedelta(days=offset)
            span = self.span(channel, day)
            if span is None:
                continue
            start = datetime.combine(day, span[0], self.tz)
            if start > local:
                return start
        return None

    def opens_later_today(self, channel: str = "chat", now: datetime | None = None) -> bool:
        opening = self.next_opening(channel, now)
        return opening is not None and opening.date() == self.local(now).date()

    # -- coming closures -------------------------------------------------------------
    def closures(self, days: int = 30, now: datetime | None = None,
                 channels: Iterable[str] | None = None) -> list[Closure]:
        """Days in the next ``days`` (today included) when a channel that is normally
        open that weekday is closed, or has other hours (exceptions)."""
        channels = tuple(channels or self.weekly)
        today = self.local(now).date()
        out: list[Closure] = []
        for offset in range(days):
            day = today + timedelta(days=offset)
            weekday = WEEKDAYS[day.weekday()]
            exception = self.exceptions.get(day)
            if exception is not None:
                reason, spans = exception
                shown = {ch: _text(spans[ch]) for ch in channels if ch in spans}
                if shown:
                    out.append(Closure(day, reason, "exception", shown))
                    continue
            normally = [ch for ch in channels if self.weekly.get(ch, {}).get(weekday)]
            if not normally:
                continue
            if day in self.closed:
                out.append(Closure(day, self.closed[day], "closed", {ch: None for ch in normally}))
                continue
            holiday = self.public_holiday(day)
            if holiday is not None:
                out.append(Closure(day, holiday, "public_holiday", {ch: None for ch in normally}))
        return out


def _text(span: tuple[time, time] | None) -> str | None:
    if span is None:
        return None
    end = "24:00" if span[1] == time.max else span[1].strftime("%H:%M")
    return f"{span[0].strftime('%H:%M')}-{end}"
