"""The API areas of the model tasks: a routes module per area, and the one place a new one is registered.

Each module exports `router`; it may export JOBS ({task: JobInput}: the tasks it runs as jobs) and
TEXT_UPLOADS (tasks for which an uploaded .txt file is the text to work on). The service's own areas
(model management, catalog, uploads, jobs) are listed in http_app.py, after which these are included."""

from __future__ import annotations

import importlib
from types import ModuleType

from deployments.ingress.request_checks import JobInput

# One line per area: the module's name under deployments/ingress/.
AREA_MODULES = (
    "embedding_routes",
    "music_routes",
    "transcription_routes",
    "speech_routes",
    "voice_routes",
    "chat_routes",
    "vision_routes",
    "image_routes",
    "video_routes",
)
TASK_AREAS: tuple[ModuleType, ...] = tuple(importlib.import_module(f"deployments.ingress.{name}")
                                           for name in AREA_MODULES)


def area_jobs() -> dict[str, JobInput]:
    """Every task an area runs as a job -> how its input is checked."""
    jobs: dict[str, JobInput] = {}
    for area in TASK_AREAS:
        for task, job in getattr(area, "JOBS", {}).items():
            if task in jobs:
                raise ValueError(f"Two areas run task {task!r} as a job: {area.__name__} and another")
            jobs[task] = job
    return jobs


# Tasks for which an uploaded .txt file is the text to work on.
TEXT_UPLOAD_TASKS = frozenset(task for area in TASK_AREAS for task in getattr(area, "TEXT_UPLOADS", ()))
