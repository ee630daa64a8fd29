"""Load the catalog data file, apply environment overrides, and check cross-references.

A broken catalog raises CatalogError naming the entry and field, so the service fails at start
instead of at the first request that touches the bad entry.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from registry.schema import AdapterEntry, CatalogFile, FamilyConfig, ModelEntry, ModelSpecs, NotServed, TaskConfig

DEFAULT_CATALOG_PATH = Path(__file__).with_name("catalog.yaml")
OVERRIDE_PREFIX = "CATALOG__"


class CatalogError(ValueError):
    """The catalog file (or an override of it) is invalid."""


class UnknownModelError(LookupError):
    """A request named a model the catalog does not have."""

    def __init__(self, name: str, known: list[str], task: str | None = None, instead: NotServed | None = None):
        self.name, self.known, self.task = name, known, task
        scope = f" for task '{task}'" if task else ""
        hint = f" It is not served here: {instead.why}; use '{instead.use}' instead." if instead else ""
        super().__init__(f"Model '{name}' not found{scope}.{hint} Known models: {', '.join(known)}")


class Catalog(BaseModel):
    """The validated catalog, with the lookups every route needs."""

    model_config = ConfigDict(frozen=True)

    tasks: dict[str, TaskConfig]
    families: dict[str, FamilyConfig]
    models: dict[str, ModelEntry]
    adapters: dict[str, AdapterEntry] = {}
    not_served: dict[str, NotServed] = {}  # lower-cased name -> what to use instead

    def resolve(self, name: str, task: str | None = None) -> ModelEntry:
        """Find a model by id, alias or hub repo id (case-insensitive); optionally within one task."""
        wanted = name.strip().lower()
        candidates = [m for m in self.models.values() if task is None or self.task_of(m) == task]
        for entry in candidates:
            if wanted in entry.names:
                return entry
        raise UnknownModelError(name, [m.id for m in candidates], task, self.not_served.get(wanted))

    def variant(self, family: str, variant: str | None) -> ModelEntry:
        """Seed 000's `model_variant` within a family; None means the family default."""
        if variant is None:
            return self.models[self.families[family].default_model]
        members = [m for m in self.models.values() if m.family == family]
        for entry in members:
            if variant.lower() in {entry.variant.lower(), *entry.names}:
                return entry
        raise UnknownModelError(variant, [m.variant for m in members], self.families[family].task)

    def with_models(self, extra: list[ModelEntry]) -> Catalog:
        """This catalog plus `extra` entries (models added at run time); one whose id or names clash
        with a model already here, or whose family is unknown, is left out."""
        models = dict(self.models)
        taken = {name for entry in models.values() for name in entry.names}
        for entry in extra:
            if entry.family in self.families and not entry.names & taken:
                models[entry.id] = entry
                taken |= entry.names
        return self.model_copy(update={"models": models}) if len(models) > len(self.models) else self

    def task_named(self, name: str) -> str | None:
        """The task `name` means (its own name or one of its aliases), or None."""
        wanted = name.strip().lower()
        return next((task for task, config in self.tasks.items() if wanted in (task, *config.aliases)), None)

    def task_of(self, entry: ModelEntry) -> str:
        return self.families[entry.family].task

    def default_model(self, task: str) -> ModelEntry:
        return self.models[self.tasks[task].default_model]

    def models_for_task(self, task: str) -> list[ModelEntry]:
        return [m for m in self.models.values() if self.task_of(m) == task]


def load_catalog(path: str | Path | None = None, environ: Mapping[str, str] | None = None) -> Catalog:
    """Read, override from `CATALOG__<MODEL>__<FIELD>` variables, validate, cross-check."""
    path = Path(path) if path else DEFAULT_CATALOG_PATH
    environ = os.environ if environ is None else environ
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise CatalogError(f"Catalog {path}: cannot be read: {exc}") from exc
    try:
        catalog_file = CatalogFile.model_validate(raw)
    except ValidationError as exc:
        raise CatalogError(f"Catalog {path}: {_describe(exc)}") from exc

    overrides = _spec_overrides(environ)
    models: dict[str, ModelEntry] = {}
    for index, raw_entry in enumerate(catalog_file.models):
        label = raw_entry.get("id", f"#{index}") if isinstance(raw_entry, dict) else f"#{index}"
        try:
            entry = ModelEntry.model_validate(_with_overrides(raw_entry, overrides.pop(_env_key(label), {})))
        except ValidationError as exc:
            raise CatalogError(f"Catalog {path}: entry '{label}' {_describe(exc)}") from exc
        if entry.id in models:
            raise CatalogError(f"Catalog {path}: entry '{entry.id}' field 'id': duplicate id")
        models[entry.id] = entry
    if overrides:
        unknown = ", ".join(f"{OVERRIDE_PREFIX}{key}__..." for key in overrides)
        raise CatalogError(f"Environment overrides name no catalog entry: {unknown}")

    adapters: dict[str, AdapterEntry] = {}
    for adapter in catalog_file.adapters:
        if adapter.id in adapters or adapter.id in models:
            raise CatalogError(f"Catalog {path}: adapter '{adapter.id}' field 'id': duplicate id")
        adapters[adapter.id] = adapter
    for gap in catalog_file.not_served:
        if gap.use not in models:
            raise CatalogError(f"Catalog {path}: not_served '{gap.name}' field 'use': unknown model '{gap.use}'")
    catalog = Catalog(tasks=catalog_file.tasks, families=catalog_file.families, models=models, adapters=adapters,
                      not_served={gap.name.lower(): gap for gap in catalog_file.not_served})
    _check_references(catalog, path)
    return catalog


def _env_key(model_id: str) -> str:
    return re.sub(r"[^A-Z0-9]", "_", str(model_id).upper())


def _spec_overrides(environ: Mapping[str, str]) -> dict[str, dict[str, str]]:
    """{MODEL_KEY: {field: value}} from variables like CATALOG__MUSICGEN_SMALL__MAX_DURATION_SECONDS."""
    found: dict[str, dict[str, str]] = {}
    for name, value in environ.items():
        if not name.startswith(OVERRIDE_PREFIX):
            continue
        model_key, _, field = name[len(OVERRIDE_PREFIX):].partition("__")
        field = field.lower()
        if field not in ModelSpecs.model_fields:
            raise CatalogError(
                f"Environment variable {name}: '{field}' is not a model spec; "
                f"overridable fields: {', '.join(ModelSpecs.model_fields)}"
            )
        found.setdefault(model_key, {})[field] = value
    return found


def _with_overrides(raw_entry: object, spec_overrides: dict[str, str]) -> object:
    if not spec_overrides or not isinstance(raw_entry, dict):
        return raw_entry
    return {**raw_entry, "specs": {**(raw_entry.get("specs") or {}), **spec_overrides}}


def _describe(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"])
        problems.append(f"field '{where}': {error['msg']} (got {error.get('input')!r})")
    return "; ".join(problems)


def _check_references(catalog: Catalog, path: Path) -> None:
    def fail(where: str, message: str) -> None:
        raise CatalogError(f"Catalog {path}: {where}: {message}")

    seen_names: dict[str, str] = {}
    seen_variants: set[tuple[str, str]] = set()
    for entry in catalog.models.values():
        if entry.family not in catalog.families:
            fail(f"entry '{entry.id}' field 'family'", f"unknown family '{entry.family}'")
        if (entry.family, entry.variant) in seen_variants:
            fail(f"entry '{entry.id}' field 'variant'", f"duplicate variant '{entry.variant}' in '{entry.family}'")
        seen_variants.add((entry.family, entry.variant))
        for name in entry.names:
            if seen_names.setdefault(name, entry.id) != entry.id:
                field = "hub.repo_id" if name == entry.hub.repo_id.lower() else "aliases"
                fail(f"entry '{entry.id}' field '{field}'", f"'{name}' is already used by '{seen_names[name]}'")

    for adapter in catalog.adapters.values():
        if adapter.base_model not in catalog.models:
            fail(f"adapter '{adapter.id}' field 'base_model'", f"unknown model '{adapter.base_model}'")

    for name, family in catalog.families.items():
        if family.task not in catalog.tasks:
            fail(f"family '{name}' field 'task'", f"unknown task '{family.task}'")
        default = catalog.models.get(family.default_model)
        if default is None or default.family != name:
            fail(f"family '{name}' field 'default_model'", f"'{family.default_model}' is not a model of this family")
    for name, task in catalog.tasks.items():
        default = catalog.models.get(task.default_model)
        if default is None or catalog.task_of(default) != name:
            fail(f"task '{name}' field 'default_model'", f"'{task.default_model}' is not a model of this task")
