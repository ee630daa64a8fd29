"""The model catalog: one data file (catalog.yaml) and the schema that validates it."""

from registry.loader import DEFAULT_CATALOG_PATH, Catalog, CatalogError, UnknownModelError, load_catalog
from registry.schema import AdapterEntry, FamilyConfig, HubRepo, ModelEntry, ModelSpecs, TaskConfig

__all__ = [
    "DEFAULT_CATALOG_PATH",
    "AdapterEntry",
    "Catalog",
    "CatalogError",
    "FamilyConfig",
    "HubRepo",
    "ModelEntry",
    "ModelSpecs",
    "TaskConfig",
    "UnknownModelError",
    "load_catalog",
]
