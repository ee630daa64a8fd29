"""The HTTP ingress: routing, validation against the catalog, one error shape."""

from __future__ import annotations

from ray import serve
from ray.serve.handle import DeploymentHandle

from deployments.ingress.http_app import build_http_app
from deployments.ingress.services import Services
from deployments.model_manager import get_model_manager
from deployments.settings import ServiceSettings
from registry import Catalog


@serve.deployment(max_ongoing_requests=256, health_check_period_s=5)
@serve.ingress()
class Ingress:
    """Owns no model; validates requests and forwards them to the family deployments."""

    def __init__(self, catalog: Catalog, settings: ServiceSettings, deployments: dict[str, DeploymentHandle]):
        self._services = Services(catalog, settings, deployments, get_model_manager(settings))

    def __serve_build_asgi_app__(self):
        return build_http_app(self._services)
