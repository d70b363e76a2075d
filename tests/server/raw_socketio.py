"""A raw Engine.IO/Socket.IO client over a real websocket (aiohttp's), for
tests that send frames no Socket.IO library would: ``42[``, ``42[123]``,
``x``... and a log capture of the server running in the test's process."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from typing import Any

import aiohttp

FRAME_TIMEOUT_SECS = 5.0


class RawSocket:
    """One Engine.IO websocket connection: frames out as given, frames in as
    received (pings answered)."""

    def __init__(self, url: str, *, headers: dict[str, str] | None = None) -> None:
        self.url = url.replace("http://", "ws://") + "/socket.io/?EIO=4&transport=websocket"
        self.headers = headers or {}
        self.frames: asyncio.Queue[str | bytes | None] = asyncio.Queue()
        self.closed = asyncio.Event()
        self._http: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task | None = None

    async def open(self, *namespaces: str) -> "RawSocket":
        """Connect, and join these Socket.IO namespaces ("/" unless others are given);
        the CONNECT answers are taken."""
        self._http = aiohttp.ClientSession()
        self._ws = await self._http.ws_connect(self.url, headers=self.headers)
        self._reader = asyncio.get_running_loop().create_task(self._read())
        opening = await self.next_frame()
        assert isinstance(opening, str) and opening.startswith("0"), opening
        for namespace in namespaces or ("/",):
            await self.join(namespace)
        return self

    async def join(self, namespace: str) -> str:
        """CONNECT to a namespace; the server's answer (``40...`` or ``44...``)."""
        await self.send("40" if namespace == "/" else f"40{namespace},")
        return await self.next_frame()

    async def _read(self) -> None:
        try:
            async for message in self._ws:
                if message.type == aiohttp.WSMsgType.TEXT:
                    if message.data == "2":
                        await self._ws.send_str("3")  # Engine.IO ping
                        continue
                    await self.frames.put(message.data)
                elif message.type == aiohttp.WSMsgType.BINARY:
                    await self.frames.put(message.data)
                else:
                    break
        except Exception:
            pass
        finally:
            self.closed.set()
            await self.frames.put(None)

    async def send(self, frame: str | bytes) -> bool:
        """Send a frame; False when the connection is closed."""
        if self.closed.is_set() or self._ws.closed:
            return False
        try:
            if isinstance(frame, bytes):
                await self._ws.send_bytes(frame)
            else:
                await self._ws.send_str(frame)
            return True
        except (ConnectionError, aiohttp.ClientError):
            return False

    async def next_frame(self, timeout: float = FRAME_TIMEOUT_SECS) -> str | bytes | None:
        """The next frame from the server; None when the connection closed."""
        try:
            return await asyncio.wait_for(self.frames.get(), timeout)
        except TimeoutError:
            raise AssertionError(f"no frame within {timeout}s") from None

    async def next_event(self, timeout: float = FRAME_TIMEOUT_SECS,
                         namespace: str = "/") -> tuple[str, Any] | None:
        """The next Socket.IO event of the namespace (other frames skipped); None when closed."""
        prefix = "42" if namespace == "/" else f"42{namespace},"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            frame = await self.next_frame(max(0.0, deadline - loop.time()))
            if frame is None:
                return None
            if isinstance(frame, str) and frame.startswith(prefix):
                name, *args = json.loads(frame[len(prefix):])
                return name, (args[0] if args else None)

    async def wait_closed(self, timeout: float = FRAME_TIMEOUT_SECS) -> bool:
        try:
            await asyncio.wait_for(self.closed.wait(), timeout)
            return True
        except TimeoutError:
            return False

    async def close(self) -> None:
        if self._ws is not None and not self._ws.closed:
            await self._ws.close()
        if self._reader is not None:
            self._reader.cancel()
            try:
                await self._reader
            except (asyncio.CancelledError, Exception):
                pass
        if self._http is not None:
            await self._http.close()


class LogCapture(logging.Handler):
    """Everything the server logs at ``level`` and above while it is installed
    on the root logger, formatted as the server formats it (tracebacks included)."""

    def __init__(self, level: int = logging.INFO) -> None:
        super().__init__(level)
        self.stream = io.StringIO()
        self.records: list[logging.LogRecord] = []
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        self._root_level: int | None = None

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self.stream.write(self.format(record) + "\n")

    @property
    def text(self) -> str:
        return self.stream.getvalue()

    def mark(self) -> int:
        """A position in the log: ``since(mark)`` is what was logged after it."""
        return len(self.stream.getvalue())

    def since(self, mark: int) -> str:
        return self.stream.getvalue()[mark:]

    def errors(self) -> list[logging.LogRecord]:
        return [r for r in self.records if r.levelno >= logging.ERROR]

    def __enter__(self) -> "LogCapture":
        root = logging.getLogger()
        self._root_level = root.level
        root.setLevel(min(root.level or logging.WARNING, self.level))
        root.addHandler(self)
        return self

    def __exit__(self, *exc: Any) -> None:
        root = logging.getLogger()
        root.removeHandler(self)
        root.setLevel(self._root_level)
