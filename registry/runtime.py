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
    """An entry for `repo` in `task`'s default family, with the limits, capabilities, engine and companions
    (vocoder, speaker embeddings) of that family's default model; `extra` repos replace companions
    of the same role."""
    family = catalog.models[catalog.tasks[task].default_model].family
    template = catalog.models[catalog.families[family].default_model]
    roles = {r.role for r in extra}
    return ModelEntry(
        id=name, family=family, variant=name, display_name=repo.repo_id,
        description=f"{repo.repo_id}, downloaded at run time as a {family} model (limits of {template.id})",
        hub=repo, companions=[*(c for c in template.companions if c.role not in roles), *extra],
        capabilities=template.capabilities, specs=template.specs, engine=template.engine,
    )


class RuntimeModels(Protocol):
    """Where runtime model entries are kept: somewhere every replica on every node reads
    (deployments/state/runtime_models.py keeps them as rows of the job database)."""

    def add(self, entry: ModelEntry) -> None: ...
    def remove(self, model_id: str) -> bool: ...
    def entries(self) -> list[ModelEntry]: ...
    def current_models(self) -> dict[str, str]: ...
    def set_current(self, task: str, model_id: str) -> None: ...


class LiveCatalog:
    """Reads like a Catalog (every attribute is the current one's); lookups that miss look again. A
    task's default model is the one switched to at run time, when there is one (`set_current`)."""

    def __init__(self, base: Catalog, runtime: RuntimeModels):
        self.base = base
        self.runtime = runtime
        self.refresh()

    def refresh(self) -> Catalog:
        self._current = self.base.with_models(self.runtime.entries())
        self._chosen = self.runtime.current_models()
        self._checked = time.monotonic()
        return self._current

    def current_model(self, task: str) -> str:
        """The id requests for `task` that name no model get: the run-time choice, else the catalog's."""
        catalog = self.current()
        chosen = self._chosen.get(task)
        if chosen in catalog.models and catalog.task_of(catalog.models[chosen]) == task:
            return chosen
        return catalog.tasks[task].default_model

    def default_model(self, task: str) -> ModelEntry:
        return self.current().models[self.current_model(task)]

    def set_current(self, task: str, model_id: str) -> None:
        self.runtime.set_current(task, model_id)
        self.refresh()

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
