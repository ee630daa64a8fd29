"""Text-to-music requests, results and limits: what the ingress checks before a request reaches the
MusicGen deployment. Plain pydantic and the catalog, no torch, so the ingress stays light."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from deployments.errors import InvalidRequest, ModelNotFound
from deployments.families.protocol import MAX_PROMPT_CHARS, MAX_SEED, NONBLANK, nonblank_prompt
from deployments.families.protocol import check_duration as check_duration  # the music rule is the shared one
from deployments.serving.batching import BatchConfig
from registry import AdapterEntry, ModelEntry
from registry.runtime import CatalogView

TASK = "text-to-music"
MAX_BATCH_SIZE = 32  # upper bound of user_config's max_batch_size; max_ongoing_requests is twice this
OutputFormat = Literal["wav", "flac", "mp3"]


class MusicParams(BaseModel):
    """What a request may set besides the model; shared by POST /api/music and the job input."""

    model_config = ConfigDict(extra="forbid")

    duration: float | None = Field(None, gt=0, description="Seconds of audio; default the model's "
                                   "recommended_duration_seconds; at most its max_duration_seconds.")
    adapter: str | None = Field(None, description="LoRA adapter id (GET /adapters); it must be made for the model.")
    seed: int | None = Field(None, ge=0, le=MAX_SEED, description="Same seed, prompt and settings: same audio.")
    output_format: OutputFormat = "wav"


class MusicJobInput(MusicParams):
    """A job's stored input: the prompt, or an uploaded UTF-8 text file holding it."""

    model_config = ConfigDict(json_schema_extra={"anyOf": [
        {"required": ["prompt"], "properties": {"prompt": {"type": "string"}}},
        {"required": ["file_id"], "properties": {"file_id": {"type": "string"}}}]})

    file_id: str | None = Field(None, description="Upload whose text is the prompt (seed 000).")
    prompt: str | None = Field(None, max_length=MAX_PROMPT_CHARS, json_schema_extra={"pattern": NONBLANK},
                               description="Overrides the uploaded text.")

    @field_validator("prompt")
    @classmethod
    def _check_prompt(cls, value: str | None) -> str | None:
        return nonblank_prompt(value)


class MusicConfig(BatchConfig):
    """`user_config` of the deployment: prompts per generate call."""

    default_batch, default_wait_s, largest_batch = 8, 0.05, MAX_BATCH_SIZE


@dataclass
class Music:
    """One generated clip, encoded; `batch_size` = prompts that shared its generate call."""

    audio: bytes
    format: str
    media_type: str
    sample_rate: int
    duration: float
    model: str
    adapter: str | None
    seed: int
    batch_size: int


def default_duration(entry: ModelEntry) -> float:
    return entry.specs.recommended_duration_seconds or min(10.0, entry.specs.max_duration_seconds or 10.0)


def find_adapter(catalog: CatalogView, name: str) -> AdapterEntry:
    """An adapter by id or hub repo id (case-insensitive), or 404 listing the known ones."""
    wanted = name.strip().lower()
    for adapter in catalog.adapters.values():
        if wanted in (adapter.id, adapter.hub.repo_id.lower()):
            return adapter
    raise ModelNotFound(f"Adapter '{name}' not found. Known adapters: {', '.join(catalog.adapters) or 'none'}",
                        error="Adapter does not exist")


def check_adapter(catalog: CatalogView, entry: ModelEntry, adapter: AdapterEntry) -> None:
    if adapter.base_model != entry.id:
        base = catalog.models[adapter.base_model]
        raise InvalidRequest(f"Adapter '{adapter.id}' requires model '{base.id}' ({base.hub.repo_id}); "
                             f"the request uses '{entry.id}'")
