"""Voices saved for cloning models (POST /voices): a name, the model, the sample (an upload in the job
store's files) and its transcript, kept as rows of the job database so every replica on every node
finds them. A request then clones the voice by `voice` name instead of sending the sample again."""

from __future__ import annotations

import time
from dataclasses import dataclass

import sqlalchemy as sa

from deployments.jobs.database import saved_voices


@dataclass(frozen=True)
class SavedVoice:
    name: str
    model_id: str
    file_id: str
    transcript: str
    duration: float
    created_at: float


class SavedVoiceRows:
    def __init__(self, engine: sa.Engine):
        self._engine = engine

    def add(self, name: str, model_id: str, file_id: str, transcript: str, duration: float) -> SavedVoice:
        """Save (or replace) the voice `name`."""
        voice = SavedVoice(name, model_id, file_id, transcript, duration, time.time())
        with self._engine.begin() as db:
            db.execute(saved_voices.delete().where(saved_voices.c.name == name))
            db.execute(saved_voices.insert().values(**voice.__dict__))
        return voice

    def get(self, name: str) -> SavedVoice | None:
        with self._engine.begin() as db:
            row = db.execute(saved_voices.select().where(saved_voices.c.name == name)).mappings().first()
        return SavedVoice(**row) if row else None

    def list(self, model_id: str | None = None) -> list[SavedVoice]:
        query = saved_voices.select().order_by(saved_voices.c.name)
        if model_id:
            query = query.where(saved_voices.c.model_id == model_id)
        with self._engine.begin() as db:
            return [SavedVoice(**row) for row in db.execute(query).mappings().all()]

    def remove(self, name: str) -> bool:
        with self._engine.begin() as db:
            return bool(db.execute(saved_voices.delete().where(saved_voices.c.name == name)).rowcount)
