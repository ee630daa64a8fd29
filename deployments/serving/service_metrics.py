"""The model side of the service's own series in Ray's Prometheus endpoint (Ray adds the `ray_` prefix;
Serve adds application, deployment and replica tags inside a replica): models loaded per replica with
their load time and memory, and each download's bytes and state. The request series live in
deployments/ingress/observability.py, the job and lifecycle gauges in deployments/ingress/service_health.py."""

from __future__ import annotations

from ray.serve import metrics

DOWNLOAD_STATES = ("pending", "downloading", "completed", "failed", "cancelled")


class ModelGauges:
    """This replica's models in Ray's metrics (Serve tags them with the replica): loaded or not, how long
    the load took and the memory it added."""

    def __init__(self):
        self._loaded = metrics.Gauge("inference_model_loaded", description="1 while the model is loaded "
                                     "in this replica, 0 after it is unloaded.", tag_keys=("model",))
        self._seconds = metrics.Gauge("inference_model_load_seconds", description="How long the model's "
                                      "last load took in this replica.", tag_keys=("model",))
        self._memory = metrics.Gauge("inference_model_memory_mb", description="Peak memory the model's "
                                     "load added (CUDA allocated on GPU, RSS growth on CPU).",
                                     tag_keys=("model", "memory_kind"))

    def loaded(self, model_id: str, stats: dict) -> None:
        self._loaded.set(1, tags={"model": model_id})
        self._seconds.set(stats["load_seconds"], tags={"model": model_id})
        self._memory.set(stats["peak_memory_mb"], tags={"model": model_id, "memory_kind": stats["memory_kind"]})

    def unloaded(self, model_id: str) -> None:
        self._loaded.set(0, tags={"model": model_id})


class DownloadGauges:
    """Each model download's bytes done and total, and 1 for the state it is in (0 for the others)."""

    def __init__(self):
        self._bytes = metrics.Gauge("inference_download_bytes", description="Bytes of a model's download: "
                                    "`measure` done or total.", tag_keys=("model", "measure"))
        self._state = metrics.Gauge("inference_download_state", description="1 for the state a model's "
                                    "download is in.", tag_keys=("model", "state"))

    def publish(self, view: dict) -> None:
        model = view["model"]
        self._bytes.set(view["bytes_done"], tags={"model": model, "measure": "done"})
        self._bytes.set(view["bytes_total"], tags={"model": model, "measure": "total"})
        for state in DOWNLOAD_STATES:
            self._state.set(1 if view["status"] == state else 0, tags={"model": model, "state": state})
