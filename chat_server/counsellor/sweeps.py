"""Background work of the counsellor side, in every process (``run``):

- heartbeat: the counsellors connected here stay online (presence), and the
  consoles of sign-ins that ended elsewhere are closed;

and, in one process at a time (a Redis lock), each round:

- grace: the chats of a counsellor gone longer than
  ``POLKU_COUNSELLOR_GRACE_SECS`` go back to the front of the queue;
- abandoned: queued chats whose resident has been silent longer than
  ``POLKU_QUEUE_ABANDON_HOURS`` are closed;
- availability: counsellors vanishing with a process, or the chat's hours
  beginning or ending, send every queued resident their new state;
- unattended: never a queue nobody will read (``sweep_unattended``).

The moves themselves are the service's (``do_requeue``, ``do_close_abandoned``,
``do_back_to_bot``); this module picks what to move and when.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from datetime import timedelta

from redis import asyncio as aioredis

from bot.settings import Settings

from ..staff.service import StaffAuth
from ..handoff import Handoff
from ..presence import PRESENCE_HEARTBEAT_SECS, Presence
from ..redis_backend import redis_errors
from ..store.casework import Casework
from ..store.models import utcnow
from .channel import CounsellorChannel
from .service import CounsellorService

log = logging.getLogger(__name__)

GRACE_SWEEP_MIN_SECS = 0.2


class CounsellorSweeps:
    """The counsellor side's background jobs of one process."""

    def __init__(self, *, channel: CounsellorChannel, service: CounsellorService, casework: Casework,
                 handoff: Handoff, presence: Presence, auth: StaffAuth, settings: Settings,
                 redis: aioredis.Redis | None = None) -> None:
        self.channel = channel
        self.service = service
        self.casework = casework
        self.handoff = handoff
        self.presence = presence
        self.auth = auth
        self.redis = redis
        self.grace_secs = settings.counsellor_grace_secs
        self.nobody_back_secs = settings.queue_nobody_back_secs
        self.abandon_after = timedelta(hours=settings.queue_abandon_hours)
        self.grace_lock_key = f"{settings.redis_prefix}grace_sweep_lock"
        self.sweep_interval_secs = min(PRESENCE_HEARTBEAT_SECS, max(GRACE_SWEEP_MIN_SECS, self.grace_secs / 4))
        self._task: asyncio.Task | None = None
        self._last_availability: tuple[int, bool] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self.run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    async def run(self) -> None:
        next_heartbeat = 0.0
        while True:
            try:
                if time.monotonic() >= next_heartbeat:
                    next_heartbeat = time.monotonic() + PRESENCE_HEARTBEAT_SECS
                    await self.heartbeat()
                if await self._lead_sweep():
                    await self.sweep_grace()
                    await self.sweep_abandoned()
                    online = await self.presence.online_count()  # one read for both
                    await self._watch_availability(online)
                    await self.sweep_unattended(online=online)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis or the database away for a moment: try again next round
                log.warning("counsellor background work failed: %s", type(exc).__name__)
            await asyncio.sleep(self.sweep_interval_secs)

    async def heartbeat(self) -> None:
        """Keep this process's counsellors online; close the consoles of ended sign-ins."""
        connected = self.channel.connected_staff()
        for staff in {staff.id: staff for staff in connected}.values():
            await self.presence.heartbeat(str(staff.id), staff.display_name)
        live = await self.auth.live_session_ids({staff.session_id for staff in connected})
        await self.channel.close_consoles(live, keep=True)

    async def _lead_sweep(self) -> bool:
        """Whether this process does this round's sweep: one process at a time (a Redis lock)."""
        if self.redis is None:
            return True
        async with redis_errors():
            return bool(await self.redis.set(self.grace_lock_key, secrets.token_hex(8), nx=True,
                                             px=max(1, int(self.sweep_interval_secs * 900))))

    async def sweep_grace(self) -> None:
        """Requeue, to the front, the chats of counsellors gone longer than the grace period."""
        assigned = await self.casework.assignments()
        if not assigned:
            return
        online = await self.presence.online_ids()
        gone = {cid for _, cid, _ in assigned if cid and cid not in online}
        if not gone:
            return
        seen = await self.presence.last_seen(gone)
        now = time.time()
        expired = set()
        for counsellor_id in gone:
            if seen.get(counsellor_id) is None:  # never seen here (a restart): the grace starts now
                await self.presence.mark_seen(counsellor_id, now)
            elif now - seen[counsellor_id] >= self.grace_secs:
                expired.add(counsellor_id)
        # The latest queued first: each goes before the one requeued before it, so the
        # longest-waiting ends up in front.
        for conversation_id, counsellor_id, queued_at in sorted(
                (row for row in assigned if row[1] in expired),
                key=lambda row: row[2] or utcnow(), reverse=True):
            await self.service.do_requeue(conversation_id, counsellor_id)

    async def sweep_abandoned(self) -> None:
        """Close queued conversations whose resident has been silent longer than
        POLKU_QUEUE_ABANDON_HOURS: they would hold a place and inflate every wait."""
        if self.abandon_after <= timedelta(0):
            return
        cutoff = utcnow() - self.abandon_after
        for conversation_id in await self.casework.queued_silent_since(cutoff):
            if await self.service.do_close_abandoned(conversation_id, cutoff):
                log.info("conversation %s closed: queued without a word from the resident for %s",
                         conversation_id, self.abandon_after)

    async def sweep_unattended(self, *, now: float | None = None, online: int | None = None) -> list[int]:
        """Never a queue nobody will read. When every counsellor has left (nobody online
        for POLKU_QUEUE_NOBODY_BACK_SECS after someone was), or nobody is online and no counsellor is
        expected today (the chat's hours are over), every normal queued conversation goes
        back to the bot and its resident is told (handoff_no_counsellors). Crisis chats
        stay queued: a counsellor signing in sees them first. Returns the ones moved.
        ``online``: the count of counsellors online, when the caller has just read it."""
        now = time.monotonic() if now is None else now
        attendance = self.channel.attendance
        if online is None:
            online = await self.presence.online_count()
        if online > 0:
            attendance.nobody_since, attendance.had_counsellors = None, True
            return []
        if attendance.nobody_since is None:
            attendance.nobody_since = now
        all_left = attendance.had_counsellors and now - attendance.nobody_since >= self.nobody_back_secs
        day_over = not self.handoff.is_open() and not self.handoff.expected_soon()
        if not (all_left or day_over):
            return []
        moved = [conversation_id for conversation_id in await self.casework.queued_not_crisis()
                 if await self.service.do_back_to_bot(conversation_id)]
        if all_left:
            attendance.had_counsellors = False
        if moved:
            log.info("%d queued conversations back with the bot: %s", len(moved),
                     "every counsellor left" if all_left else "no counsellor expected today")
        return moved

    async def _watch_availability(self, online: int) -> None:
        """Counsellors who vanished with a process, or the chat's hours beginning or ending, change
        every queued resident's state: tell them."""
        now = (online, self.handoff.is_open())
        if self._last_availability is not None and now != self._last_availability:
            await self.handoff.queue_changed()
        self._last_availability = now
