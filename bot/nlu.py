"""HTTP client of the Rasa server's ``/model/parse``.

Rasa runs in its own Python 3.10 environment; we only talk HTTP to it. One
keep-alive connection pool per client keeps our overhead per parse well under
a millisecond.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass

import aiohttp


class NluUnavailable(Exception):
    """Rasa did not answer (down, timing out, no model loaded, or an error)."""


@dataclass(frozen=True)
class NluResult:
    intent: str
    confidence: float
    ranking: tuple[tuple[str, float], ...]


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
# Past this many, requests wait here, first come first served.
MAX_PARSES_IN_FLIGHT = 4


class RasaClient:
    def __init__(self, url: str, timeout_secs: float = 3.0, token: str = "") -> None:
        self.url = url.rstrip("/")
        self.timeout = aiohttp.ClientTimeout(total=timeout_secs)
        self.params = {"token": token} if token else {}
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _client(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._loop is not loop:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=MAX_PARSES_IN_FLIGHT, keepalive_timeout=60),
                timeout=self.timeout,
                json_serialize=json.dumps,
            )
            self._loop = loop
        return self._session

    async def parse(self, text: str) -> NluResult:
        try:
            async with self._client().post(
                f"{self.url}/model/parse", json={"text": text}, params=self.params
            ) as response:
                if response.status != 200:
                    raise NluUnavailable(f"Rasa answered HTTP {response.status}")
                data = await response.json(content_type=None)
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError, ValueError) as exc:
            raise NluUnavailable(f"Rasa at {self.url} did not answer: {type(exc).__name__}") from exc
        return nlu_result(data)

    async def status(self) -> dict:
        """Rasa's /status (model file, fingerprint); raises NluUnavailable."""
        try:
            async with self._client().get(f"{self.url}/status", params=self.params) as response:
                if response.status != 200:
                    raise NluUnavailable(f"Rasa answered HTTP {response.status}")
                return await response.json(content_type=None)
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError, ValueError) as exc:
            raise NluUnavailable(f"Rasa at {self.url} did not answer: {type(exc).__name__}") from exc

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None
