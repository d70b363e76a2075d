"""Retention that really removes (issue 16): a deleted conversation's text is gone
from SQLite's files (secure_delete, the write-ahead log truncated), and the audit
log has a retention period of its own."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from chat_server.store.models import utcnow
from chat_server.store.staff_models import AuditRecord

from .admin_support import AdminClient, admin_of, seed_conversation

MARKER = "SALAISUUS-7d3f9-kukaan-ei-saa-lukea"


@pytest.fixture
async def admin(server):
    client = await AdminClient.sign_in(server)
    yield client
    await client.close()


def _files(data_dir: Path) -> bytes:
    return b"".join(p.read_bytes() for p in data_dir.glob("polku.db*"))


async def test_a_deleted_conversation_leaves_no_text_in_the_sqlite_files(launch, sqlite_settings):
    server = await launch(sqlite_settings)
    admin = await AdminClient.sign_in(server)
    try:
        data_dir = Path(sqlite_settings["POLKU_DATA_DIR"])
        now = utcnow()
        keep = await seed_conversation(server, created_at=now, resident_texts=("ihan tavallinen viesti",))
        gone = await seed_conversation(server, created_at=now, resident_texts=tuple(
            f"{MARKER} {i}" for i in range(50)))
        assert MARKER.encode() in _files(data_dir)
        assert await server.sql("PRAGMA secure_delete") == [(1,)]
        await admin.delete(f"/admin/api/conversations/{gone}")
        assert MARKER.encode() not in _files(data_dir), "the deleted text is still readable in the files"
        assert await server.sql("SELECT count(*) FROM messages WHERE conversation_id = :c", c=keep) == [(2,)]
        # The retention run's deletions too.
        old = await seed_conversation(server, created_at=now - timedelta(days=200),
                                      resident_texts=(MARKER + " vanha",))
        assert MARKER.encode() in _files(data_dir)
        assert await admin_of(server).retention.run() == 1
        assert MARKER.encode() not in _files(data_dir)
        assert await server.sql("SELECT id FROM conversations WHERE id = :c", c=old) == []
    finally:
        await admin.close()


async def test_the_audit_log_has_a_retention_period(launch, backend_settings):
    server = await launch(backend_settings, POLKU_AUDIT_RETENTION_DAYS=365)
    now = utcnow()
    async with server.server.store.transaction() as tx:
        for days, action in ((400, "old_one"), (366, "old_two"), (364, "recent_one"), (0, "today")):
            tx.session.add(AuditRecord(at=now - timedelta(days=days), staff_id=None, action=action,
                                       conversation_id=None, detail=""))
    await admin_of(server).retention.run()
    assert sorted(a for (a,) in await server.sql("SELECT action FROM audit_log")) == ["recent_one", "today"]


def test_the_file_check_would_see_rows_deleted_without_secure_delete(tmp_path):
    """The control of the check above: SQLite as some builds have it (secure_delete off;
    Debian's is compiled with it on) leaves a deleted row's text in the file."""
    import sqlite3

    path = tmp_path / "polku.db"
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA secure_delete=OFF")
    db.execute("CREATE TABLE m (id INTEGER PRIMARY KEY, text TEXT)")
    db.executemany("INSERT INTO m (text) VALUES (?)", [(f"{MARKER} {i}",) for i in range(50)])
    db.execute("INSERT INTO m (text) VALUES ('kept')")
    db.execute("DELETE FROM m WHERE text != 'kept'")
    db.close()
    assert MARKER.encode() in _files(tmp_path)


# --- examples taken from a conversation go with it, unless an admin keeps them ---------------------

@pytest.fixture
async def inbox_server(launch, sqlite_settings, training_copy):
    from bot.content import Content
    from bot.policy import Bot

    from .test_admin_inbox import ScriptedNlu

    bot = Bot(Content.load(training_copy), ScriptedNlu(), fallback_threshold=0.4)
    return await launch(sqlite_settings, bot=bot, POLKU_TRAINING_DATA_DIR=str(training_copy))


async def test_examples_from_a_deleted_conversation_leave_the_training_data(inbox_server, connect, training_copy):
    import yaml

    from .test_admin_inbox import chat

    server = inbox_server
    admin = await AdminClient.sign_in(server)
    try:
        ids = await chat(server, connect, ["paljonko on asumistuki", "asumistuki paljonko saa"])
        result = await admin.post("/admin/api/inbox/assign", {
            "message_ids": list(ids.values()), "intent": "housing_allowance", "texts": {}})
        changes = {c["after"]: c["id"] for c in result["changes"]}
        # The admin keeps one of them, with a reason (recorded, audited).
        await admin.post(f"/admin/api/changes/{changes['asumistuki paljonko saa']}/keep", {"reason": ""}, expect=400)
        await admin.post(f"/admin/api/changes/{changes['asumistuki paljonko saa']}/keep",
                         {"reason": "a common phrasing, no personal data"})
        conversation_of = dict(await server.sql("SELECT id, conversation_id FROM messages WHERE sender = 'resident'"))
        for message_id in ids.values():
            await admin.delete(f"/admin/api/conversations/{conversation_of[message_id]}")
        examples = yaml.safe_load((training_copy / "intents" / "housing_allowance.yml").read_text())["examples"]["fi"]
        assert "paljonko on asumistuki" not in examples  # gone with its conversation
        assert "asumistuki paljonko saa" in examples  # kept by the admin's decision
        history = (await admin.get("/admin/api/changes"))["changes"]
        text = str(history)
        assert "paljonko on asumistuki" not in text and "[removed with its conversation]" in text
        assert any(c["source"] == "retention" for c in history)
        assert ("example_kept",) in await server.sql("SELECT action FROM audit_log")
    finally:
        await admin.close()
