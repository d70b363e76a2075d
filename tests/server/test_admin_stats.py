"""Statistics from known conversations (on both backends), CSV without
personal data, retention that deletes old conversations but keeps their
counts, and one conversation's export and deletion on request."""

from __future__ import annotations

import csv
import io
import re
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from chat_server.admin.statistics import MEASURES
from chat_server.store.models import utcnow

from .admin_support import AdminClient, admin_of, create_staff, seed_conversation

HELSINKI = ZoneInfo("Europe/Helsinki")
PERIOD = "from=2026-11-10&to=2026-11-11"
SECRET_TEXTS = ("Matti Meikäläinen", "0401234567", "131052-308T", "Kotikatu 5")


def at(day: int, hh: int, mm: int = 0, secs: int = 0) -> datetime:
    """A Helsinki wall-clock time in November 2026, as UTC."""
    return (datetime(2026, 11, day, hh, mm, tzinfo=HELSINKI) + timedelta(seconds=secs)).astimezone(timezone.utc)


@pytest.fixture
async def server(launch, backend_settings):
    return await launch(backend_settings)


@pytest.fixture
async def admin(server):
    client = await AdminClient.sign_in(server)
    yield client
    await client.close()


async def seed_known(server) -> dict[str, int]:
    """Five counted conversations over two local days, one empty and one outside the period."""
    staff = await create_staff(server, "counsellor")
    secret = " ".join(SECRET_TEXTS)
    ids = {
        "a": await seed_conversation(server, created_at=at(10, 8, 30), language="fi", topic="income_support_basic",
                                     resident_texts=(f"olen {secret}",)),
        "b": await seed_conversation(server, created_at=at(10, 23, 30), language="sv", topic="housing_problem", moves=(
            ("bot", "queued", "requested", at(10, 23, 31)), ("queued", "counsellor", None, at(10, 23, 33)),
            ("counsellor", "closed", "done", at(10, 23, 50)))),
        # 00:15 in Helsinki is still the 10th in UTC: it counts on the 11th.
        "c": await seed_conversation(server, created_at=at(11, 0, 15), language="en", topic=None, moves=(
            ("bot", "queued", "crisis", at(11, 0, 16)), ("queued", "counsellor", None, at(11, 0, 26)),
            ("counsellor", "closed", "done", at(11, 0, 50)))),
        "d": await seed_conversation(server, created_at=at(11, 10, 0), language="fi", topic="debt_counselling", moves=(
            ("bot", "queued", "fallback", at(11, 10, 1)), ("queued", "bot", "left_queue", at(11, 10, 4)))),
        "e": await seed_conversation(server, created_at=at(11, 10, 5), resident_texts=()),
        "g": await seed_conversation(server, created_at=at(11, 11, 0), language="fi", topic="income_support_basic", moves=(
            ("bot", "queued", "requested", at(11, 11, 0)), ("queued", "counsellor", None, at(11, 11, 1)),
            ("counsellor", "queued", "put_back", at(11, 11, 10)), ("queued", "counsellor", None, at(11, 11, 15)),
            ("counsellor", "closed", "done", at(11, 11, 30)))),
        "outside": await seed_conversation(server, created_at=at(12, 9, 0)),
    }
    await server.sql(
        "INSERT INTO callback_requests (conversation_id, status, name, phone, preferred_time, topic, language,"
        " consent_at, created_at) VALUES (:cid, 'open', :name, :phone, 'aamulla', 'debt_counselling', 'fi', :t, :t)",
        cid=ids["d"], name=SECRET_TEXTS[0], phone=SECRET_TEXTS[1], t=at(11, 10, 3))
    for cid, tag, label in ((ids["b"], "housing_problem", None), (ids["g"], "other", secret)):
        await server.sql("INSERT INTO conversation_tags (conversation_id, tag, label, staff_id, created_at)"
                         " VALUES (:cid, :tag, :label, :staff, :t)",
                         cid=cid, tag=tag, label=label, staff=staff.id, t=at(11, 12, 0))
    return ids


EXPECTED = {
    "conversations": [["2026-11-10", 2], ["2026-11-11", 3]],
    "conversations_by_topic": [["income_support_basic", 2], ["debt_counselling", 1], ["housing_problem", 1],
                               ["none", 1]],
    "conversations_by_language": [["fi", 3], ["en", 1], ["sv", 1]],
    "answered_by_bot": [["handoff", 4], ["bot", 1]],
    "handoffs_by_reason": [["requested", 2], ["crisis", 1], ["fallback", 1]],
    "queue_outcomes": [["counsellor", 4], ["left", 1]],
    "queue_wait_secs": [["0-1", 0], ["1-2", 1], ["2-5", 1], ["5-10", 1], ["10-20", 1], ["20-30", 0], ["30+", 0]],
    "callback_requests": [["2026-11-10", 0], ["2026-11-11", 1]],
    "counsellor_tags": [["housing_problem", 1], ["other", 1]],
}


def check_known(report: dict) -> None:
    measures = report["measures"]
    for measure, rows in EXPECTED.items():
        assert measures[measure]["rows"] == rows, measure
    hours = dict(measures["conversations_by_hour"]["rows"])
    assert {h: n for h, n in hours.items() if n} == {"00": 1, "08": 1, "10": 1, "11": 1, "23": 1}
    assert measures["answered_by_bot"]["share_bot"] == 0.2
    # Waits 60, 120, 300 and 600 s (nearest rank): median 120, 90th percentile 600.
    waits = measures["queue_wait_secs"]
    assert (waits["answered"], waits["median_secs"], waits["p90_secs"]) == (4, 120, 600)


async def test_statistics_from_known_conversations(server, admin):
    await seed_known(server)
    report = await admin.get(f"/admin/api/stats?{PERIOD}")
    assert (report["from"], report["to"]) == ("2026-11-10", "2026-11-11")
    check_known(report)


async def test_csv_has_counts_and_no_personal_data(server, admin):
    ids = await seed_known(server)
    session_hashes = [row[0] for row in await server.sql("SELECT session_hash FROM conversations")]
    allowed_key = re.compile(r"\d{4}-\d\d-\d\d|\d\d|[a-z_]+|\d+-\d+|30\+")
    for measure in MEASURES:
        text = await admin.get(f"/admin/api/stats/{measure}.csv?{PERIOD}")
        for secret in (*SECRET_TEXTS, "olen", *session_hashes):
            assert secret not in text, (measure, secret)
        rows = list(csv.reader(io.StringIO(text)))
        assert rows[0][1] in ("count", "seconds") or rows[0] == ["wait_minutes", "count"]
        for row in rows[1:]:
            if not row or row[0] in ("statistic", "median", "p90"):
                continue
            key, count = row
            assert allowed_key.fullmatch(key), (measure, key)
            assert count.isdigit()
            assert key not in {str(i) for i in ids.values()} or measure == "conversations_by_hour"
    response = await admin.http.get(f"{server.url}/admin/api/stats/conversations.csv?{PERIOD}")
    assert response.headers["Content-Type"].startswith("text/csv")
    assert 'filename="polku-conversations-2026-11-10-2026-11-11.csv"' in response.headers["Content-Disposition"]
    waits = await admin.get(f"/admin/api/stats/queue_wait_secs.csv?{PERIOD}")
    assert "median,120" in waits and "p90,600" in waits


async def test_retention_deletes_old_conversations_and_keeps_their_counts(server, admin):
    await seed_known(server)
    before = await admin.get(f"/admin/api/stats?{PERIOD}")
    retention = admin_of(server).retention
    deleted = await retention.run(now=at(11, 12) + timedelta(days=retention.days, hours=1))
    assert deleted == 6  # every conversation of the 10th and 11th (the 12th's is younger)
    assert await server.sql("SELECT count(*) FROM conversations") == [(1,)]
    assert await server.count("messages") == 2  # the 12th's
    assert await server.count("handoff_transitions") == 0
    assert await server.count("callback_requests") == 0  # contact details went with the conversation
    assert await server.count("conversation_tags") == 0
    assert await server.count("stats_daily") > 0
    after = await admin.get(f"/admin/api/stats?{PERIOD}")
    check_known(after)
    assert after == before
    # A second run finds nothing, and no figure is counted twice.
    assert await retention.run(now=at(11, 12) + timedelta(days=retention.days, hours=1)) == 0
    assert await admin.get(f"/admin/api/stats?{PERIOD}") == before


async def test_retention_from_the_page_keeps_recent_and_active_conversations(server, admin):
    now = utcnow()
    old = await seed_conversation(server, created_at=now - timedelta(days=120),
                                  last_activity_at=now - timedelta(days=100))
    old_queued = await seed_conversation(server, created_at=now - timedelta(days=120),
                                         last_activity_at=now - timedelta(days=100),
                                         moves=(("bot", "queued", "requested", now - timedelta(days=100)),))
    recent = await seed_conversation(server, created_at=now - timedelta(days=120),
                                     last_activity_at=now - timedelta(days=5))
    result = await admin.post("/admin/api/retention/run")
    assert result["deleted"] == 1 and result["days"] == 90
    assert result["last_run"]["deleted"] == 1 and result["last_run"]["trigger"] == "admin"
    remaining = {row[0] for row in await server.sql("SELECT id FROM conversations")}
    assert remaining == {old_queued, recent} and old not in remaining
    day = (now - timedelta(days=120)).astimezone(HELSINKI).date().isoformat()
    stats = await admin.get(f"/admin/api/stats?from={day}&to={day}")
    assert dict(stats["measures"]["conversations"]["rows"])[day] == 3  # deleted one in aggregate + two live
    audit = await server.sql("SELECT action, detail FROM audit_log WHERE action = 'retention_run'")
    assert audit == [("retention_run", "1 conversations deleted")]


async def test_one_conversation_exported_and_deleted_on_request(server, admin):
    ids = await seed_known(server)
    cid = ids["d"]
    exported = await admin.get(f"/admin/api/conversations/{cid}/export")
    assert exported["conversation"]["id"] == cid
    assert [m["sender"] for m in exported["messages"]] == ["resident", "bot"]
    assert [(t["from"], t["to"]) for t in exported["handoff_transitions"]] == [("bot", "queued"), ("queued", "bot")]
    assert exported["callback_requests"][0]["phone"] == SECRET_TEXTS[1]
    before = await admin.get(f"/admin/api/stats?{PERIOD}")

    await admin.delete(f"/admin/api/conversations/{cid}")
    assert await server.sql("SELECT id FROM conversations WHERE id = :cid", cid=cid) == []
    assert await server.sql("SELECT count(*) FROM messages WHERE conversation_id = :cid", cid=cid) == [(0,)]
    assert await server.count("callback_requests") == 0
    assert await admin.get(f"/admin/api/stats?{PERIOD}") == before  # counted in aggregate now
    await admin.get(f"/admin/api/conversations/{cid}/export", expect=404)
    await admin.delete(f"/admin/api/conversations/{cid}", expect=404)

    queued = await seed_conversation(server, created_at=utcnow(),
                                     moves=(("bot", "queued", "requested", utcnow()),))
    refused = await admin.delete(f"/admin/api/conversations/{queued}", expect=409)
    assert refused["error"] == "conversation_active"
    audit = await server.sql("SELECT action, conversation_id FROM audit_log WHERE conversation_id IS NOT NULL"
                             " ORDER BY id")
    assert audit == [("conversation_exported", cid), ("conversation_deleted", cid)]
