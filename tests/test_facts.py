"""Service facts never reach a resident unfilled, and opening hours that are true
(issue 15 items 2 and 3). Pure logic on the shipped training data."""

import copy
import re
from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings, strategies as st

from bot.content import FILL_IN_MARKS as MARKERS, Content, ContentError
from bot.hours import OpeningHours
from bot.settings import PROJECT_ROOT
from bot.types import LANGUAGES

DATA = PROJECT_ROOT / "training_data"
TZ = ZoneInfo("Europe/Helsinki")
RUNTIME = {"position": 3, "wait_minutes": 7, "counsellor_name": "Aino"}
_SHIPPED = Content.load(DATA)


@pytest.fixture(scope="module")
def content():
    return _SHIPPED


def _copy(content: Content) -> Content:
    return Content(content.intents, copy.deepcopy(content.responses), copy.deepcopy(content.facts),
                   copy.deepcopy(content.opening_hours), content.directory, content.lexicon,
                   fact_entries=copy.deepcopy(content.fact_entries))


def test_every_answer_in_every_language_renders_without_a_placeholder(content):
    rendered = 0
    for rid in content.responses:
        for lang in LANGUAGES:
            text = content.reply(rid, lang, **RUNTIME).text
            assert text.strip(), f"{rid} ({lang}) renders empty with the shipped facts"
            lowered = text.lower()
            found = [m for m in MARKERS if m in lowered]
            assert not found, f"{rid} ({lang}) shows {found}: {text}"
            rendered += 1
    assert rendered >= 3 * 40


def test_shipped_facts_fill_the_national_ones_and_mark_the_area_ones(content):
    filled = {name for name in content.facts if content.fact_status(name) == "filled"}
    for name in ("emergency_number", "crisis_helpline_phone_fi", "crisis_helpline_hours_fi",
                 "crisis_helpline_phone_sv", "crisis_helpline_phone_en", "nollalinja_phone"):
        assert name in filled
        entry = content.fact_entries[name]
        assert entry.get("source") and entry.get("checked"), name
    assert content.fact("crisis_helpline_phone", "fi") == "09 2525 0111"
    assert content.fact("crisis_helpline_phone", "sv") == "09 2525 0112"
    assert content.fact("emergency_number", "en") == "112"
    # Area facts not filled are marked, and so are invented examples.
    for name in ("polku_phone", "emergency_social_services_phone", "polku_address"):
        assert content.fact_status(name) == "unfilled"
        assert content.fact_entries[name].get("scope") == "area"
    assert content.fact_status("polku_chat_hours") == "example"
    # Every fact says where it applies and when it was checked.
    for name, entry in content.fact_entries.items():
        assert entry.get("scope") in ("national", "area"), name
        assert entry.get("checked"), name


def test_a_sentence_needing_an_unfilled_fact_is_left_out(content):
    c = _copy(content)
    c.facts["polku_phone"] = "03 123 4567"
    del c.fact_entries["polku_phone"]["placeholder"]
    assert "03 123 4567" in c.reply("become_client", "fi").text
    c.fact_entries["polku_phone"]["placeholder"] = True
    text = c.reply("become_client", "fi").text
    assert "03 123 4567" not in text
    # The sentence goes; the fact's safe sentence takes its place; the others stay.
    assert "Polun yhteystiedot löydät hyvinvointialueen verkkosivuilta." in text
    assert "Päätökset tekevät hyvinvointialueen sosiaalipalvelut." in text


def test_an_unfilled_crisis_fact_is_replaced_by_the_safe_112_sentence(content):
    c = _copy(content)
    for lang in LANGUAGES:
        text = c.reply("handoff_crisis_unavailable", lang).text
        assert "112" in text
        assert "[" not in text
    fi = c.reply("handoff_crisis_unavailable", "fi").text
    assert "Sosiaalipäivystykseen saat yhteyden ympäri vuorokauden hätänumeron 112 kautta." in fi
    # Filled, the area's number is shown instead of the general sentence.
    c.facts["emergency_social_services_phone"] = "044 000 0000"
    del c.fact_entries["emergency_social_services_phone"]["placeholder"]
    fi = c.reply("handoff_crisis_unavailable", "fi").text
    assert "044 000 0000" in fi and "hätänumeron 112 kautta" not in fi


def test_a_value_with_a_fill_in_mark_is_never_shown_even_unflagged(content):
    c = _copy(content)
    c.facts["crisis_helpline_phone_fi"] = "[numero – täydennä]"
    c.fact_entries["crisis_helpline_phone_fi"] = {"scope": "national"}
    text = c.reply("crisis", "fi").text
    assert "täydennä" not in text and "[" not in text
    assert "crisis_helpline_phone_fi" in c.unfilled_crisis_facts()


def test_a_parenthesis_holding_only_an_unfilled_fact_goes_and_the_sentence_stays(content):
    text = content.reply("unemployment", "en").text
    assert text.startswith("Register as a jobseeker with your municipality's employment services on your first day")


def test_language_facts_are_separate_and_each_language_gets_its_own(content):
    sv = content.reply("crisis", "sv").text
    en = content.reply("crisis", "en").text
    assert "09 2525 0112" in sv and "09 2525 0111" in sv  # hours unfilled: the Finnish 24/7 line too
    assert "09 2525 0116" in en
    assert "09 2525 0112" not in en
    report = {row["name"]: row for row in content.fact_report()}
    assert report["crisis_helpline_hours_sv"]["status"] == "unfilled"
    assert report["crisis_helpline_hours_fi"]["status"] == "filled"


def test_fact_report_lists_unfilled_then_examples_then_stale(content):
    rows = content.fact_report(today=date(2026, 12, 5))
    order = [row["status"] for row in rows]
    assert order == sorted(order, key=["unfilled", "example", "filled"].index)
    assert rows[0]["status"] == "unfilled"
    later = {row["name"]: row for row in content.fact_report(today=date(2027, 12, 5))}
    assert later["emergency_number"]["stale"] is True
    now = {row["name"]: row for row in rows}
    assert now["emergency_number"]["stale"] is False
    assert now["emergency_social_services_phone"]["crisis_path"] is True
    assert now["crisis_helpline_hours_sv"]["crisis_path"] is False  # crisis_path: false, safe sentence


def test_unfilled_crisis_facts_are_the_area_emergency_number(content):
    assert content.unfilled_crisis_facts() == ["emergency_social_services_phone"]


def test_an_answer_fallback_must_exist_in_every_language(content):
    c = _copy(content)
    c.responses["thanks"]["fallbacks"] = {"polku_phone": {"fi": "Hei."}}
    with pytest.raises(ContentError, match="fallbacks.polku_phone needs a sentence in fi, sv and en"):
        c.validate()


@settings(max_examples=150, deadline=None)
@given(st.sets(st.sampled_from(sorted(_SHIPPED.facts)), max_size=12))
def test_any_set_of_unfilled_facts_never_shows_a_mark(unfilled):
    """Whichever facts are unfilled, no mark shows, and no unfilled number or address."""
    c = _copy(_SHIPPED)
    for name in unfilled:
        c.fact_entries[name]["placeholder"] = True
    for rid in ("crisis", "handoff_crisis_unavailable", "counsellors_unavailable", "income_support_basic",
                "polku_contact", "mental_health", "goodbye"):
        for lang in LANGUAGES:
            text = c.reply(rid, lang, **RUNTIME).text
            assert not any(m in text.lower() for m in MARKERS), (rid, lang, text)
            for name in unfilled:
                value = c.fact(name, lang)
                if any(ch.isdigit() for ch in value) or "http" in value:  # numbers, addresses
                    assert not re.search(rf"(?<![\d/]){re.escape(value)}(?![\w/])", text), (rid, lang, name)


# --- hours -----------------------------------------------------------------------------------


def test_public_holidays_are_closed(content):
    hours = content.hours
    assert hours.is_open("chat", datetime(2026, 12, 23, 10, 0, tzinfo=TZ))  # a Wednesday
    assert not hours.is_open("chat", datetime(2026, 12, 24, 10, 0, tzinfo=TZ))  # Christmas Eve, Thursday
    assert not hours.is_open("chat", datetime(2026, 12, 25, 10, 0, tzinfo=TZ))
    assert not hours.is_open("chat", datetime(2027, 12, 6, 10, 0, tzinfo=TZ))  # Independence Day, Monday
    assert not hours.is_open("chat", datetime(2026, 12, 6, 10, 0, tzinfo=TZ))  # ... a Sunday in 2026
    assert not content.is_open("phone", datetime(2027, 1, 6, 10, 0, tzinfo=TZ))  # Epiphany, Wednesday
    assert not content.is_open("chat", datetime(2026, 12, 24, 10, 0, tzinfo=TZ))


def test_closed_dates_and_exceptions_count():
    config = {"timezone": "Europe/Helsinki", "public_holidays": "FI",
              "chat": {d: "09:00-15:00" for d in ("mon", "tue", "wed", "thu", "fri")},
              "phone": {d: "09:00-15:00" for d in ("mon", "tue", "wed", "thu", "fri")},
              "closed_dates": ["2026-12-28", {"date": "2026-12-29", "reason": "Koulutus"}],
              "exceptions": [{"date": "2026-12-31", "reason": "Uudenvuodenaatto", "chat": "09:00-12:00",
                              "phone": ""},
                             {"date": "2026-12-26", "reason": "Päivystys", "chat": "10:00-12:00"}]}
    hours = OpeningHours(config)
    assert not hours.is_open("chat", datetime(2026, 12, 28, 10, 0, tzinfo=TZ))
    assert not hours.is_open("chat", datetime(2026, 12, 29, 10, 0, tzinfo=TZ))
    assert hours.is_open("chat", datetime(2026, 12, 30, 10, 0, tzinfo=TZ))
    assert hours.is_open("chat", datetime(2026, 12, 31, 11, 59, tzinfo=TZ))
    assert not hours.is_open("chat", datetime(2026, 12, 31, 12, 0, tzinfo=TZ))
    assert not hours.is_open("phone", datetime(2026, 12, 31, 10, 0, tzinfo=TZ))
    assert hours.is_open("chat", datetime(2026, 12, 26, 11, 0, tzinfo=TZ))  # an exception wins over a holiday
    assert hours.closes_at("chat", datetime(2026, 12, 31, 10, 0, tzinfo=TZ)) == datetime(2026, 12, 31, 12, 0, tzinfo=TZ)
    # Friday 2026-12-18 at 16:00: next opening is Monday 21st 09:00.
    assert hours.next_opening("chat", datetime(2026, 12, 18, 16, 0, tzinfo=TZ)) == datetime(2026, 12, 21, 9, 0, tzinfo=TZ)
    # Before Christmas: next opening skips 24.-29.12 (holidays, weekend, closed dates).
    assert hours.next_opening("chat", datetime(2026, 12, 23, 16, 0, tzinfo=TZ)) == datetime(2026, 12, 26, 10, 0, tzinfo=TZ)
    closures = hours.closures(14, datetime(2026, 12, 20, 8, 0, tzinfo=TZ))
    by_day = {c.day.isoformat(): c for c in closures}
    assert by_day["2026-12-24"].kind == "public_holiday" and by_day["2026-12-24"].channels == {"chat": None, "phone": None}
    assert by_day["2026-12-25"].kind == "public_holiday"
    assert by_day["2026-12-28"].kind == "closed"
    assert by_day["2026-12-29"].reason == "Koulutus"
    assert by_day["2026-12-31"].kind == "exception" and by_day["2026-12-31"].channels == {"chat": "09:00-12:00", "phone": None}
    assert "2026-12-23" not in by_day and "2026-12-27" not in by_day  # open day; Sunday is closed anyway
    assert by_day["2027-01-01"].kind == "public_holiday"


def test_public_holidays_can_be_turned_off_and_bad_hours_are_refused():
    weekdays = {d: "09:00-15:00" for d in ("mon", "tue", "wed", "thu", "fri")}
    assert OpeningHours({"public_holidays": "", "chat": weekdays}).is_open(
        "chat", datetime(2026, 12, 24, 10, 0, tzinfo=TZ))
    with pytest.raises(ValueError, match="exceptions"):
        OpeningHours({"chat": weekdays, "exceptions": [{"date": "2026-12-31", "chat": "9-12"}]})
    with pytest.raises(ValueError, match="closed_dates"):
        OpeningHours({"chat": weekdays, "closed_dates": ["31.12.2026"]})


# --- the facts command and the start-up check ---------------------------------------------------


def test_start_up_check_logs_and_production_refuses_an_incomplete_crisis_path(content, caplog):
    import logging

    from bot.facts import CrisisFactsMissing, check_on_start

    log = logging.getLogger("test.facts")
    with caplog.at_level(logging.WARNING, logger="test.facts"):
        check_on_start(content, False, log)
    text = caplog.text
    assert "polku_phone" in text and "polku_chat_hours" in text and "emergency_social_services_phone" in text
    with pytest.raises(CrisisFactsMissing, match="emergency_social_services_phone"):
        check_on_start(content, True, log)
    filled = _copy(content)
    filled.facts["emergency_social_services_phone"] = "044 000 0000"
    del filled.fact_entries["emergency_social_services_phone"]["placeholder"]
    check_on_start(filled, True, log)  # complete: starts


def test_facts_command_lists_what_is_left(capsys):
    import json

    from bot.__main__ import main

    assert main(["facts"]) == 1  # the crisis path is not complete in the seed
    out = capsys.readouterr().out
    assert out.index("UNFILLED") < out.index("EXAMPLE") < out.index("STALE")
    assert "polku_phone" in out and "Crisis path: UNFILLED emergency_social_services_phone" in out
    assert main(["facts", "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert "polku_phone" in {row["name"] for row in data["unfilled"]}
    assert {row["name"] for row in data["example"]} >= {"polku_chat_hours", "polku_phone_hours"}
    assert data["unfilled_crisis_path"] == ["emergency_social_services_phone"]
    assert data["example_opening_hours"] is True


def test_server_refuses_to_start_in_production_with_an_unfilled_crisis_fact(tmp_path):
    import asyncio
    import contextlib

    import socketio

    from bot.facts import CrisisFactsMissing
    from bot.settings import Settings
    from chat_server.app import ChatServer

    settings = Settings(environ={}, POLKU_DATA_DIR=str(tmp_path), POLKU_REQUIRE_CRISIS_FACTS=True,
                        POLKU_RASA_URL="http://127.0.0.1:9")
    server = ChatServer(settings, socketio.AsyncServer(async_mode="aiohttp"))

    async def start():
        try:
            await server.start()
        finally:
            with contextlib.suppress(Exception):
                await server.stop()

    with pytest.raises(CrisisFactsMissing):
        asyncio.run(start())
