"""The Serve application builder that `serve run` / `serve deploy` point at (import_path): the ingress
in front of one deployment per catalog model (named by its catalog id) and a pool per family for
models registered at run time. What each gets is planned in app_plan.py from the catalog and profile."""

from __future__ import annotations

from typing import Any

from ray.serve import Application

from deployments.app_plan import AppArgs, DeploymentPlan, check_cpus, plan_deployments
from deployments.families import family_deployments
from deployments.ingress import Ingress
from deployments.settings import ServiceSettings
from registry import Catalog, load_catalog

# Catalog family `deployment` kind -> the Serve deployment that loads and runs one model of it
# (registered in deployments/families/__init__.py).
FAMILY_DEPLOYMENTS: dict[str, Any] = family_deployments()

__all__ = ["AppArgs", "FAMILY_DEPLOYMENTS", "build_app", "compose_app", "plan_app"]


def with_engines(catalog: Catalog, engines: dict[str, str]) -> Catalog:
    """The catalog with the profile's `engines:` (per family kind, or per catalog id, which wins) in its
    entries, each checked against the engines its family's deployment runs (`engines`, first the default)."""
    kind_of = {model_id: catalog.families[entry.family].deployment for model_id, entry in catalog.models.items()}
    unknown = sorted(set(engines) - set(kind_of) - set(FAMILY_DEPLOYMENTS))
    if unknown:
        raise ValueError(f"Profile sets engines of unknown families or models {unknown}")
    models = {}
    for model_id, entry in catalog.models.items():
        engine = engines.get(model_id, engines.get(kind_of[model_id], entry.engine))
        known = FAMILY_DEPLOYMENTS[kind_of[model_id]].func_or_class.engines
        if engine is not None and engine not in known:
            raise ValueError(f"Model '{model_id}' cannot run on engine '{engine}'; its family's engines: "
                             f"{', '.join(known) or 'none to choose'}")
        models[model_id] = entry.model_copy(update={"engine": engine or (known[0] if known else None)})
    return catalog.model_copy(update={"models": models})


def plan_app(catalog: Catalog, args: AppArgs) -> list[DeploymentPlan]:
    """The model deployments `args` asks for (tests and the config checks read them without Ray)."""
    unknown = sorted(set(args.families) - set(FAMILY_DEPLOYMENTS))
    if unknown:
        raise ValueError(f"Profile configures unknown families {unknown}; this build has {sorted(FAMILY_DEPLOYMENTS)}")
    defaults = {kind: {"max_ongoing_requests": d.max_ongoing_requests} for kind, d in FAMILY_DEPLOYMENTS.items()}
    return plan_deployments(catalog, args, defaults)


def build_app(args: AppArgs | dict) -> Application:
    """Load and check the catalog and profile (failing here, at start, if either is wrong) and bind."""
    args = args if isinstance(args, AppArgs) else AppArgs.model_validate(args or {})
    settings = ServiceSettings()
    catalog = load_catalog(args.catalog_path or settings.catalog_path)
    return compose_app(catalog, settings, args)


def ray_cpus() -> float | None:
    """The CPUs the Ray the app is built on counts (None outside Ray: nothing to check against)."""
    import ray

    return ray.cluster_resources().get("CPU") if ray.is_initialized() else None


def compose_app(catalog: Catalog, settings: ServiceSettings, args: AppArgs,
                overrides: dict[str, dict[str, Any]] | None = None) -> Application:
    """The ingress bound to every planned deployment; `overrides` by deployment name play the part of
    serve_config's `deployments:` list for callers that serve.run in Python (tests, benches)."""
    overrides = overrides or {}
    catalog = with_engines(catalog, args.engines)
    plans = plan_app(catalog, args)
    unknown = sorted(set(overrides) - {p.name for p in plans} - {"Ingress"})
    if unknown:
        raise ValueError(f"Overrides for deployments the profile does not plan: {unknown}")
    bound, reserved = {}, {}  # reserved: the Ray CPUs each deployment's replicas take at start
    for plan in plans:
        options = {**plan.options, **overrides.get(plan.name, {})}
        if "num_replicas" in overrides.get(plan.name, {}):  # Serve allows one of the two
            options.pop("autoscaling_config")
        replicas = options.get("num_replicas") or options.get("autoscaling_config", {}).get("min_replicas", 0)
        reserved[plan.name] = options["ray_actor_options"].get("num_cpus", 1) * replicas
        bound[plan.name] = FAMILY_DEPLOYMENTS[plan.kind].options(**options).bind(catalog, settings, plan.model_id)
    ingress = Ingress.options(**overrides["Ingress"]) if "Ingress" in overrides else Ingress  # type: ignore[attr-defined]
    ingress_replicas = ingress.num_replicas if isinstance(ingress.num_replicas, int) else 1  # type: ignore[union-attr]
    reserved["Ingress"] = ingress.ray_actor_options.get("num_cpus", 1) * ingress_replicas  # type: ignore[union-attr]
    check_cpus(reserved, args.cpus if args.cpus is not None else ray_cpus())
    gpu = {"count": args.gpus if args.gpu_memory_gb else 0, "memory_gb": args.gpu_memory_gb or None}
    return ingress.bind(catalog, settings, bound, gpu)  # type: ignore[union-attr]
