"""The admin pages' tables (issue 5): content change history, training runs,
the model registry, the inbox of what the bot did not understand, and the
daily statistics that outlive deleted conversations.

Staff are referred to by id and by the display name they had at the time,
without a foreign key: the history must survive a deleted account.
Nothing here holds a resident's personal data apart from the inbox's link to
a (redacted) message, which goes when the conversation goes.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import Date, Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from .models import Base, BigId, JsonValue, UtcDateTime


class ContentChange(Base):
    """One edit of the training data, answers or service facts, with what it replaced."""

    __tablename__ = "admin_content_changes"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime())
    staff_id: Mapped[str] = mapped_column(String(64))
    staff_name: Mapped[str] = mapped_column(String(120))
    kind: Mapped[str] = mapped_column(String(24))  # example, description, answer, fact, opening_hours
    target: Mapped[str] = mapped_column(String(160))  # intent / response / fact name (+ language)
    item: Mapped[dict[str, Any]] = mapped_column(JsonValue)  # the slot: {"intent", "language"}, {"fact"}...
    summary: Mapped[str] = mapped_column(String(400))
    before: Mapped[Any] = mapped_column(JsonValue, nullable=True)
    after: Mapped[Any] = mapped_column(JsonValue, nullable=True)
    source: Mapped[str] = mapped_column(String(16))  # page, inbox, undo
    undo_of: Mapped[int | None] = mapped_column(BigId, nullable=True)
    undone_by: Mapped[int | None] = mapped_column(BigId, nullable=True)


class TrainingRun(Base):
    """A retraining started from the admin page; ``running_slot`` admits one at a time."""

    __tablename__ = "admin_training_runs"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    # 1 while the run is going, NULL after: the unique constraint is the lock.
    running_slot: Mapped[int | None] = mapped_column(Integer, unique=True, nullable=True)
    started_at: Mapped[datetime] = mapped_column(UtcDateTime())
    started_by: Mapped[str] = mapped_column(String(64))
    started_by_name: Mapped[str] = mapped_column(String(120))
    heartbeat_at: Mapped[datetime] = mapped_column(UtcDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    status: Mapped[str] = mapped_column(String(16))  # running, ready, failed
    phase: Mapped[str] = mapped_column(String(24))  # preparing, training, saving, starting, evaluating, done
    progress: Mapped[float] = mapped_column(Float)  # 0..1 over all phases
    model_name: Mapped[str | None] = mapped_column(String(128), nullable=True)
    timings: Mapped[dict[str, Any] | None] = mapped_column(JsonValue, nullable=True)
    evaluation: Mapped[dict[str, Any] | None] = mapped_column(JsonValue, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)


class BotModel(Base):
    """A trained model file the admin pages know about, with its held-out evaluation."""

    __tablename__ = "admin_bot_models"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    trained_at: Mapped[datetime] = mapped_column(UtcDateTime())
    trained_by_name: Mapped[str | None] = mapped_column(String(120), nullable=True)
    examples: Mapped[int | None] = mapped_column(Integer, nullable=True)
    evaluation: Mapped[dict[str, Any] | None] = mapped_column(JsonValue, nullable=True)


class ModelActivation(Base):
    __tablename__ = "admin_model_activations"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    model_name: Mapped[str] = mapped_column(String(128), index=True)
    previous_model: Mapped[str | None] = mapped_column(String(128), nullable=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime())
    staff_id: Mapped[str] = mapped_column(String(64))
    staff_name: Mapped[str] = mapped_column(String(120))
    swap_secs: Mapped[float | None] = mapped_column(Float, nullable=True)


class MessageGuess(Base):
    """The model's best guesses for a resident message (intent, confidence), best first."""

    __tablename__ = "message_intent_guesses"

    message_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("messages.id", ondelete="CASCADE"), primary_key=True)
    guesses: Mapped[list[Any]] = mapped_column(JsonValue)


class InboxDecision(Base):
    """What an admin did with a message the bot did not understand."""

    __tablename__ = "admin_inbox_decisions"

    message_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("messages.id", ondelete="CASCADE"), primary_key=True)
    action: Mapped[str] = mapped_column(String(16))  # assigned, dismissed
    intent: Mapped[str | None] = mapped_column(String(64), nullable=True)
    change_id: Mapped[int | None] = mapped_column(BigId, nullable=True, index=True)
    staff_id: Mapped[str] = mapped_column(String(64))
    staff_name: Mapped[str] = mapped_column(String(120))
    at: Mapped[datetime] = mapped_column(UtcDateTime())


class DailyStat(Base):
    """Counts of one measure on one (local) day, rolled up from deleted conversations."""

    __tablename__ = "stats_daily"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    measure: Mapped[str] = mapped_column(String(40), primary_key=True)
    key: Mapped[str] = mapped_column(String(80), primary_key=True)
    count: Mapped[int] = mapped_column(Integer)


class RetentionRun(Base):
    __tablename__ = "admin_retention_runs"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime())
    cutoff: Mapped[datetime] = mapped_column(UtcDateTime())
    conversations_deleted: Mapped[int] = mapped_column(Integer)
    trigger: Mapped[str] = mapped_column(String(16))  # schedule, admin


class KeptExample(Base):
    """An admin's recorded decision to keep a training example that came from a resident's
    message after its conversation is deleted (otherwise the example goes with it)."""

    __tablename__ = "admin_kept_examples"

    change_id: Mapped[int] = mapped_column(BigId, primary_key=True)  # the change that added the example
    staff_id: Mapped[str] = mapped_column(String(64))
    staff_name: Mapped[str] = mapped_column(String(120))
    reason: Mapped[str] = mapped_column(String(400))
    at: Mapped[datetime] = mapped_column(UtcDateTime())
