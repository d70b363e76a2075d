"""The recorded content changes (``admin_content_changes``): the history, the
links between a change and its undo, and the examples admins chose to keep
after their conversation was deleted (``admin_kept_examples``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, select

from ..admin_models import ContentChange, InboxDecision, KeptExample
from ..core import Store
from ..models import utcnow


@dataclass(frozen=True)
class ChangeEntry:
    """One edit as the history records it."""

    kind: str
    item: dict[str, Any]
    target: str
    summary: str
    before: Any
    after: Any


class ChangeRepository:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def history(self, limit: int, before_id: int | None = None) -> list[ContentChange]:
        """The newest changes first (older than ``before_id``, when given)."""
        async with self.store.reading() as session:
            query = select(ContentChange).order_by(ContentChange.id.desc()).limit(limit)
            if before_id:
                query = query.where(ContentChange.id < before_id)
            return list((await session.execute(query)).scalars())

    async def latest_id(self) -> int:
        async with self.store.reading() as session:
            return int((await session.execute(select(func.max(ContentChange.id)))).scalar() or 0)

    async def get(self, change_id: int) -> ContentChange | None:
        async with self.store.reading() as session:
            return await session.get(ContentChange, change_id)

    async def record(self, entries: list[ChangeEntry], *, staff_id: str, staff_name: str, source: str,
                     undo_of: int | None = None) -> list[ContentChange]:
        """Write the changes (one transaction). An undo marks the change it undoes; undoing an
        undo makes the first change stand again; and an inbox message whose example is
        taken back goes back to the inbox."""
        now = utcnow()
        async with self.store.transaction() as tx:
            rows = []
            for entry in entries:
                row = ContentChange(at=now, staff_id=staff_id, staff_name=staff_name, kind=entry.kind,
                                    item=entry.item, target=entry.target[:160], summary=entry.summary[:400],
                                    before=entry.before, after=entry.after, source=source, undo_of=undo_of)
                tx.session.add(row)
                rows.append(row)
            await tx.session.flush()
            if undo_of is not None:
                original = await tx.session.get(ContentChange, undo_of)
                original.undone_by = rows[0].id
                if original.undo_of is not None:
                    first = await tx.session.get(ContentChange, original.undo_of)
                    if first is not None:
                        first.undone_by = None
                await tx.session.execute(delete(InboxDecision).where(InboxDecision.change_id == undo_of))
            return rows

    async def examples(self, change_ids: list[int]) -> list[ContentChange]:
        """The changes among ``change_ids`` that are examples."""
        async with self.store.reading() as session:
            return list((await session.execute(select(ContentChange).where(
                ContentChange.id.in_(change_ids), ContentChange.kind == "example"))).scalars())

    async def blank_texts(self, change_ids: list[int], text: str) -> None:
        """Replace the example text of these changes (before, after, summary) with ``text``."""
        async with self.store.transaction() as tx:
            for row in (await tx.session.execute(
                    select(ContentChange).where(ContentChange.id.in_(change_ids)))).scalars():
                where = f"{row.item.get('intent')} ({row.item.get('language')})"
                row.before = text if isinstance(row.before, str) else row.before
                row.after = text if isinstance(row.after, str) else row.after
                row.summary = f"{'-' if row.source == 'retention' else '+'} {where}: {text}"

    async def keep_example(self, change_id: int, *, staff_id: str, staff_name: str, reason: str) -> bool:
        """Record an admin's decision to keep the example a change took from the inbox.
        False when ``change_id`` is not such a change."""
        async with self.store.transaction() as tx:
            row = await tx.session.get(ContentChange, change_id)
            if row is None or row.kind != "example" or row.source != "inbox":
                return False
            if await tx.session.get(KeptExample, change_id) is None:
                tx.session.add(KeptExample(change_id=change_id, staff_id=staff_id, staff_name=staff_name,
                                           reason=reason, at=utcnow()))
            return True
