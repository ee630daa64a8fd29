"""What /health checks (the model manager, the job store, Serve's deployments) and the gauges the ingress
publishes for Ray's Prometheus endpoint: jobs by state and each model's lifecycle state."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from ray.serve import metrics

from deployments.ingress.lifecycle import FAILED_DEPLOYMENT
from deployments.ingress.services import Services

logger = logging.getLogger(__name__)
CHECK_TIMEOUT_S = 10.0  # a check slower than this counts as failed: /health must answer a probe promptly


async def _timed(check: Any) -> tuple[Any, dict[str, Any]]:
    """The check's answer, and how long it took."""
    started = time.monotonic()
    answer = await asyncio.wait_for(check, CHECK_TIMEOUT_S)
    return answer, {"ok": True, "ms": round((time.monotonic() - started) * 1000, 1)}


async def check_health(services: Services) -> tuple[dict[str, Any], list[str]]:
    """Each check's result, and one line per problem (none: healthy)."""
    checks: dict[str, Any] = {}
    answers: dict[str, Any] = {}
    problems: list[str] = []
    probes = {"model_manager": services.manager.status.remote(),
              "job_store": asyncio.to_thread(services.store.probe),
              "deployments": services.states.get(fresh=True)}
    results = await asyncio.gather(*(_timed(probe) for probe in probes.values()), return_exceptions=True)
    for name, result in zip(probes, results, strict=True):
        if isinstance(result, BaseException):
            why = f"no answer within {CHECK_TIMEOUT_S:g}s" if isinstance(result, TimeoutError) else \
                f"{type(result).__name__}: {result}"
            checks[name] = {"ok": False, "error": why}
            problems.append(f"{name.replace('_', ' ')}: {why}")
        else:
            answers[name], checks[name] = result
    if "deployments" in answers:
        states = answers["deployments"]
        checks["deployments"]["states"] = {name: state["status"] for name, state in sorted(states.items())}
        for name, state in sorted(states.items()):
            if state["status"] in FAILED_DEPLOYMENT:
                problems.append(f"deployment {name} is {state['status']}: {state.get('message') or 'no message'}")
    return checks, problems


class ServiceGauges:
    """Jobs by state and models by lifecycle state, refreshed every `period_s` by one ingress task."""

    def __init__(self, services: Services):
        self._services = services
        self._jobs = metrics.Gauge("inference_jobs", description="Jobs in the job store, by state.",
                                   tag_keys=("state",))
        self._models = metrics.Gauge("inference_model_state", description="1 for the lifecycle state each "
                                     "model is in (ready, idle, starting, downloading, scaled_to_zero, failed...)",
                                     tag_keys=("model", "state"))  # type: ignore[arg-type]  # a 1-tuple to Ray
        self._states: dict[str, str] = {}  # model -> the state last published as 1

    async def publish(self) -> None:
        for state, count in (await asyncio.to_thread(self._services.store.counts)).items():
            self._jobs.set(count, tags={"state": state})
        entries = [e for e in self._services.catalog.models.values() if self._services.is_served(e)]
        for model, view in (await self._services.lifecycles(entries)).items():
            previous = self._states.get(model)
            if previous is not None and previous != view["state"]:
                self._models.set(0, tags={"model": model, "state": previous})
            self._models.set(1, tags={"model": model, "state": view["state"]})
            self._states[model] = view["state"]

    async def publish_forever(self, period_s: float) -> None:
        while True:
            try:
                await self.publish()
            except Exception:  # a gauge that misses a beat must not stop the next
                logger.exception("publishing the service gauges failed")
            await asyncio.sleep(period_s)
