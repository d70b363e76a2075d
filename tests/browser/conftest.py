"""Browser tests of the resident widget: Debian's chromium, driven by
Playwright, against the real chat server started as a separate process.

The server gets its own data directory (SQLite), a free port, and its Rasa
URL from POLKU_BROWSER_RASA_URL, else from the shared ``rasa_url`` fixture
(the real Rasa, trained once per session). POLKU_BROWSER_RASA=closed points
it at a closed port instead: the bot then answers that it cannot answer
right now, which is all these tests need and much faster.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, Iterator

import pytest

from bot.settings import PROJECT_ROOT

WIDGET_DIR = PROJECT_ROOT / "widget"
BUNDLE = WIDGET_DIR / "dist" / "polku-chat.js"
DEMO_PAGE = WIDGET_DIR / "demo" / "index.html"

CHROMIUM = os.environ.get("POLKU_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SERVER_READY_TIMEOUT_SECS = 60.0
DESKTOP = {"width": 1280, "height": 800}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ChatServerProcess:
    """`python -m chat_server --port P` as a child process; start() again after stop() resumes it."""

    def __init__(self, data_dir: Path, rasa_url: str, port: int | None = None, **settings: str) -> None:
        self.port = port or free_port()
        self.data_dir = data_dir
        self.log_path = data_dir / "chat_server.log"
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("POLKU_")},
            "POLKU_DATA_DIR": str(data_dir),
            "POLKU_ALLOWED_ORIGINS": self.url,
            "POLKU_RASA_URL": rasa_url,
            "POLKU_RASA_TIMEOUT_SECS": "2",
            "POLKU_LOG_LEVEL": "INFO",
            # Every resident of these tests comes from 127.0.0.1.
            "POLKU_QUEUED_PER_ADDRESS": "1000", "POLKU_SOCKETS_PER_ADDRESS": "1000",
            **settings,
        }
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def create_user(self, username: str, display_name: str, role: str, password: str) -> None:
        """A staff account, made as an operator does (``python -m chat_server users create``)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            [sys.executable, "-m", "chat_server", "users", "create", "--username", username,
             "--display-name", display_name, "--role", role, "--password-stdin"],
            cwd=PROJECT_ROOT, env=self.env, input=password + "\n", capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr

    def start(self) -> "ChatServerProcess":
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "chat_server", "--port", str(self.port)],
                                     cwd=PROJECT_ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self.wait_ready()
        return self

    def wait_ready(self) -> None:
        deadline = time.monotonic() + SERVER_READY_TIMEOUT_SECS
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"chat server exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=1) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)
        raise RuntimeError(f"chat server did not answer /health in time:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


@pytest.fixture(scope="session")
def widget_bundle() -> Path:
    """dist/polku-chat.js, rebuilt when a source file is newer than it."""
    if not (WIDGET_DIR / "node_modules").is_dir():
        pytest.fail("widget/node_modules is missing: run `npm ci` in widget/")
    sources = [p for p in (WIDGET_DIR / "src").rglob("*") if p.is_file()] + [WIDGET_DIR / "build.mjs"]
    newest = max(p.stat().st_mtime for p in sources)
    if not BUNDLE.is_file() or BUNDLE.stat().st_mtime < newest:
        subprocess.run(["npm", "run", "build"], cwd=WIDGET_DIR, check=True, capture_output=True)
    return BUNDLE


@pytest.fixture(scope="session")
def browser_rasa_url(request) -> str:
    explicit = os.environ.get("POLKU_BROWSER_RASA_URL")
    if explicit:
        return explicit
    if os.environ.get("POLKU_BROWSER_RASA") == "closed":
        return f"http://127.0.0.1:{free_port()}"  # nothing listens: "cannot answer right now"
    return request.getfixturevalue("rasa_url")


@pytest.fixture(scope="session")
def chat_server_process(widget_bundle, browser_rasa_url, tmp_path_factory) -> Iterator[ChatServerProcess]:
    server = ChatServerProcess(tmp_path_factory.mktemp("browser-chat"), browser_rasa_url,
                               POLKU_MAX_MESSAGE_CHARS="500")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def chat_server(chat_server_process) -> str:
    """Base URL of the running chat server (serves /demo and /widget/polku-chat.js)."""
    return chat_server_process.url


@pytest.fixture
def own_chat_server(widget_bundle, browser_rasa_url, tmp_path) -> Iterator[ChatServerProcess]:
    """A chat server of this test's own, which the test may stop and start again."""
    server = ChatServerProcess(tmp_path / "chat", browser_rasa_url)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def new_page(browser) -> Iterator[Callable[..., "Page"]]:  # noqa: F821
    """new_page(viewport=..., **context_options) -> a page whose JavaScript errors fail the test."""
    contexts = []
    errors: list[str] = []

    def _new_page(viewport: dict | None = None, **options):
        context = browser.new_context(viewport=viewport or DESKTOP, locale="fi-FI", **options)
        context.set_default_timeout(15_000)
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        return page

    yield _new_page
    for context in contexts:
        context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


@pytest.fixture
def page(new_page):
    return new_page()
