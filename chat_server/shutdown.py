"""Bounded shutdown steps: one stuck step must not hang the server's exit."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Awaitable

log = logging.getLogger(__name__)

SHUTDOWN_STEP_SECS = 10.0


async def bounded(what: str, step: Awaitable[Any], secs: float = SHUTDOWN_STEP_SECS) -> None:
    """Await one shutdown step, at most ``secs``; a step that fails or hangs is logged and left."""
    try:
        await asyncio.wait_for(step, secs)
    except TimeoutError:
        log.warning("shutdown: %s did not stop within %.0f s; going on", what, secs)
    except Exception as exc:
        log.warning("shutdown: stopping %s failed: %s", what, type(exc).__name__)
