"""Models added at run time and each task's current model, kept as rows of the job database: every
replica on every node reads the same ones (SQLite on one machine, PostgreSQL on a cluster), with no
shared directory, and a switch survives a restart."""

from __future__ import annotations

import time

import sqlalchemy as sa

from deployments.state.database import current_models, runtime_models
from registry import ModelEntry


class RuntimeModelRows:
    def __init__(self, engine: sa.Engine):
        self._engine = engine

    def add(self, entry: ModelEntry) -> None:
        with self._engine.begin() as db:  # replaced whole, in one transaction
            db.execute(runtime_models.delete().where(runtime_models.c.id == entry.id))
            db.execute(runtime_models.insert().values(id=entry.id, entry=entry.model_dump_json()))

    def remove(self, model_id: str) -> bool:
        with self._engine.begin() as db:
            return bool(db.execute(runtime_models.delete().where(runtime_models.c.id == model_id)).rowcount)

    def entries(self) -> list[ModelEntry]:
        with self._engine.begin() as db:
            rows = db.execute(sa.select(runtime_models.c.entry).order_by(runtime_models.c.id)).scalars().all()
        found = []
        for row in rows:
            try:
                found.append(ModelEntry.model_validate_json(row))
            except ValueError:  # written by another version
                continue
        return found

    def current_models(self) -> dict[str, str]:
        """Task -> the model chosen for it at run time (tasks never switched are absent)."""
        with self._engine.begin() as db:
            return dict(db.execute(sa.select(current_models.c.task, current_models.c.model_id)).tuples().all())

    def set_current(self, task: str, model_id: str) -> None:
        with self._engine.begin() as db:
            db.execute(current_models.delete().where(current_models.c.task == task))
            db.execute(current_models.insert().values(task=task, model_id=model_id, changed_at=time.time()))
