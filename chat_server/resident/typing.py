"""The resident's typing indicator for the consoles: one socket's ``resident_typing`` reaches
them at most once per TYPING_MIN_INTERVAL_SECS; what comes faster is coalesced (the latest
value is sent when the interval ends), and never answered with an error per event. Typing is
frequent and unimportant: no database lookup, only the socket's own session.
"""

from __future__ import annotations

import asyncio
import logging

from ..errors import UnknownSession
from ..events import Events
from .sockets import ResidentSockets

log = logging.getLogger(__package__)

# Our widget sends one every 3 s while typing.
TYPING_MIN_INTERVAL_SECS = 1.0


class TypingRelay:
    def __init__(self, sockets: ResidentSockets, events: Events) -> None:
        self.sockets = sockets
        self.events = events

    def typing_due(self, sid: str) -> bool:
        """Whether this socket's resident_typing goes out now (True, and the next one waits
        TYPING_MIN_INTERVAL_SECS), or comes too soon and is coalesced (False)."""
        state = self.sockets[sid]
        now = asyncio.get_running_loop().time()
        if now < state.typing_next_at:
            return False
        state.typing_next_at = now + TYPING_MIN_INTERVAL_SECS
        return True

    async def do_typing(self, sid: str, session_id: str | None, typing: bool, *, due: bool) -> None:
        state = self.sockets[sid]
        if not due:
            # Faster than TYPING_MIN_INTERVAL_SECS: keep the latest valid value for the end of
            # the interval (no error per event flooding back).
            if session_id is None or session_id == state.session_id:
                state.typing_pending = typing
                if state.typing_timer is None:
                    state.typing_timer = asyncio.get_running_loop().call_at(
                        state.typing_next_at, self._typing_interval_ended, sid)
            return
        if state.unwritten_since is not None and session_id in (None, state.session_id):
            return  # no conversation written yet: no console can have it open
        # Typing is frequent and unimportant: no database lookup, only the socket's own session.
        if state.conversation_id is None or (session_id is not None and session_id != state.session_id):
            raise UnknownSession("typing for a session this socket has not confirmed")
        state.typing_pending = None
        await self.events.resident_typing(state.conversation_id, typing)

    def _typing_interval_ended(self, sid: str) -> None:
        state = self.sockets.get(sid)
        if state is None:
            return
        state.typing_timer = None
        typing, state.typing_pending = state.typing_pending, None
        if typing is None or state.conversation_id is None:
            return
        state.typing_next_at = asyncio.get_running_loop().time() + TYPING_MIN_INTERVAL_SECS
        conversation_id = state.conversation_id

        async def send() -> None:
            try:
                await self.events.resident_typing(conversation_id, typing)
            except Exception as exc:  # unimportant: the next typing event mends it
                log.warning("typing not forwarded: %s", type(exc).__name__)
        asyncio.get_running_loop().create_task(send())
