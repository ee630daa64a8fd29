"""What the routes answer, for the OpenAPI spec: the reply models several route modules share, and the
`responses=` entries that name a route's success reply.

A route declares its reply without FastAPI checking or filtering what the handler returns: a handler that
builds a JSONResponse (or another Response) is sent as built, and one that returns a dict is declared with
`response_model=Any`, which keeps FastAPI's serialization of that dict exactly as it was (pydantic's JSON
encoder, every field kept) while `responses` names the model that describes it. tests/ingress/
test_response_schemas.py checks real replies against these models."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field
from pydantic.json_schema import SkipJsonSchema

# A field a reply only sometimes carries (the description says when): absent otherwise, never null.
Absent = SkipJsonSchema[None]
Responses = dict[int | str, dict[str, Any]]
LifecycleState = Literal["available", "downloading", "cached", "starting", "ready", "idle", "scaled_to_zero",
                         "failed"]
BATCH_HEADER_DOC = {"X-Batch-Size": "Requests (or inputs) that shared the model call with this one."}


def _headers(headers: dict[str, str] | None) -> dict[str, Any]:
    return {name: {"description": text, "schema": {"type": "string"}} for name, text in (headers or {}).items()}


def json_reply(model: Any, description: str, status: int = 200, headers: dict[str, str] | None = None,
               also: dict[str, str] | None = None) -> Responses:
    """`responses` entry: `model` is the JSON body of the `status` reply; `headers` names its headers (with
    what they say), `also` other media types the same status may carry instead (type -> what it holds)."""
    doc: dict[str, Any] = {"model": model, "description": description}
    if headers:
        doc["headers"] = _headers(headers)
    if also:
        doc["content"] = {kind: {"schema": {"type": "string", "description": what}} for kind, what in also.items()}
    return {status: doc}


def job_reply_doc(model: Any, queued: int = 202, description: str = "") -> Responses:
    """The two statuses of a job reply (job_replies.job_reply): 202 while it runs, 200 once it finished."""
    location = {"Location": "The job's URL, /jobs/{job_id}."}
    return {**json_reply(model, description or "The job, queued (or still running when `wait` ran out).", queued,
                         location),
            **json_reply(model, "The job, finished (completed, failed or cancelled) within `wait`.", 200, location)}


def media_reply(description: str, media_types: list[str], status: int = 200,
                headers: dict[str, str] | None = None) -> Responses:
    """`responses` entry of a reply that is not JSON: a file, audio, a stream, a redirect."""
    doc: dict[str, Any] = {"description": description,
                           "content": {kind: {"schema": {"type": "string", "contentMediaType": kind}}
                                       for kind in media_types}}
    if headers:
        doc["headers"] = _headers(headers)
    return {status: doc}


class TtsFeatures(BaseModel):
    """Seed 001's tts_features of a model: only supports_tts (false) for one that does not speak."""

    supports_tts: bool
    quality: str | None = Field(None, description="Speech models only, as all below.")
    speed: str | None = None
    vocoder_required: bool | Absent = None
    supports_voice_cloning: bool | Absent = None
    supports_emotions: bool | Absent = None
    voices: int | Absent = Field(None, description="How many voices the model has.")
    sample_rate: int | None = None


class LifecycleDownload(BaseModel):
    """A model's download as its lifecycle shows it (None fields: not known yet)."""

    download_id: str | None
    status: str | None = Field(description="pending, downloading, completed, failed or cancelled.")
    progress: float | None = Field(description="Percent, 0-100.")
    bytes_done: int | None
    bytes_total: int | None
    error: str | None


class LoadStats(BaseModel):
    load_seconds: float | Absent = None
    peak_memory_mb: float | Absent = Field(None, description="Memory the load took, as memory_kind measures it.")
    memory_kind: Literal["cuda-allocated", "rss-growth"] | Absent = None


class ModelLifecycle(BaseModel):
    """One model's lifecycle (ingress/lifecycle.py): available -> downloading -> cached -> starting -> ready
    -> idle -> scaled_to_zero, or failed with the reason."""

    state: LifecycleState
    reason: str | None = Field(description="Why the model is in this state, where there is more to say "
                               "(failed: the error).")
    deployment: str | None = Field(description="Its Serve deployment in this application; None: not deployed.")
    replicas: int = Field(description="Running replicas of its deployment.")
    replicas_starting: int
    deployment_status: str | None = Field(description="Serve's status of its deployment (HEALTHY, UPDATING...).")
    loaded_replicas: int = Field(description="Replicas that hold the model loaded.")
    download: LifecycleDownload | None = Field(description="None: never asked to download here.")
    load: LoadStats | Absent = Field(None, description="While a replica holds it: how its load went.")
    bytes_done: int | None = Field(None, description="While downloading.")
    bytes_total: int | None = Field(None, description="While downloading.")
    eta: float | None = Field(None, description="While downloading: seconds left.")
    idle_s: float | Absent = Field(None, description="Ready or idle: seconds since a replica last used it.")
