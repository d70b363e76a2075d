"""HTTP client of the Rasa server's ``/model/parse``.

Rasa runs in its own Python 3.10 environment; we only talk HTTP to it. One
keep-alive connection pool per Rasa server keeps our overhead per parse well
under a millisecond. Rasa parses one message at a time, so one server's queue
is most of the chat path's tail under load; ``POLKU_RASA_URL`` can name several
servers on the same model, and the client spreads parses over them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import aiohttp


class NluUnavailable(Exception):
    """Rasa did not answer (down, timing out, no model loaded, or an error)."""


@dataclass(frozen=True)
class NluResult:
    intent: str
    confidence: float
    ranking: tuple[tuple[str, float], ...]


class NluClient(Protocol):
    """What the bot asks of its NLU: RasaClient, PrecomputedNlu, or the chat
    server's guard around a RasaClient (patient while a model is activated)."""

    async def parse(self, text: str) -> NluResult: ...

    async def close(self) -> None: ...


def nlu_result(data: dict) -> NluResult:
    """Rasa's /model/parse answer as an NluResult."""
    intent = data.get("intent") or {}
    name = intent.get("name")
    if not name:
        # Rasa answers 200 with an empty intent when no NLU model is loaded.
        raise NluUnavailable("Rasa has no NLU model loaded")
    ranking = tuple(
        (item["name"], float(item.get("confidence") or 0.0))
        for item in data.get("intent_ranking") or []
        if item.get("name")
    )
    return NluResult(name, float(intent.get("confidence") or 0.0), ranking)


class PrecomputedNlu:
    """Answers from parses made earlier (by the training process, with a model
    no server has loaded): the same interface as RasaClient's parse."""

    def __init__(self, parses: dict[str, dict]) -> None:
        self.parses = parses

    async def parse(self, text: str) -> NluResult:
        data = self.parses.get(text)
        if data is None:
            raise NluUnavailable("no parse was made for this text")
        return nlu_result(data)

    async def close(self) -> None:
        pass


# Rasa parses one message at a time (its handler is CPU-bound in one event loop),
# so more requests in flight only queue inside Rasa, and not fairly: with 64 in
# flight some waited past the timeout while the average wait was half a second.
# Past this many per Rasa server, requests wait here, first come first served.
MAX_PARSES_IN_FLIGHT = 4
# A Rasa server that refused a connection (or had no model) is passed over for this long.
BACKEND_REST_SECS = 2.0
# With several servers: while fewer parses than this are in flight in all, a busy
# first server spills to an idle one; past it they queue for the first (see _order).
SPILL_BELOW = 3


def split_urls(urls: str | Sequence[str]) -> tuple[str, ...]:
    """POLKU_RASA_URL's Rasa servers: one base URL, or several separated by commas."""
    parts = urls.split(",") if isinstance(urls, str) else list(urls)
    found = tuple(dict.fromkeys(part.strip().rstrip("/") for part in parts if part and part.strip()))
    if not found:
        raise ValueError("no Rasa URL given")
    return found


class _Unanswered(NluUnavailable):
    """This Rasa server could not take the parse at all (connection refused or
    reset, no model loaded): another one may."""


class _Backend:
    """One Rasa server: its own keep-alive pool, and how busy and healthy it is."""

    def __init__(self, index: int, url: str, timeout: aiohttp.ClientTimeout) -> None:
        self.index = index  # its place in POLKU_RASA_URL
        self.url = url
        self.timeout = timeout
        self.in_flight = 0
        self.parses = 0
        self.resting_until = 0.0
        self.held = 0  # loading a model: passed over while another is up
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def client(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._loop is not loop:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=MAX_PARSES_IN_FLIGHT, keepalive_timeout=60),
                timeout=self.timeout,
                json_serialize=json.dumps,
            )
            self._loop = loop
        return self._session

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None


class RasaClient:
    """Rasa's ``/model/parse`` over HTTP, on one Rasa server or spread over several.

    Several servers (``POLKU_RASA_URL`` with commas) serve the same model, each
    parsing one message at a time; ``_order`` says which takes a parse. A
    server that refuses the connection (or has no model) is passed over for
    BACKEND_REST_SECS and the parse is sent to another at once; a parse that
    timed out is not sent again (the resident has waited long enough).
    """

    def __init__(self, url: str | Sequence[str], timeout_secs: float = 3.0, token: str = "",
                 spill_below: int = SPILL_BELOW) -> None:
        self.urls = split_urls(url)
        self.spill_below = max(0, spill_below)
        self.url = ",".join(self.urls)
        self.timeout = aiohttp.ClientTimeout(total=timeout_secs)
        self.params = {"token": token} if token else {}
        self.backends = [_Backend(i, u, self.timeout) for i, u in enumerate(self.urls)]
        self._turn = 0  # spill_below=0: where ties start

    def _order(self) -> list[_Backend]:
        """The servers to try, in order; resting ones last.

        With ``spill_below`` (the default), the first server that is up takes
        each parse unless it is busy; then an idle one takes it, but only while
        fewer than ``spill_below`` parses are in flight in all. Bursts at a
        moderate load are parsed side by side instead of queueing (the queue at
        one server was most of the tail), while at saturation the others stay
        idle: on 2 cores a second busy Rasa takes the core our server needs and
        both slow down. With ``spill_below=0`` parses are spread evenly, the
        fewest in flight first, for machines with cores to spare."""
        now = time.monotonic()
        up = [b for b in self.backends if b.resting_until <= now and not b.held]
        down = [b for b in self.backends if b.resting_until > now or b.held]
        if not self.spill_below:
            count = len(self.backends)
            self._turn = (self._turn + 1) % count
            up.sort(key=lambda b: (b.in_flight, (b.index - self._turn) % count))  # ties take turns
        elif sum(b.in_flight for b in self.backends) < self.spill_below:
            up.sort(key=lambda b: b.in_flight > 0)  # stable: idle ones first, in their order
        return up + down

    @contextlib.contextmanager
    def held_back(self, url: str):
        """Parses go to the other servers while the block runs (the server at ``url``
        is loading a model and would keep them waiting); it is still tried when
        no other one is up."""
        held = [b for b in self.backends if b.url == url.rstrip("/")]
        for backend in held:
            backend.held += 1
        try:
            yield
        finally:
            for backend in held:
                backend.held -= 1

    async def parse(self, text: str) -> NluResult:
        unanswered: NluUnavailable | None = None
        for backend in self._order():
            try:
                return await self._parse_on(backend, text)
            except _Unanswered as exc:
                backend.resting_until = time.monotonic() + BACKEND_REST_SECS
                unanswered = exc
        assert unanswered is not None
        raise NluUnavailable(str(unanswered))

    async def _parse_on(self, backend: _Backend, text: str) -> NluResult:
        backend.in_flight += 1
        try:
            async with backend.client().post(
                f"{backend.url}/model/parse", json={"text": text}, params=self.params
            ) as response:
                if response.status != 200:
                    raise NluUnavailable(f"Rasa at {backend.url} answered HTTP {response.status}")
                data = await response.json(content_type=None)
        except aiohttp.ServerTimeoutError as exc:  # a connection error too, but it was parsing
            raise NluUnavailable(f"Rasa at {backend.url} did not answer: {type(exc).__name__}") from exc
        except (aiohttp.ClientConnectionError, ConnectionError) as exc:
            # Refused or dropped before an answer: nothing was parsed, another server may.
            raise _Unanswered(f"Rasa at {backend.url} did not answer: {type(exc).__name__}") from exc
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError, ValueError) as exc:
            raise NluUnavailable(f"Rasa at {backend.url} did not answer: {type(exc).__name__}") from exc
        finally:
            backend.in_flight -= 1
        backend.parses += 1
        try:
            return nlu_result(data)
        except NluUnavailable as exc:  # this server has no model loaded
            raise _Unanswered(f"Rasa at {backend.url}: {exc}") from exc

    async def status(self) -> dict:
        """The first Rasa server's /status (model file, fingerprint); raises NluUnavailable."""
        backend = self.backends[0]
        try:
            async with backend.client().get(f"{backend.url}/status", params=self.params) as response:
                if response.status != 200:
                    raise NluUnavailable(f"Rasa answered HTTP {response.status}")
                return await response.json(content_type=None)
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError, ValueError) as exc:
            raise NluUnavailable(f"Rasa at {backend.url} did not answer: {type(exc).__name__}") from exc

    async def close(self) -> None:
        for backend in self.backends:
            await backend.close()
