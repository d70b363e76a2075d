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
from typing import Any, Callable

from bot.content import Content, ContentError
from bot.language import Lexicon
from bot.policy import Bot

from ..errors import EditConflict, UndoRefused
from ..store.admin.changes import ChangeEntry, ChangeRepository
from ..store.admin_models import ContentChange
from . import editing
from .edit_requests import check_edit
from .editing import Edit, TrainingData

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


EditBuilder = Callable[[TrainingData], list[Edit]]


class ContentService:
    """The training data files as recorded, undoable edits, and the running bot kept in step."""

    def __init__(self, directory: Path, changes: ChangeRepository, bot: Bot) -> None:
        self.directory = directory
        self.changes = changes
        self.bot = bot
        self._lock = asyncio.Lock()
        self._signature: tuple | None = None

    # --- reading -----------------------------------------------------------------------

    async def data(self) -> TrainingData:
        return await asyncio.to_thread(TrainingData.load, self.directory)

    async def history(self, limit: int = HISTORY_PAGE_SIZE, before_id: int | None = None) -> list[dict]:
        return [change_json(row) for row in await self.changes.history(limit, before_id)]

    async def version(self) -> int:
        return await self.changes.latest_id()

    # --- changing ----------------------------------------------------------------------

    async def submit(self, request: dict[str, Any], staff: StaffRef, *, source: str = "page") -> dict:
        """Check and make the edit a page request asks for; returns the recorded change."""
        def build(data: TrainingData) -> list[Edit]:
            return [check_edit(data, request)]
        return (await self._change(build, staff, source))[0]

    async def submit_edits(self, build: EditBuilder, staff: StaffRef, *, source: str) -> list[dict]:
        """``build(data) -> [Edit]`` made as one checked write (the inbox adds several examples)."""
        return await self._change(build, staff, source)

    async def undo(self, change_id: int, staff: StaffRef) -> dict:
        row = await self.changes.get(change_id)
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

    async def _change(self, build: EditBuilder, staff: StaffRef, source: str,
                      undo_of: ContentChange | None = None) -> list[dict]:
        async with self._lock:
            edits, previous = await asyncio.to_thread(self._write, build)
            if not edits:
                return []
            try:
                rows = await self.changes.record(
                    [ChangeEntry(e.kind, e.key, e.target, e.summary(), e.before, e.after) for e in edits],
                    staff_id=staff.id, staff_name=staff.name, source=source,
                    undo_of=undo_of.id if undo_of is not None else None)
            except BaseException:
                await asyncio.to_thread(editing.restore, previous)
                raise
            await self.reload()
            return [change_json(row) for row in rows]

    def _write(self, build: EditBuilder) -> tuple[list[Edit], dict[Path, str]]:
        with editing.directory_lock(self.directory):
            data = TrainingData.load(self.directory)
            edits = [e for e in build(data) if e.before != e.after]
            if not edits:
                return [], {}
            changed = editing.check_against(data, edits)
            return edits, editing.write(changed)

    # --- the running bot -------------------------------------------------------------------

    async def reload(self) -> bool:
        """Load the files into the running bot (answers and facts take effect at once;
        examples only reach the model with the next training). False when they do not load."""
        if not _reloadable(self.bot, self.directory):
            return False
        signature = await asyncio.to_thread(_signature, self.directory)
        try:
            content, lexicon = await asyncio.to_thread(_load, self.directory)
        except ContentError as exc:
            log.warning("training data do not load; the bot keeps its previous content: %s", exc)
            self._signature = signature
            return False
        self.bot.replace_content(content, lexicon)
        self._signature = signature
        log.info("bot content reloaded from %s", self.directory)
        return True

    async def prime(self) -> None:
        """Note the files as the bot loaded them (at start), for ``watch`` to compare with."""
        self._signature = await asyncio.to_thread(_signature, self.directory)

    async def watch(self) -> None:
        """Reload whenever the files change (edits through other processes, or by hand)."""
        if not _reloadable(self.bot, self.directory):
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


def _reloadable(bot: Bot, directory: Path) -> bool:
    """Only a bot loaded from this very directory is reloaded (tests share one Bot)."""
    content = getattr(bot, "content", None)
    return (isinstance(content, Content) and content.directory is not None
            and Path(content.directory).resolve() == directory.resolve())


def _load(directory: Path) -> tuple[Content, Lexicon]:
    """The content of the files, and the words of its examples (in a thread: it takes a while)."""
    content = Content.load(directory)
    return content, Bot.language_lexicon(content)
