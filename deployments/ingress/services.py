"""What routes reach: the catalog, the family deployments' handles, the model manager."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request
from ray.serve.handle import DeploymentHandle

from deployments.errors import ModelNotFound, ModelUnavailable, WrongModelTask
from deployments.settings import ServiceSettings
from registry import Catalog, ModelEntry, UnknownModelError


@dataclass
class Services:
    catalog: Catalog
    settings: ServiceSettings
    deployments: dict[str, DeploymentHandle]  # keyed by the catalog's family `deployment`
    manager: object  # the ModelManager actor handle

    def model_for(self, task: str, name: str | None) -> ModelEntry:
        """The catalog entry a request names for `task` (its default when None), or a 4xx saying why not."""
        if not name:
            entry = self.catalog.default_model(task)
        else:
            try:
                entry = self.catalog.resolve(name, task=task)
            except UnknownModelError as missing:
                try:
                    other = self.catalog.resolve(name)
                except UnknownModelError:
                    raise ModelNotFound(str(missing)) from None
                raise WrongModelTask(
                    f"Model '{other.id}' is a {self.catalog.task_of(other)} model, not {task}. "
                    f"Known {task} models: {', '.join(missing.known)}"
                ) from None
        if not self.is_served(entry):
            raise ModelUnavailable(f"Model '{entry.id}' ({task}) is not deployed in this application")
        return entry

    def is_served(self, entry: ModelEntry) -> bool:
        return self.catalog.families[entry.family].deployment in self.deployments

    def deployment_for(self, entry: ModelEntry) -> DeploymentHandle:
        return self.deployments[self.catalog.families[entry.family].deployment]


def get_services(request: Request) -> Services:
    """FastAPI dependency: the Services this replica's app was built with."""
    return request.app.state.services
