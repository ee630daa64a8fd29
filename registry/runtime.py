"""Models added at run time: a hub repo outside catalog.yaml, downloaded with POST /models/download
and a `task`, becomes a model of that task's family without a restart.

Each one is kept where every replica on every node reads it (a row of the job database, SQLite or
PostgreSQL). `LiveCatalog` is the catalog plus those entries, looked at again whenever a name is not
found, so a model registered by one ingress replica is found at once by every other replica and
family deployment.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, Protocol

from registry.loader import Catalog, UnknownModelError
from registry.schema import HubRepo, ModelEntry

REFRESH_SECONDS = 2.0


def runtime_entry(catalog: Catalog, name: str, repo: HubRepo, task: str, extra: Sequence[HubRepo] = ()) -> ModelEntry:
    """An entry for `repo` in `task`'s default family, with the limits, capabilities and companions
    (vocoder, speaker embeddings) of that family's default model; `extra` repos replace companions
    of the same role."""
    family = catalog.models[catalog.tasks[task].default_model].family
    template = catalog.models[catalog.families[family].default_model]
    roles = {r.role for r in extra}
    return ModelEntry(
        id=name, family=family, variant=name, display_name=repo.repo_id,
        description=f"{repo.repo_id}, downloaded at run time as a {family} model (limits of {template.id})",
        hub=repo, companions=[*(c for c in template.companions if c.role not in roles), *extra],
        capabilities=template.capabilities, specs=template.specs,
    )


class RuntimeModels(Protocol):
    """Where runtime model entries are kept: somewhere every replica on every node reads
    (deployments/runtime_models.py keeps them as rows of the job database)."""

    def add(self, entry: ModelEntry) -> None: ...
    def remove(self, model_id: str) -> bool: ...
    def entries(self) -> list[ModelEntry]: ...


class LiveCatalog:
    """Reads like a Catalog (every attribute is the current one's); lookups that miss look again."""

    def __init__(self, base: Catalog, runtime: RuntimeModels):
        self.base = base
        self.runtime = runtime
        self.refresh()

    def refresh(self) -> Catalog:
        self._current = self.base.with_models(self.runtime.entries())
        self._checked = time.monotonic()
        return self._current

    def current(self) -> Catalog:
        return self.refresh() if time.monotonic() - self._checked > REFRESH_SECONDS else self._current

    def resolve(self, name: str, task: str | None = None) -> ModelEntry:
        try:
            return self.current().resolve(name, task)
        except UnknownModelError:
            return self.refresh().resolve(name, task)

    def is_runtime(self, model_id: str) -> bool:
        return model_id not in self.base.models

    def __getattr__(self, name: str) -> Any:
        return getattr(self.current(), name)


CatalogView = Catalog | LiveCatalog  # what a family or a route reads limits from
