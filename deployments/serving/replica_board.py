"""What every family replica in the cluster has loaded (GET /models/managed), and which models every
replica should run optimized (POST /models/manage action=optimize).

A Serve handle call reaches one replica of a deployment; this detached actor hears from all of
them. Each replica reports its loaded models whenever they change and at every health check, and
reads the optimize wishes back at the same time, so a model optimized through one replica is
optimized in the others within a health-check period (and in replicas that load it later).
Reports older than `max_age` seconds come from replicas that are gone and are left out.
"""

from __future__ import annotations

import time

import ray

from deployments.settings import ServiceSettings


@ray.remote(num_cpus=0)
class ReplicaBoard:
    def __init__(self):
        self._reports: dict[str, dict] = {}  # replica id -> its last report
        self._optimize: set[str] = set()  # model ids every replica should run optimized
        self._ever_loaded: set[tuple[str, str]] = set()  # (app, model id)

    def report(self, replica: str, app: str, deployment: str, node_id: str, models: list[dict],
               state: dict | None = None) -> None:
        """`models`: loaded ones; `state`: {"loading": [ids], "failed": {id: reason}}."""
        self._reports[replica] = {"replica": replica, "app": app, "deployment": deployment, "node_id": node_id,
                                  "models": models, "at": time.monotonic(),
                                  "loading": (state or {}).get("loading", []),
                                  "failed": (state or {}).get("failed", {})}
        for info in models:
            self._ever_loaded.add((app, info["name"]))

    def ever_loaded(self, app: str) -> set[str]:
        """Models that some replica of `app` has held (so none now means scaled to zero, not never started)."""
        return {model for a, model in self._ever_loaded if a == app}

    def forget(self, replica: str) -> None:
        """A replica shutting down (scaled down, redeployed) takes its report with it."""
        self._reports.pop(replica, None)

    def reports(self, max_age: float) -> list[dict]:
        now = time.monotonic()
        return [{**r, "age_s": round(now - r["at"], 3)} for r in self._reports.values() if now - r["at"] <= max_age]

    def want_optimized(self, model_id: str, wanted: bool = True) -> None:
        (self._optimize.add if wanted else self._optimize.discard)(model_id)

    def optimized_wanted(self) -> set[str]:
        return set(self._optimize)


def get_replica_board(settings: ServiceSettings) -> ray.actor.ActorHandle:
    """The cluster's one ReplicaBoard, beside the ModelManager, created by whichever caller comes first."""
    return ReplicaBoard.options(  # type: ignore[attr-defined]
        name=f"{settings.manager_name}-replicas",
        namespace=settings.manager_namespace,
        lifetime="detached",
        get_if_exists=True,
    ).remote()
