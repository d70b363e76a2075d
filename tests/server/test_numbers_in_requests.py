"""Numbers in URLs, query strings and JSON keys are ASCII digits only.

``"²".isdigit()`` is true but ``int("²")`` fails, and ``int`` itself takes
full-width and Arabic-Indic digits, spaces, "+" and "_": each of those in an
id once made a 500 (or was read as another number). Now they get a clear 400
and change nothing."""

from __future__ import annotations

from datetime import datetime, timezone
from urllib.parse import quote

import pytest

from chat_server.numbers import is_id, parse_id

from .admin_support import AdminClient, seed_conversation

NOT_NUMBERS = ["²", "①", "１２", "٣", "1_0", "+1", " 1", "1 ", "-1", "0x1", "1.0", "9" * 19, "¹²", "𝟏"]


@pytest.mark.parametrize("value", NOT_NUMBERS + ["", None, 12])
def test_parse_id_takes_ascii_digits_only(value):
    assert parse_id(value) is None


def test_parse_id_and_is_id_on_numbers():
    assert parse_id("0") == 0 and parse_id("12") == 12 and parse_id("9" * 18) == 10**18 - 1
    assert is_id(1) and is_id(2**63 - 1)
    assert not is_id(True) and not is_id(-1) and not is_id(2**63) and not is_id("1") and not is_id(1.0)


@pytest.fixture
async def server(launch, sqlite_settings, training_copy):
    # The inbox test adds an example: to a copy of the training data.
    return await launch(sqlite_settings, POLKU_TRAINING_DATA_DIR=str(training_copy))


@pytest.fixture
async def admin(server):
    client = await AdminClient.sign_in(server)
    yield client
    await client.close()


@pytest.fixture
async def counsellor(server):
    client = await AdminClient.sign_in(server, role="counsellor")
    yield client
    await client.close()


@pytest.mark.parametrize("value", NOT_NUMBERS)
async def test_ids_in_admin_urls_must_be_numbers(server, admin, value):
    cid = await seed_conversation(server, created_at=datetime(2026, 11, 10, tzinfo=timezone.utc))
    path = quote(value, safe="")
    body = await admin.get(f"/admin/api/conversations/{path}/export", expect=400)
    assert body["error"] == "bad_request" and "0-9" in body["detail"]
    await admin.delete(f"/admin/api/conversations/{path}", expect=400)
    await admin.post(f"/admin/api/changes/{path}/undo", expect=400)
    assert (await admin.get(f"/admin/api/changes?before={path}", expect=400))["error"] == "bad_request"
    # Nothing was deleted, and a real id still works.
    assert await server.sql("SELECT count(*) FROM conversations WHERE id = :id", id=cid) == [(1,)]
    await admin.get(f"/admin/api/conversations/{cid}/export")
    await admin.get("/admin/api/changes?before=1")


@pytest.mark.parametrize("value", ["²", "１２", "٣", " 1", "1_0", "9" * 19])
async def test_numbers_in_console_urls_and_queries(server, admin, counsellor, value):
    path = quote(value, safe="")
    assert (await counsellor.get(f"/api/console/conversations/{path}", expect=400))["error"] == "bad_request"
    for name in ("limit", "before_id", "staff_id", "conversation_id"):
        await admin.get(f"/api/admin/audit?{name}={path}", expect=400)
    await admin.get("/api/admin/audit?limit=10")


async def test_inbox_ids_and_text_keys_must_be_numbers(server, admin):
    cid = await seed_conversation(server, created_at=datetime(2026, 11, 10, tzinfo=timezone.utc),
                                  resident_texts=("mikä on asumistuki",), intent="nlu_fallback", confidence=0.1)
    [(message_id,)] = await server.sql(
        "SELECT id FROM messages WHERE conversation_id = :c AND sender = 'resident'", c=cid)
    for texts in ({"²": "asumistuki"}, {"１": "asumistuki"}, {f"{message_id} ": "asumistuki"}):
        refused = await admin.post("/admin/api/inbox/assign", {"message_ids": [message_id], "intent": "housing_allowance",
                                                               "texts": texts}, expect=400)
        assert refused["error"] == "bad_request"
    for ids in ([10**30], [-1], [True], ["1"]):
        await admin.post("/admin/api/inbox/dismiss", {"message_ids": ids}, expect=400)
    assert await server.sql("SELECT count(*) FROM admin_inbox_decisions") == [(0,)]
    # The same request with a proper key is taken.
    await admin.post("/admin/api/inbox/assign", {"message_ids": [message_id], "intent": "housing_allowance",
                                                 "texts": {str(message_id): "mikä on asumistuki"}})
