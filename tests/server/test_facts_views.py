"""The admin's facts page data (facts needing attention first, coming closures) and the
console's coming closures, over real HTTP and Socket.IO (issue 15 items 2 and 3)."""

from __future__ import annotations

from datetime import date

import pytest
import yaml

from .admin_support import AdminClient
from .counsellor_helpers import StaffBrowser, create_staff
from .helpers import OWN_BOT


@pytest.fixture
async def admin_server(launch, sqlite_settings, training_copy, tmp_path):
    # Closures that fall within the next 30 days whatever day the test runs.
    path = training_copy / "service_facts.yml"
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    today = date.today()
    tomorrow = date.fromordinal(today.toordinal() + 1)
    text = path.read_text(encoding="utf-8").replace(
        "  closed_dates: []",
        f"  closed_dates:\n    - {{date: {today.isoformat()}, reason: \"Koulutuspäivä\"}}").replace(
        "  exceptions: []",
        f"  exceptions:\n    - {{date: {tomorrow.isoformat()}, reason: \"Aatto\", chat: \"09:00-12:00\"}}")
    path.write_text(text, encoding="utf-8")
    assert doc["opening_hours"]["example"] is True
    return await launch(sqlite_settings, bot=OWN_BOT, POLKU_TRAINING_DATA_DIR=str(training_copy),
                        POLKU_MODEL_DIR=str(tmp_path / "models"))


async def test_admin_lists_facts_needing_attention_first_and_the_coming_closures(admin_server):
    admin = await AdminClient.sign_in(admin_server)
    try:
        content = await admin.get("/admin/api/content")
    finally:
        await admin.close()
    report = content["fact_report"]
    statuses = [row["status"] for row in report]
    assert statuses == sorted(statuses, key=["unfilled", "example", "filled"].index)
    first = {row["name"] for row in report if row["status"] == "unfilled"}
    assert {"polku_phone", "emergency_social_services_phone", "kela_phone"} <= first
    assert "value" not in report[0]
    assert content["unfilled_crisis_facts"] == ["emergency_social_services_phone"]
    assert content["example_hours"] is True
    by_date = {c["date"]: c for c in content["closures"]}
    today = date.today().isoformat()
    if today in by_date and date.today().weekday() < 5:  # a weekday: the area's own closed date shows
        assert by_date[today]["kind"] in ("closed", "public_holiday")
    tomorrow = date.fromordinal(date.today().toordinal() + 1).isoformat()
    assert by_date[tomorrow]["kind"] == "exception" and by_date[tomorrow]["channels"] == {"chat": "09:00-12:00"}


async def test_console_shows_the_coming_closures(admin_server):
    await create_staff(admin_server, "anna")
    browser = StaffBrowser(admin_server)
    try:
        await browser.sign_in("anna")
        console = await browser.open_console()
        hello = await console.ok("hello")
    finally:
        await browser.close()
    tomorrow = date.fromordinal(date.today().toordinal() + 1).isoformat()
    closures = {c["date"]: c for c in hello["closures"]}
    assert closures[tomorrow]["reason"] == "Aatto"
    assert all(c["kind"] in ("closed", "public_holiday", "exception") for c in hello["closures"])
