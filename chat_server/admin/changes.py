"""Content edits as recorded changes: apply, list, undo; and the running
bot's content kept in step with the files.

File work (YAML parsing, checks, atomic writes) runs in a thread under a
lock file of the training data directory; the change record is written
after the files, and the files are put back if it cannot be.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import delete, func, select

from bot.content import Content, ContentError

from ..store.admin_models import ContentChange, InboxDecision
from ..store.models import utcnow
from . import editing
from .editing import Edit, EditConflict, EditRefused, TrainingData

log = logging.getLogger(__name__)

# How often every process looks whether the training data files changed
# (an edit made through another process, or by hand).
CONTENT_WATCH_INTERVAL_SECS = 2.0
HISTORY_PAGE_SIZE = 50


@dataclass(frozen=True)
class StaffRef:
    id: str
    name: str

    @classmethod
    def of(cls, staff: Any) -> "StaffRef":
        return cls(str(staff.id), str(getattr(staff, "display_name", None) or staff.username))


class UndoRefused(ValueError):
    """The change cannot be undone (already undone, or changed again since)."""


def change_json(row: ContentChange) -> dict[str, Any]:
    return {"id": row.id, "at": row.at.isoformat(), "staff_name": row.staff_name, "kind": row.kind,
            "item": row.item, "target": row.target, "summary": row.summary, "before": row.before,
            "after": row.after, "source": row.source, "undo_of": row.undo_of, "undone_by": row.undone_by}


def _signature(directory: Path) -> tuple:
    files = sorted(directory.glob("*.yml")) + sorted((directory / "intents").glob("*.yml"))
    out = []
    for path in files:
        try:
            stat = path.stat()
        except FileNotFoundError:
            continue
        out.append((path.name, stat.st_mtime_ns, stat.st_size))
    return tuple(out)


class ContentService:
    def __init__(self, server: Any) -> None:
        self.server = server
        self.directory = Path(server.settings.training_data_dir)
        self._lock = asyncio.Lock()
        self._signature: tuple | None = None

    # --- reading -----------------------------------------------------------------------

    async def data(self) -> TrainingData:
        return await asyncio.to_thread(TrainingData.load, self.directory)

    async def history(self, limit: int = HISTORY_PAGE_SIZE, before_id: int | None = None) -> list[dict]:
        async with self.server.store.reading() as session:
            query = select(ContentChange).order_by(ContentChange.id.desc()).limit(limit)
            if before_id:
                query = query.where(ContentChange.id < before_id)
            return [change_json(row) for row in (await session.execute(query)).scalars()]

    async def version(self) -> int:
        async with self.server.store.reading() as session:
            return int((await session.execute(select(func.max(ContentChange.id)))).scalar() or 0)

    # --- changing ----------------------------------------------------------------------

    async def submit(self, request: dict[str, Any], staff: StaffRef, *, source: str = "page") -> dict:
        """Check and make the edit a page request asks for; returns the recorded change."""
        def build(data: TrainingData) -> list[Edit]:
            return [editing.check_edit(data, request)]
        return (await self._change(build, staff, source))[0]

    async def submit_edits(self, build, staff: StaffRef, *, source: str) -> list[dict]:
        """``build(data) -> [Edit]`` made as one checked write (the inbox adds several examples)."""
        return await self._change(build, staff, source)

    async def undo(self, change_id: int, staff: StaffRef) -> dict:
        async with self.server.store.reading() as session:
            row = await session.get(ContentChange, change_id)
        if row is None:
            raise UndoRefused("no such change")
        if row.undone_by is not None:
            raise UndoRefused("already undone")
        edit = Edit(row.kind, dict(row.item), row.before, row.after).inverse()
        try:
            recorded = await self._change(lambda data: [edit], staff, "undo", undo_of=row)
        except EditConflict as exc:
            raise UndoRefused(f"changed again since: {exc}") from None
        return recorded[0]

    async def _change(self, build, staff: StaffRef, source: str, undo_of: ContentChange | None = None) -> list[dict]:
        async with self._lock:
            edits, previous = await asyncio.to_thread(self._write, build)
            if not edits:
                return []
            try:
                rows = await self._record(edits, staff, source, undo_of)
            except BaseException:
                await asyncio.to_thread(editing.restore, previous)
                raise
            await self.reload()
            return [change_json(row) for row in rows]

    def _write(self, build) -> tuple[list[Edit], dict[Path, str]]:
        with editing.directory_lock(self.directory):
            data = TrainingData.load(self.directory)
            edits = [e for e in build(data) if e.before != e.after]
            if not edits:
                return [], {}
            changed = editing.check_against(data, edits)
            return edits, editing.write(changed)

    async def _record(self, edits: list[Edit], staff: StaffRef, source: str,
                      undo_of: ContentChange | None) -> list[ContentChange]:
        now = utcnow()
        async with self.server.store.transaction() as tx:
            rows = []
            for edit in edits:
                row = ContentChange(at=now, staff_id=staff.id, staff_name=staff.name, kind=edit.kind,
                                    item=edit.key, target=edit.target[:160], summary=edit.summary()[:400],
                                    before=edit.before, after=edit.after, source=source,
                                    undo_of=undo_of.id if undo_of is not None else None)
                tx.session.add(row)
                rows.append(row)
            await tx.session.flush()
            if undo_of is not None:
                original = await tx.session.get(ContentChange, undo_of.id)
                original.undone_by = rows[0].id
                if original.undo_of is not None:
                    # Undoing an undo makes the first change stand again.
                    first = await tx.session.get(ContentChange, original.undo_of)
                    if first is not None:
                        first.undone_by = None
                # An inbox message whose example is taken back goes back to the inbox.
                await tx.session.execute(delete(InboxDecision).where(InboxDecision.change_id == undo_of.id))
            return rows

    # --- the running bot -------------------------------------------------------------------

    async def reload(self) -> bool:
        """Load the files into the running bot (answers and facts take effect at once;
        examples only reach the model with the next training). False when they do not load."""
        bot = self.server.bot
        if not _reloadable(bot, self.directory):
            return False
        signature = await asyncio.to_thread(_signature, self.directory)
        try:
            fresh = await asyncio.to_thread(_fresh_bot, bot, self.directory)
        except ContentError as exc:
            log.warning("training data do not load; the bot keeps its previous content: %s", exc)
            self._signature = signature
            return False
        bot.content, bot.lexicon = fresh.content, fresh.lexicon
        self._signature = signature
        log.info("bot content reloaded from %s", self.directory)
        return True

    async def prime(self) -> None:
        """Note the files as the bot loaded them (at start), for ``watch`` to compare with."""
        self._signature = await asyncio.to_thread(_signature, self.directory)

    async def watch(self) -> None:
        """Reload whenever the files change (edits through other processes, or by hand)."""
        if not _reloadable(self.server.bot, self.directory):
            return
        while True:
            await asyncio.sleep(CONTENT_WATCH_INTERVAL_SECS)
            try:
                signature = await asyncio.to_thread(_signature, self.directory)
                if signature != self._signature and not self._lock.locked():
                    await self.reload()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # keep watching
                log.error("content watch failed: %s", type(exc).__name__)


def _reloadable(bot: Any, directory: Path) -> bool:
    """Only a real Bot loaded from this very directory is reloaded (tests share one Bot)."""
    content = getattr(bot, "content", None)
    return (isinstance(content, Content) and content.directory is not None
            and Path(content.directory).resolve() == directory.resolve())


def _fresh_bot(bot: Any, directory: Path) -> Any:
    from bot.policy import Bot

    return Bot(Content.load(directory), bot.nlu, fallback_threshold=bot.fallback_threshold,
               fallbacks_before_handoff=bot.fallbacks_before_handoff,
               default_language=bot.default_language)


__all__ = ["ContentService", "StaffRef", "UndoRefused", "EditRefused", "EditConflict", "change_json"]
