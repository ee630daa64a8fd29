"""Models added at run time: a hub repo outside catalog.yaml, downloaded with POST /models/download
and a `task`, becomes a model of that task's family without a restart.

Each one is a JSON file in a folder that every replica sees (under the job store's data_dir, which
is shared storage on a cluster), written whole and renamed into place. `LiveCatalog` is the catalog
plus those files, looked at again whenever a name is not found, so a model registered by one
ingress replica is found at once by every other replica and family deployment.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

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


class RuntimeModels:
    """The folder of runtime model entries, one `<id>.json` each."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)

    def add(self, entry: ModelEntry) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        handle, staged = tempfile.mkstemp(dir=self.folder, prefix=".staged-")
        with os.fdopen(handle, "w") as out:
            out.write(entry.model_dump_json())
        os.replace(staged, self.folder / f"{entry.id}.json")

    def remove(self, model_id: str) -> bool:
        try:
            (self.folder / f"{model_id}.json").unlink()
            return True
        except FileNotFoundError:
            return False

    def entries(self) -> list[ModelEntry]:
        found = []
        for path in sorted(self.folder.glob("*.json")):
            try:
                found.append(ModelEntry.model_validate_json(path.read_text()))
            except (OSError, ValueError):  # removed meanwhile, or written by another version
                continue
        return found


class LiveCatalog:
    """Reads like a Catalog (every attribute is the current one's); lookups that miss look again."""

    def __init__(self, base: Catalog, folder: Path):
        self.base = base
        self.runtime = RuntimeModels(folder)
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
