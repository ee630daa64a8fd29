"""Voices saved for cloning models (POST /voices): a name, the model, the sample (an upload in the job
store's files) and its transcript, kept as rows of the job database so every replica on every node
finds them. A request then clones the voice by `voice` name instead of sending the sample again."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from deployments.state.database import saved_voices


@dataclass(frozen=True)
class SavedVoice:
    name: str
    model_id: str
    file_id: str
    transcript: str
    duration: float
    created_at: float
    owner: str | None = None  # hash of the API key that saved it; None when no keys are configured


class VoiceNameTaken(Exception):
    """The name is another key's voice: names are one namespace, voices are not shared."""


class SavedVoiceRows:
    """Each method takes the caller's `owner` (None: no keys configured, every voice is everyone's)."""

    def __init__(self, engine: sa.Engine):
        self._engine = engine

    def add(self, name: str, model_id: str, file_id: str, transcript: str, duration: float,
            owner: str | None = None) -> SavedVoice:
        """Save (or replace) the voice `name`; VoiceNameTaken when another key holds the name."""
        voice = SavedVoice(name, model_id, file_id, transcript, duration, time.time(), owner)
        with self._engine.begin() as db:
            held = db.execute(sa.select(saved_voices.c.owner).where(saved_voices.c.name == name)).first()
            if held is not None and owner is not None and held.owner != owner:
                raise VoiceNameTaken(name)
            db.execute(saved_voices.delete().where(saved_voices.c.name == name))
            db.execute(saved_voices.insert().values(**voice.__dict__))
        return voice

    def get(self, name: str, owner: str | None = None) -> SavedVoice | None:
        with self._engine.begin() as db:
            row = db.execute(saved_voices.select().where(_mine(owner, saved_voices.c.name == name))).mappings().first()
        return SavedVoice(**row) if row else None

    def list(self, model_id: str | None = None, owner: str | None = None) -> list[SavedVoice]:
        query = saved_voices.select().where(_mine(owner)).order_by(saved_voices.c.name)
        if model_id:
            query = query.where(saved_voices.c.model_id == model_id)
        with self._engine.begin() as db:
            return [SavedVoice(**row) for row in db.execute(query).mappings().all()]

    def remove(self, name: str, owner: str | None = None) -> bool:
        with self._engine.begin() as db:
            return bool(db.execute(saved_voices.delete().where(_mine(owner, saved_voices.c.name == name))).rowcount)


def _mine(owner: str | None, *conditions: Any) -> Any:
    """The rows `owner` may see, and `conditions`."""
    return sa.and_(sa.true(), *conditions, *([saved_voices.c.owner == owner] if owner is not None else []))
