"""Models added at run time, kept as rows of the job database: every replica on every node reads
the same ones (SQLite on one machine, PostgreSQL on a cluster), with no shared directory."""

from __future__ import annotations

import sqlalchemy as sa

from deployments.jobs.database import runtime_models
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
