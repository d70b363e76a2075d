"""Keeping the bot answering while Rasa swaps its model.

Measured on Rasa 3.6.21 (tests/server/test_admin_models.py): ``PUT /model``
loads the new model inside Rasa's event loop, so for the 3-5 s the load
takes every ``/model/parse`` waits; none fails and each is answered
(by the new model) once the swap is done. Our parse timeout
(POLKU_RASA_TIMEOUT_SECS, 3 s) is shorter than that, and a timeout makes the
bot tell the resident it cannot answer right now.

So while an activation is in progress, parses use a long timeout. The flag
is this process's own and, with Redis, every process's: a process that did
not know of the activation sees its parse time out, finds the flag in Redis
and asks again, patiently. The flag outlives the swap by a few seconds, for
parses that were sent just before it ended. With several Rasa servers, they
load the model one after another, and every process's parses go to the
others meanwhile: the activating one's at once (``held_back``), the other
processes' once they see the loading server in Redis (``watch_loading``,
within half a second).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any, AsyncIterator

from bot.nlu import NluResult, NluUnavailable, RasaClient

log = logging.getLogger(__name__)

ACTIVATION_PARSE_TIMEOUT_SECS = 60.0
ACTIVATION_FLAG_TTL_SECS = 300  # an activation that died leaves no flag behind for long
ACTIVATION_GRACE_SECS = 5.0


LOADING_POLL_SECS = 0.5


class ActivationFlag:
    def __init__(self, redis: Any = None, prefix: str = "polku:") -> None:
        self.redis = redis
        self.key = prefix + "admin:model-activation"
        self.loading_key = prefix + "admin:model-loading"  # the Rasa server loading a model now
        self._local_until = 0.0
        self._local_active = 0

    @property
    def active_here(self) -> bool:
        return self._local_active > 0 or time.monotonic() < self._local_until

    async def active_anywhere(self) -> bool:
        if self.active_here:
            return True
        if self.redis is None:
            return False
        try:
            return bool(await self.redis.exists(self.key))
        except Exception as exc:  # Redis down: the parse error stands
            log.warning("could not read the activation flag: %s", type(exc).__name__)
            return False

    @contextlib.asynccontextmanager
    async def raised(self) -> AsyncIterator[None]:
        """The flag is up inside the block and for ACTIVATION_GRACE_SECS after it."""
        self._local_active += 1
        if self.redis is not None:
            await self.redis.set(self.key, "1", ex=ACTIVATION_FLAG_TTL_SECS)
        try:
            yield
        finally:
            self._local_active -= 1
            self._local_until = time.monotonic() + ACTIVATION_GRACE_SECS
            if self.redis is not None:
                try:
                    await self.redis.set(self.key, "1", ex=int(ACTIVATION_GRACE_SECS))
                except Exception as exc:
                    log.warning("could not lower the activation flag: %s", type(exc).__name__)


    async def loading(self, url: str | None) -> None:
        """Tell every process which Rasa server is loading a model (None: none is)."""
        if self.redis is None:
            return
        try:
            if url is None:
                await self.redis.delete(self.loading_key)
            else:
                await self.redis.set(self.loading_key, url, ex=ACTIVATION_FLAG_TTL_SECS)
        except Exception as exc:  # the others' parses then wait patiently, as with one server
            log.warning("could not share which Rasa server is loading: %s", type(exc).__name__)

    async def watch_loading(self, nlu: "GuardedNlu") -> None:
        """Keep this process's parses away from the Rasa server another process is
        having load a model (polls Redis every LOADING_POLL_SECS; runs until cancelled)."""
        held = contextlib.ExitStack()
        current: str | None = None
        try:
            while True:
                try:
                    value = await self.redis.get(self.loading_key)
                    url = value.decode() if isinstance(value, bytes) else value
                except Exception:  # Redis down: nothing is held back
                    url = None
                if url != current:
                    held.close()  # an ExitStack is empty and reusable after close()
                    if url:
                        held.enter_context(nlu.held_back(url))
                    current = url
                await asyncio.sleep(LOADING_POLL_SECS)
        finally:
            held.close()


class GuardedNlu:
    """The bot's Rasa client, patient while a model is being activated."""

    def __init__(self, inner: RasaClient, flag: ActivationFlag, token: str = "") -> None:
        self.inner = inner
        self.flag = flag
        self.patient = RasaClient(inner.url, ACTIVATION_PARSE_TIMEOUT_SECS, token, inner.spill_below)

    @property
    def url(self) -> str:
        return self.inner.url

    async def parse(self, text: str) -> NluResult:
        if self.flag.active_here:
            return await self.patient.parse(text)
        try:
            return await self.inner.parse(text)
        except NluUnavailable:
            if await self.flag.active_anywhere():
                log.info("parse failed during a model activation: asking again, patiently")
                return await self.patient.parse(text)
            raise

    @contextlib.contextmanager
    def held_back(self, url: str):
        """This process's parses avoid the Rasa server at ``url`` while it loads a model."""
        with self.inner.held_back(url), self.patient.held_back(url):
            yield

    async def status(self) -> dict:
        return await self.inner.status()

    async def close(self) -> None:
        await self.inner.close()
        await self.patient.close()
