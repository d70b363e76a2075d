"""The trained models, which one Rasa serves, and switching between them.

Models trained from the admin page land in ``<POLKU_MODEL_DIR>/candidates``,
where ``latest_model`` (what a restarted Rasa serves) does not look. Once
the running Rasa has accepted a model (loaded from where it lies), it is
moved up into ``POLKU_MODEL_DIR`` and made the newest file there, so that it
is also the one served after a restart; rolling back to an older model does
the same for that one. A model Rasa refuses changes nothing on disk.

Activation asks the running Rasa to load the model (``PUT /model``) while
``ActivationFlag`` keeps every parse patient (see nlu_guard.py). With several
Rasa servers (``POLKU_RASA_URL`` lists them) each loads it in turn, so the
others go on parsing; if one refuses, those that had loaded it go back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import time
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import aiohttp
from redis.asyncio import Redis

from bot.settings import Settings

from ..errors import ActivationBusy, ActivationError, ModelNotFound
from ..store.admin.models import ModelRepository
from .changes import StaffRef
from .locks import cluster_lock
from .nlu_guard import LOADING_POLL_SECS, ActivationFlag, GuardedNlu

log = logging.getLogger(__name__)

CANDIDATES = "candidates"
MODEL_SUFFIX = ".tar.gz"
_MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,120}\.tar\.gz")
ACTIVATION_TIMEOUT_SECS = 300.0
STATUS_TIMEOUT_SECS = 3.0


def model_stem(path: Path) -> str:
    return path.name[: -len(MODEL_SUFFIX)]


def read_meta(path: Path) -> dict[str, Any]:
    """The .json that bot.training writes beside a model (trained_at, examples)."""
    try:
        return json.loads(path.with_name(model_stem(path) + ".json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


class ModelRegistry:
    """The model files, what each Rasa server serves, and activating one."""

    def __init__(self, settings: Settings, repository: ModelRepository, flag: ActivationFlag, *,
                 redis: Redis | None = None, nlu: GuardedNlu | None = None) -> None:
        self.settings = settings
        self.repository = repository
        self.flag = flag
        self.redis = redis
        self.model_dir = Path(self.settings.model_dir)
        self._lock = asyncio.Lock()
        self.nlu = nlu  # the bot's client, when guarded: it avoids a server while that one loads

    @contextlib.asynccontextmanager
    async def _turn(self) -> AsyncIterator[bool]:
        """Activations and pruning take turns: this process's lock, then the one
        shared by the server processes on Redis; yields whether that one was got."""
        key = self.settings.redis_prefix + "admin:activation-lock"
        async with self._lock, cluster_lock(self.redis, key, int(ACTIVATION_TIMEOUT_SECS)) as got:
            yield got

    @property
    def candidates_dir(self) -> Path:
        return self.model_dir / CANDIDATES

    def files(self) -> dict[str, Path]:
        found: dict[str, Path] = {}
        for folder in (self.candidates_dir, self.model_dir):
            if folder.is_dir():
                found.update({p.name: p for p in folder.glob("*" + MODEL_SUFFIX)})
        return found

    def path_of(self, name: str) -> Path | None:
        if not isinstance(name, str) or not _MODEL_NAME.fullmatch(name):
            return None
        return self.files().get(name)

    # --- Rasa ---------------------------------------------------------------------------

    def _params(self) -> dict[str, str]:
        return {"token": self.settings.rasa_token} if self.settings.rasa_token else {}

    async def served(self) -> dict[str, str | None]:
        """The model file each Rasa server of POLKU_RASA_URL serves (None: it does not answer)."""
        timeout = aiohttp.ClientTimeout(total=STATUS_TIMEOUT_SECS)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            names = await asyncio.gather(*(self._served_by(session, url) for url in self.settings.rasa_urls))
        return dict(zip(self.settings.rasa_urls, names))

    async def _served_by(self, session: aiohttp.ClientSession, url: str) -> str | None:
        try:
            async with session.get(url + "/status", params=self._params()) as response:
                if response.status != 200:
                    return None
                body = await response.json(content_type=None)
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError, ValueError):
            return None
        name = body.get("model_file") if isinstance(body, dict) else None
        return os.path.basename(name) if isinstance(name, str) and name else None

    async def active_name(self) -> str | None:
        """The model file the running Rasa serves (None when no server answers);
        with several servers, the one the first answering server serves."""
        return _first_served(await self.served())

    # --- listing -------------------------------------------------------------------------

    async def register(self, name: str, *, trained_by: str | None, examples: int | None,
                       evaluation: dict | None, trained_at: datetime | None = None) -> None:
        await self.repository.register(name, trained_by=trained_by, examples=examples, evaluation=evaluation,
                                       trained_at=trained_at)

    async def evaluation_of(self, name: str) -> dict | None:
        return await self.repository.evaluation_of(name)

    async def listing(self) -> dict[str, Any]:
        files = self.files()
        served = await self.served()
        active = _first_served(served)
        rows, last_activation = await self.repository.models()
        models = []
        for name, path in files.items():
            meta = read_meta(path)
            row = rows.get(name)
            trained_at = row.trained_at if row is not None else datetime.fromtimestamp(
                float(meta.get("trained_at") or path.stat().st_mtime), timezone.utc)
            evaluation = row.evaluation if row is not None else None
            activation = last_activation.get(name)
            models.append({
                "name": name,
                "trained_at": trained_at.isoformat(),
                "trained_by": row.trained_by_name if row is not None else None,
                "examples": (row.examples if row is not None and row.examples is not None
                             else meta.get("examples")),
                "accuracy": evaluation.get("accuracy") if evaluation else None,
                "by_language": evaluation.get("by_language") if evaluation else None,
                "candidate": path.parent == self.candidates_dir,
                "active": name == active,
                "activated_at": activation.at.isoformat() if activation else None,
                "activated_by": activation.staff_name if activation else None,
            })
        models.sort(key=lambda m: m["trained_at"], reverse=True)
        return {"active": active, "models": models,
                "rasa_answers": active is not None,
                # Several Rasa servers that do not all serve one model (one was down during
                # an activation, or restarted on another file): activating again mends it.
                "servers": [{"url": url, "model": name} for url, name in served.items()],
                "servers_differ": len(set(served.values())) > 1}

    # --- activation ------------------------------------------------------------------------

    async def activate(self, name: str, staff: StaffRef) -> dict[str, Any]:
        """Have the running Rasa serve ``name``; returns how long the swap took."""
        path = self.path_of(name)
        if path is None:
            raise ModelNotFound(f"no model {name}")
        if self._lock.locked():
            raise ActivationBusy("another activation is in progress")
        async with self._turn() as got:
            if not got:
                raise ActivationBusy("another activation is in progress")
            before = await self.served()
            previous = _first_served(before)
            # Rasa loads the file from where it lies (a candidate stays in candidates/):
            # only a model Rasa accepted becomes the one a restart serves. A refused
            # one leaves the model directory, and so latest_model(), as it was.
            started = time.monotonic()
            async with self.flag.raised():
                await self._load_everywhere(path, before)
            swap_secs = time.monotonic() - started
            try:
                await asyncio.to_thread(self._promote, path)
            except OSError as exc:
                raise ActivationError(
                    f"Rasa serves {name} now, but it could not be made the model served after a restart "
                    f"({type(exc).__name__}: {exc}); a restart would serve the previous model") from exc
            await self.repository.record_activation(name, previous=previous, staff_id=staff.id,
                                                    staff_name=staff.name, swap_secs=round(swap_secs, 3))
            await asyncio.to_thread(self._prune, {name})
        log.info("model %s activated (was %s) in %.1f s", name, previous, swap_secs)
        return {"model": name, "previous": previous, "swap_secs": round(swap_secs, 3)}

    async def prune(self) -> None:
        """Delete old model files (see ``_prune``); skipped while an activation runs
        in any process (it prunes when done) and when a Rasa server does not say
        which model it serves."""
        if self._lock.locked():
            return
        async with self._turn() as got:
            served = list((await self.served()).values()) if got else [None]
            if None not in served:
                await asyncio.to_thread(self._prune, set(served))

    def _prune(self, active: set[str]) -> None:
        """Keep the ``admin_keep_models`` newest files of the model directory (the
        most recently activated: file times follow activations, see _make_newest)
        and as many of candidates/ (trained, never activated), and the ``active``
        ones; delete the rest with their .json."""
        keep = self.settings.admin_keep_models
        if keep <= 0:
            return
        deleted = []
        for folder in (self.model_dir, self.candidates_dir):
            if not folder.is_dir():
                continue
            files = sorted(folder.glob("*" + MODEL_SUFFIX), key=_mtime, reverse=True)
            for path in [p for p in files if p.name not in active][keep:]:
                try:
                    path.unlink(missing_ok=True)
                    path.with_name(model_stem(path) + ".json").unlink(missing_ok=True)
                except OSError as exc:  # the activation or retrain itself has succeeded
                    log.warning("could not delete old model %s: %s", path.name, exc)
                    continue
                deleted.append(path.name)
        if deleted:
            log.info("deleted %d old model file(s): %s", len(deleted), ", ".join(sorted(deleted)))

    def _promote(self, path: Path) -> Path:
        """Make the model (Rasa has accepted it) the one a restart serves: a candidate
        is moved up into the model directory (with its .json), and the file made the
        newest there (bot.training.latest_model goes by file time)."""
        target = path
        if path.parent == self.candidates_dir:
            target = self.model_dir / path.name
            meta = path.with_name(model_stem(path) + ".json")
            if meta.exists():
                os.replace(meta, self.model_dir / meta.name)
            os.replace(path, target)
        _make_newest(target)
        return target

    async def _load_everywhere(self, path: Path, before: dict[str, str | None]) -> None:
        """Have every Rasa server load ``path``, one after another, so that the others
        go on parsing while one loads (this process's parses avoid the loading one).
        A server that does not answer is left out (restarted, it serves the newest
        model file, which this one becomes); when none answers, nothing is loaded.
        When one refuses or fails, the servers that had already loaded it go back to
        the model they had, and nothing is promoted."""
        answering = [url for url, name in before.items() if name is not None]
        if not answering:
            raise ActivationError(f"Rasa at {', '.join(before)} did not load the model: it does not answer")
        for url in before:
            if url not in answering:
                log.warning("Rasa at %s does not answer: %s is loaded on the others", url, path.name)
        loaded: list[str] = []
        rolling = len(answering) > 1
        try:
            for url in answering:
                held = self.nlu.held_back(url) if rolling and self.nlu is not None else contextlib.nullcontext()
                with held:
                    if rolling and self.flag.redis is not None:
                        await self.flag.loading(url)  # the other processes' parses avoid it too,
                        await asyncio.sleep(LOADING_POLL_SECS + 0.1)  # once they have looked
                    try:
                        await self._put_model(url, path)
                    finally:
                        if rolling:
                            await self.flag.loading(None)
                loaded.append(url)
            after = await self.served()
            wrong = {url: after.get(url) for url in loaded if after.get(url) != path.name}
            if wrong:
                raise ActivationError("Rasa serves " + ", ".join(
                    f"{served} at {url}" for url, served in wrong.items())
                    + f" after loading {path.name}; {path.name} was not made the model served after a restart")
        except ActivationError:
            for url in loaded:
                await self._restore(url, before.get(url))
            raise

    async def _restore(self, url: str, name: str | None) -> None:
        previous = self.path_of(name) if name else None
        if previous is None:
            log.error("Rasa at %s was left on the refused model: its previous one (%s) is not on disk",
                      url, name)
            return
        try:
            await self._put_model(url, previous)
        except ActivationError as exc:
            log.error("Rasa at %s could not go back to %s: %s", url, name, exc)

    async def _put_model(self, url: str, path: Path) -> None:
        timeout = aiohttp.ClientTimeout(total=ACTIVATION_TIMEOUT_SECS)
        try:
            async with aiohttp.ClientSession(timeout=timeout) as session:
                async with session.put(url + "/model", json={"model_file": str(path.resolve())},
                                       params=self._params()) as response:
                    if response.status not in (200, 204):
                        detail = (await response.text())[:300]
                        raise ActivationError(f"Rasa at {url} answered HTTP {response.status}: {detail}")
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            raise ActivationError(f"Rasa at {url} did not load the model: {type(exc).__name__}") from exc


def _first_served(served: dict[str, str | None]) -> str | None:
    """The model of the first Rasa server that answers (what the page calls in use)."""
    return next((name for name in served.values() if name), None)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return 0.0


def _make_newest(path: Path) -> None:
    """Newest by file time: a restarted Rasa serves this one (bot.training.latest_model).

    Now, or just after the newest other model if that one's time is ahead
    (a clock that was set back, a file copied with its time)."""
    when = time.time()
    for other in path.parent.glob("*" + MODEL_SUFFIX):
        if other != path:
            try:
                when = max(when, other.stat().st_mtime + 1.0)
            except FileNotFoundError:
                pass
    os.utime(path, (when, when))
