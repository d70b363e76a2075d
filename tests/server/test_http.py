"""HTTP: liveness, readiness, the widget bundle and the demo page, origins."""

from __future__ import annotations

import aiohttp
import pytest
import socketio



async def get(url: str, **kwargs) -> tuple[int, str, dict]:
    async with aiohttp.ClientSession() as session:
        async with session.get(url, allow_redirects=False, **kwargs) as response:
            return response.status, await response.text(), dict(response.headers)


async def test_health(server):
    status, body, _ = await get(server.url + "/health")
    assert status == 200 and '"ok"' in body


async def test_ready_reports_each_dependency(server):
    async with aiohttp.ClientSession() as session:
        async with session.get(server.url + "/ready") as response:
            assert response.status == 200
            body = await response.json()
    assert body["status"] == "ok"
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["rasa"] == "error"  # nothing listens on the test's Rasa port
    expected_redis = "ok" if server.settings.redis_url else "not configured"
    assert body["checks"]["redis"] == expected_redis


async def test_widget_bundle_and_demo_page(launch, sqlite_settings, tmp_path):
    widget = tmp_path / "widget"
    server = await launch(sqlite_settings, widget_dir=widget)
    status, body, _ = await get(server.url + "/widget/polku-chat.js")
    assert status == 404 and "./polku start" in body
    status, body, _ = await get(server.url + "/demo")
    assert status == 404

    (widget / "dist").mkdir(parents=True)
    (widget / "dist" / "polku-chat.js").write_text("console.log('polku');")
    (widget / "demo").mkdir()
    (widget / "demo" / "index.html").write_text("<html>demo</html>")
    status, body, headers = await get(server.url + "/widget/polku-chat.js")
    assert status == 200 and "polku" in body
    assert headers["Content-Type"].startswith("text/javascript")
    status, body, headers = await get(server.url + "/demo")
    assert status == 200 and "demo" in body and headers["Content-Type"].startswith("text/html")
    status, _, headers = await get(server.url + "/")
    assert status == 302 and headers["Location"] == "/demo"
    for bad in ("..%2F..%2Fsecret", ".hidden", "nope.js"):
        assert (await get(server.url + "/widget/" + bad))[0] == 404


async def test_only_allowed_origins_may_open_the_chat(launch, sqlite_settings, connect):
    server = await launch(sqlite_settings, POLKU_ALLOWED_ORIGINS=["https://www.example-hyvinvointialue.fi"])
    ok = await connect(server, headers={"Origin": "https://www.example-hyvinvointialue.fi"})
    assert ok.sio.connected
    same = await connect(server, headers={"Origin": server.url})  # the server's own /demo page
    assert same.sio.connected
    with pytest.raises(socketio.exceptions.ConnectionError):
        await connect(server, headers={"Origin": "https://evil.example"})
