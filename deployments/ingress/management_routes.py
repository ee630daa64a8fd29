"""Seed 001's model management routes (downloads, cache, managed models) over the ModelManager actor.

The manager is the only writer of the cache: these routes ask it to start, cancel or remove
downloads and read its status; what is loaded is asked of the family replicas themselves.
"""

from __future__ import annotations

import asyncio
import shutil
from collections import Counter
from typing import Any, Literal

from fastapi import APIRouter, Depends

from deployments.errors import Conflict, InvalidRequest, ModelNotFound, NotFound
from deployments.ingress import management_replies as replies
from deployments.ingress.download_requests import (
    MAPPED_SOURCES,
    SUPPORTED_SOURCES,
    DownloadRequest,
    catalog_entry,
    check_flags,
    check_name,
    check_room,
    check_source,
    check_task,
    hub_target,
    is_large,
    s3_target,
    tts_conversion,
    url_args,
)
from deployments.ingress.http_errors import ERROR_RESPONSES
from deployments.ingress.model_features import (
    MB,
    TTS_TASK,
    estimated_time,
    mb,
    measured_speed,
    popular_tts_models,
    recommendations,
    split_by_speech,
    tts_features,
    tts_share,
)
from deployments.ingress.replies import json_reply
from deployments.ingress.services import REPORT_MAX_AGE_SECONDS, Services, get_services
from deployments.media.safe_urls import check_url
from registry import HubRepo
from registry.runtime import runtime_entry

router = APIRouter(tags=["model management"], responses=ERROR_RESPONSES)

REPLICA_FIELDS = ("replica", "deployment", "node_id", "device", "optimized", "optimization", "memory_usage", "load",
                  "idle_s")


async def _estimate(services: Services, repos: list[HubRepo], started: dict) -> tuple[str | None, int | None]:
    """(estimated_time in words, size in bytes) of a download that is starting, at the speed downloads
    here have measured (the configured guess before the first)."""
    if started["status"] not in ("pending", "downloading") or not repos:
        return None, None
    sizes, downloads = await asyncio.gather(services.manager.repo_sizes.remote(repos), services.manager.status.remote())
    size = None if None in sizes else sum(sizes)
    speed = measured_speed(downloads) or services.settings.download_estimate_mb_per_s * MB
    return estimated_time(size, speed), size


@router.post("/models/download", response_model=Any,
             responses=json_reply(replies.DownloadStarted, "Started, joined, or already in the cache."))
async def start_download(body: DownloadRequest, services: Services = Depends(get_services)) -> dict[str, Any]:
    """Start (or join) a download at once; poll GET /models/download/status/{download_id}."""
    check_source(body.source)
    entry = None
    if body.source == "url":
        key, repos, url = check_name(body.name or ""), [], url_args(body)
        task = check_task(services, body.task) if body.task else None
        await asyncio.to_thread(check_url, url["url"], services.settings)  # no private addresses
    else:
        target = s3_target if body.source == "s3" or body.model_id.startswith("s3://") else hub_target
        (key, repos, task, entry), url = target(services, body), None
        if entry is not None:
            check_flags(services, entry, body)
        await check_room(services, repos)  # before a run-time model is recorded for it
        if key not in services.catalog.models:  # a repo outside the catalog: its task's family serves it
            repos[0] = await pinned(services, repos[0])
            runtime = runtime_entry(services.catalog.base, key, repos[0], task, repos[1:])
            await asyncio.to_thread(services.catalog.runtime.add, runtime)
            services.catalog.refresh()
    started = await services.manager.start.remote(key, repos, url=url, task=task)
    estimate, size = await _estimate(services, repos, started)
    exists = started["status"] == "already_exists"
    loading = _load_after(services, key, body.load)
    conversion = tts_conversion(services, body, task)
    mapped = f" (served by '{key}', {repos[0].repo_id} on the hub)" if body.source in MAPPED_SOURCES else ""
    return {
        "success": True,
        "download_id": started["download_id"],
        "message": (f"Model '{key}' already exists and is ready to use" if exists
                    else f"Started downloading {'TTS ' if task == TTS_TASK else ''}model '{key}'") + mapped,
        "model_name": key,
        "source": body.source,
        "model_id": body.model_id,
        "status": started["status"],
        "estimated_time": estimate,
        "load": loading,
        "download_info": {
            "download_id": started["download_id"],
            "model_type": "tts" if task == TTS_TASK else task,
            "task": task,
            "description": entry and (entry.description or services.catalog.families[entry.family].description),
            "estimated_size_mb": mb(size),
            "supports_voice_cloning": bool(entry and "voice-cloning" in entry.capabilities),
            "repos": [r.repo_id for r in repos],
            "url": url and url["url"],
            "vocoder_included": any(r.role == "vocoder" for r in repos),
            "vocoder_models": [r.repo_id for r in repos if r.role == "vocoder"],
            "tts_conversion": conversion,
        },
    }


def _load_after(services: Services, key: str, wanted: bool) -> str:
    """Start loading the model once its download ends (its deployment's replica waits for the files),
    unless the request said `load: false`; what will happen, in words for the answer's `load`."""
    entry = catalog_entry(services, key)
    if not wanted:
        return "not requested"
    if entry is None or not services.is_served(entry):
        return "not deployed by this profile: downloaded only"
    services.load_soon(entry)
    return "loading once downloaded: GET /models shows it ready"


def _status_body(status: dict) -> dict[str, Any]:
    return {
        "success": status["status"] not in ("failed", "cancelled"),  # seed 001's clients branch on it
        "download_id": status["download_id"],
        "model_name": status["model"],
        "status": status["status"],
        "progress": status["progress"],
        "eta": status["eta"],
        "message": status["message"],
        "error": status["error"],
        "bytes_done": status["bytes_done"],
        "bytes_total": status["bytes_total"],
        "attempt": status.get("attempt", 0),  # tries so far; transient failures are retried with backoff
        "next_retry_at": status.get("next_retry_at"),  # epoch seconds of the next try, while waiting for it
    }


@router.get("/models/download/status/{download_id}", response_model=Any,
            responses=json_reply(replies.DownloadStatus, "The download."))
async def download_status(download_id: str, services: Services = Depends(get_services)) -> dict[str, Any]:
    return _status_body(_found(await services.manager.download_status.remote(download_id), download_id))


@router.post("/models/download/{download_id}/cancel", response_model=Any,
             responses=json_reply(replies.DownloadStatus, "Cancelled."))
async def cancel_download(download_id: str, services: Services = Depends(get_services)) -> dict[str, Any]:
    status = _found(await services.manager.cancel.remote(download_id), download_id)
    if status["status"] != "cancelled":
        raise Conflict(f"Download '{download_id}' is already {status['status']}; only a running one can be cancelled")
    return _status_body(status)


def _found(status: dict | None, download_id: str) -> dict:
    """The manager's view of download `download_id`, or a 404 when it knows no such id."""
    if status is None:
        raise NotFound(f"No download with id '{download_id}'", error="Download not found")
    return status


@router.delete("/models/download/{model_name:path}", response_model=Any,
               responses=json_reply(replies.ModelRemoved, "Removed from the cache."))
async def remove_model(model_name: str, services: Services = Depends(get_services)) -> dict[str, Any]:
    """Remove a model's files from the cache and unload it; the next request downloads it again."""
    entry = catalog_entry(services, model_name)
    key, repos = (entry.id, list(entry.repos)) if entry else (check_name(model_name, "model_name"), [])
    removed = await services.manager.remove.remote(key, repos)
    unloaded = False
    await services.board.want_optimized.remote(key, False)  # a fresh download loads at full precision
    if entry and services.is_served(entry) and await services.has_replicas(entry):
        # one replica unloads now; the others drop it on next use: its files are gone
        unloaded = await services.deployment_for(entry).unload.remote(entry.id)
    if entry and services.catalog.is_runtime(entry.id):  # added at run time: no longer a model of the service
        if await asyncio.to_thread(services.catalog.runtime.remove, entry.id):
            removed.append(f"runtime model {entry.id} (job database)")
        services.catalog.refresh()
    if not removed:
        raise ModelNotFound(f"Model not found in cache: {model_name}", error="Model does not exist")
    return {"success": True, "message": f"Successfully removed model from cache: {key}", "model_name": key,
            "removed_paths": removed, "unloaded": unloaded}


@router.get("/models/available", response_model=Any,
            responses=json_reply(replies.AvailableModels, "The catalog as downloadable models."))
async def available_models(services: Services = Depends(get_services)) -> dict[str, Any]:
    """The catalog as downloadable models: hub sizes, tags, task, and what is already cached."""
    catalog = services.catalog
    entries = list(catalog.models.values())
    sizes, statuses = await asyncio.gather(
        services.manager.repo_sizes.remote([repo for e in entries for repo in e.repos]),
        services.manager.status.remote(),
    )
    done = {s["model"] for s in statuses if s["status"] == "completed"}
    available, at = {}, 0
    for entry in entries:
        repo_sizes, at = sizes[at:at + len(entry.repos)], at + len(entry.repos)
        task = catalog.task_of(entry)
        size = None if None in repo_sizes else sum(repo_sizes)
        available[entry.id] = {
            "name": entry.id,
            "display_name": entry.display_name,
            "source": "s3" if entry.hub.is_s3 else "huggingface",
            "model_id": entry.hub.repo_id,
            "companions": [r.repo_id for r in entry.companions],
            "task": task,
            "family": entry.family,
            "description": entry.description or catalog.families[entry.family].description,
            "size_bytes": size,
            "size_mb": mb(size),
            "tags": list(dict.fromkeys([entry.family, task, *entry.capabilities])),
            "capabilities": entry.capabilities,
            "quality": entry.quality,
            "speed": entry.speed,
            "experimental": entry.experimental,
            "large": is_large(services, entry),
            "tts_features": tts_features(catalog, entry),
            "downloaded": entry.id in done,
        }
    return {
        "success": True,
        "available_models": available,
        "total_available": len(available),
        "supported_sources": list(SUPPORTED_SOURCES),
        "categories": {**{task: [m.id for m in catalog.models_for_task(task)] for task in catalog.tasks},
                       **split_by_speech(catalog, list(available), "general_models")},
        "popular_tts_models": popular_tts_models(catalog),
        "download_recommendations": {
            **recommendations(catalog),
            "task_defaults": {task: config.default_model for task, config in catalog.tasks.items()},
            "family_defaults": {name: f.default_model for name, f in catalog.families.items()},
            "smallest_per_task": {
                task: min((m.id for m in catalog.models_for_task(task) if available[m.id]["size_bytes"] is not None),
                          key=lambda m: available[m]["size_bytes"], default=None)
                for task in catalog.tasks
            },
        },
    }


@router.get("/models/managed", response_model=Any,
            responses=json_reply(replies.ManagedModels, "What the replicas hold loaded."))
async def managed_models(services: Services = Depends(get_services)) -> dict[str, Any]:
    """What every model replica in the cluster has loaded, as the replicas last reported it, and the
    lifecycle of every model this application deploys."""
    reports = await services.board.reports.remote(REPORT_MAX_AGE_SECONDS)
    reports = [{**r, "name": services.deployment_of_replica(r["app"], r["deployment"])} for r in reports]
    reports = [r for r in reports if r["name"]]  # this application's replicas only
    per_model: dict[str, list[dict]] = {}
    for report in sorted(reports, key=lambda r: r["replica"]):
        for info in report["models"]:
            per_model.setdefault(info["name"], []).append({**info, "replica": report["replica"],
                                                           "node_id": report["node_id"],
                                                           "deployment": report["name"]})
    models = []
    for name, copies in per_model.items():
        entry = services.catalog.models.get(name)
        task = entry and services.catalog.task_of(entry)
        models.append({**copies[0], "family": entry and services.kind_of(entry), "is_tts": task == TTS_TASK,
                       "task": task,
                       "optimized": all(c["optimized"] for c in copies), "replica_count": len(copies),
                       "replicas": [{k: c[k] for k in REPLICA_FIELDS} for c in copies]})
    categories: dict[str, list] = {}
    for info in models:
        categories.setdefault(f"{info['task']}_models", []).append(
            {"name": info["name"], "loaded": True, "optimized": info["optimized"], "is_tts": info["is_tts"]})
    loaded = [{"name": m["name"], "loaded": True, "is_tts": m["is_tts"]} for m in models]
    categories["tts_models"] = [m for m in loaded if m["is_tts"]]  # seed 001's speech/other split
    categories["other_models"] = [m for m in loaded if not m["is_tts"]]
    deployed = [m for m in services.catalog.models.values() if services.is_served(m)]
    lifecycles = await services.lifecycles(deployed)
    for info in models:
        info["lifecycle"] = lifecycles.get(info["name"])
    return {
        "success": True,
        "total_models": len(models),
        "downloaded_models": models,
        "categories": categories,
        "summary": {
            "total_loaded": len(models),
            "tts_models_count": sum(m["is_tts"] for m in models),
            "optimized_count": sum(m["optimized"] for m in models),
            "total_parameters": sum(m["parameters"] for m in models),
            "replicas_reporting": len(reports),
            "states": dict(Counter(view["state"] for view in lifecycles.values())),
        },
        "lifecycles": lifecycles,
        "unavailable_deployments": {
            name: view["reason"] for name, view in lifecycles.items() if view["state"] == "failed"
        },
    }


@router.get("/models/cache/info", response_model=Any, responses=json_reply(replies.CacheInfo, "The cache on disk."))
async def cache_info(services: Services = Depends(get_services)) -> dict[str, Any]:
    """The cache as it is on disk, each repo named by the catalog models that use it."""
    info, statuses = await asyncio.gather(services.manager.cache_info.remote(), services.manager.status.remote())
    owners: dict[str, list[str]] = {}
    for entry in services.catalog.models.values():
        for repo in entry.repos:
            owners.setdefault(repo.repo_id, []).append(entry.id)
    for status in statuses:  # hub repos downloaded by name outside the catalog
        for repo_id in status["repos"]:
            owners.setdefault(repo_id, [status["model"]])
    entries = [
        {"name": ", ".join(owners.get(r["repo_id"], [r["repo_id"]])), "models": owners.get(r["repo_id"], []),
         "source": "huggingface", **r, "size_mb": mb(r["size_bytes"])}
        for r in info["repos"]
    ] + [{"models": [u["name"]], "source": "url", **u, "size_mb": mb(u["size_bytes"])} for u in info["url_downloads"]]
    total = sum(e["size_bytes"] for e in entries)
    quota = services.settings.model_cache_max_bytes or None
    free = (await asyncio.to_thread(shutil.disk_usage, info["cache_directory"])).free
    return {
        "success": True,
        "cache_directory": info["cache_directory"],
        # INFERENCE_MODEL_CACHE_MAX_BYTES (None: the disk alone bounds it); a download past either is refused (507)
        "quota_bytes": quota,
        "quota_mb": mb(quota),
        "free_bytes": min(free, quota - total) if quota else free,
        "total_models": len({m for e in entries for m in e["models"]}),
        "total_size_bytes": total,
        "total_size_mb": mb(total),
        "models": sorted({m for e in entries for m in e["models"]}),
        "entries": entries,
        "tts_specific": tts_share(services.catalog, entries, total),
        "cache_optimization": {
            # share of download requests (POST /models/download, retries) the cache answered without fetching
            "cache_hit_rate": info.get("hit_rate"),
            "optimization_enabled": True,  # POST /models/manage?action=optimize (reduced precision per replica)
            "auto_cleanup": False,  # the cache is never pruned behind a user's back: DELETE /models/download/{name}
        },
    }


@router.post("/models/manage", response_model=Any,
             responses=json_reply(replies.ModelOptimized | replies.DownloadRestarted,
                                  "Optimized, or the download started."))
async def manage_model(
    action: Literal["optimize", "retry_download", "update"],
    model_name: str,
    force_redownload: bool = False,
    services: Services = Depends(get_services),
) -> dict[str, Any]:
    """optimize: reduced precision in the replica; retry_download: start a failed one again; update: newest revision."""
    entry = catalog_entry(services, model_name)
    key = entry.id if entry else check_name(model_name, "model_name")
    if action == "optimize":
        if entry is None:
            raise ModelNotFound(f"Model '{model_name}' is not in the catalog. Known models: "
                                f"{', '.join(services.catalog.models)}")
        if not services.is_served(entry):
            raise InvalidRequest(f"Model '{entry.id}' is not deployed in this application, so it cannot be optimized")
        await services.board.want_optimized.remote(entry.id)  # the other replicas follow at their health check
        try:
            model = await services.call(entry, "optimize", entry.id)
        except InvalidRequest:  # nothing to optimize (an ONNX Runtime engine): no replica should try again
            await services.board.want_optimized.remote(entry.id, False)
            raise
        return {"success": True, "message": f"Model '{entry.id}' optimized successfully ({model['optimization']}); "
                "every other replica follows within its health-check period", "action": action,
                "model_name": entry.id, "model": model}
    if action == "retry_download" and force_redownload:
        await services.manager.remove.remote(key, list(entry.repos) if entry else [])
    if action == "update" and entry and entry.hub.tracks:  # a pinned run-time model: to its branch's newest commit
        entry = entry.model_copy(update={"hub": await pinned(services, entry.hub.model_copy(
            update={"revision": entry.hub.tracks}))})
        await asyncio.to_thread(services.catalog.runtime.add, entry)
        services.catalog.refresh()
        started = await services.manager.start.remote(key, list(entry.repos), task=services.catalog.task_of(entry),
                                                      fresh=True)
    else:
        started = await services.manager.restart.remote(key, list(entry.repos) if entry else None,
                                                        fresh=action == "update")
    if started is None:
        raise ModelNotFound(f"No download of '{model_name}' to {action.replace('_', ' ')}; start one with "
                            "POST /models/download", error="Model does not exist")
    return {"success": True, "message": f"Model '{key}': {action.replace('_', ' ')} started"
            if started["status"] != "already_exists" else f"Model '{key}' already exists and is ready to use",
            "action": action, "model_name": key, "download_id": started["download_id"],
            "status": started["status"]}


async def pinned(services: Services, repo: HubRepo) -> HubRepo:
    """A run-time model's repo at the commit its branch names now: what is fetched later is what was checked
    (and a push to the branch reaches the service only through `update`)."""
    commit = await services.manager.commit_of.remote(repo)
    return repo.model_copy(update={"revision": commit, "tracks": repo.revision}) if commit else repo
