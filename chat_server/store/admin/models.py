"""The bot's models as the admin pages know them: trained models
(``admin_bot_models``), their activations (``admin_model_activations``) and
the training runs (``admin_training_runs``, whose unique ``running_slot`` is
the lock that lets one run go at a time)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from ..admin_models import BotModel, ModelActivation, TrainingRun
from ..core import Store
from ..models import utcnow


class ModelRepository:
    def __init__(self, store: Store) -> None:
        self.store = store

    # --- models and activations ------------------------------------------------------------

    async def register(self, name: str, *, trained_by: str | None, examples: int | None,
                       evaluation: dict | None, trained_at: datetime | None = None) -> None:
        async with self.store.transaction() as tx:
            row = await tx.session.get(BotModel, name)
            if row is None:
                row = BotModel(name=name, trained_at=trained_at or utcnow())
                tx.session.add(row)
            row.trained_by_name = trained_by
            row.examples = examples
            if evaluation is not None:
                row.evaluation = evaluation

    async def evaluation_of(self, name: str) -> dict | None:
        async with self.store.reading() as session:
            row = await session.get(BotModel, name)
            return row.evaluation if row is not None else None

    async def models(self) -> tuple[dict[str, BotModel], dict[str, ModelActivation]]:
        """Every registered model by name, and each model's last activation."""
        async with self.store.reading() as session:
            rows = {r.name: r for r in (await session.execute(select(BotModel))).scalars()}
            activations = (await session.execute(
                select(ModelActivation).order_by(ModelActivation.id.desc()))).scalars().all()
        last: dict[str, ModelActivation] = {}
        for activation in activations:
            last.setdefault(activation.model_name, activation)
        return rows, last

    async def record_activation(self, name: str, *, previous: str | None, staff_id: str, staff_name: str,
                                swap_secs: float) -> None:
        async with self.store.transaction() as tx:
            tx.session.add(ModelActivation(model_name=name, previous_model=previous, at=utcnow(),
                                           staff_id=staff_id, staff_name=staff_name, swap_secs=swap_secs))

    # --- training runs -------------------------------------------------------------------------

    async def latest_run(self) -> TrainingRun | None:
        async with self.store.reading() as session:
            return (await session.execute(
                select(TrainingRun).order_by(TrainingRun.id.desc()).limit(1))).scalar_one_or_none()

    async def start_run(self, *, staff_id: str, staff_name: str) -> TrainingRun | None:
        """A new running run; None when one is running already (in any process)."""
        now = utcnow()
        try:
            async with self.store.transaction() as tx:
                row = TrainingRun(running_slot=1, started_at=now, started_by=staff_id,
                                  started_by_name=staff_name, heartbeat_at=now, status="running",
                                  phase="preparing", progress=0.0)
                tx.session.add(row)
                await tx.session.flush()
        except IntegrityError:
            return None
        return row

    async def expire_stale(self, heartbeat_before: datetime, error: str) -> None:
        """Runs whose process stopped beating before ``heartbeat_before`` failed with ``error``."""
        async with self.store.transaction() as tx:
            await tx.session.execute(
                update(TrainingRun)
                .where(TrainingRun.running_slot.is_not(None), TrainingRun.heartbeat_at < heartbeat_before)
                .values(running_slot=None, status="failed", finished_at=utcnow(), error=error))

    async def update_run(self, run_id: int, **values: Any) -> None:
        async with self.store.transaction() as tx:
            await tx.session.execute(update(TrainingRun).where(TrainingRun.id == run_id).values(**values))
