"""Pydantic schema of the model catalog: strict, so a typo in the data file fails at start."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]*$"


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HubRepo(StrictModel):
    """One Hugging Face Hub repository to download, pinned to a revision; or an S3 prefix holding
    the same files (`repo_id: s3://bucket/prefix`, seed 004's model storage), fetched whole."""

    repo_id: str = Field(description="Hub repository id, e.g. 'facebook/musicgen-small', or s3://bucket/prefix.")
    revision: str = Field("main", description="Branch, tag or 40-hex commit to download.")
    tracks: str | None = Field(None, description="For a revision pinned to a commit (models added at run time): "
                               "the branch it was resolved from, which `update` moves it along.")
    repo_type: Literal["model", "dataset"] = "model"
    role: str = Field("weights", description="What the files are for: weights, vocoder, speaker-embeddings...")
    allow_patterns: list[str] | None = Field(None, description="Only files matching these (fnmatch) patterns, "
                                             "e.g. a diffusers layout without the repo's single-file checkpoints.")

    @field_validator("repo_id")
    @classmethod
    def _repo_id_has_owner(cls, value: str) -> str:
        # '..' nowhere and no part longer than a file name may be: an id becomes a cache folder (and an S3
        # prefix, a tree of them)
        if (not re.fullmatch(r"[\w.-]+/[\w.-]+|s3://[a-z0-9][a-z0-9.-]{1,62}(/[\w.=+-]+)*/?", value)
                or ".." in value or len(value) > 512 or max(map(len, value.split("/"))) > 128):
            raise ValueError(f"repo_id must look like 'owner/name' or 's3://bucket/prefix' (no '..', no part over "
                             f"128 characters), got {value[:200]!r}")
        return value

    @property
    def is_s3(self) -> bool:
        return self.repo_id.startswith("s3://")


class ModelSpecs(StrictModel):
    """Numbers a model is known by. Any of them can be overridden by environment variable."""

    sample_rate: int | None = Field(None, gt=0, description="Audio sample rate in or out, Hz.")
    audio_channels: int | None = Field(None, gt=0)
    max_duration_seconds: float | None = Field(None, gt=0, description="Longest audio a request may ask for.")
    recommended_duration_seconds: float | None = Field(None, gt=0)
    tokens_per_second: int | None = Field(None, gt=0, description="Audio tokens generated per second.")
    chunk_length_seconds: float | None = Field(None, gt=0, description="Window a model hears at once.")
    vram_requirement_gb: float | None = Field(None, ge=0, description="GPU memory needed to load and run.")
    dimensions: int | None = Field(None, gt=0, description="Embedding vector length.")
    max_inputs: int | None = Field(None, gt=0, description="Most texts accepted in one request.")
    max_input_tokens: int | None = Field(None, gt=0, description="Tokens read per input; longer is truncated.")
    context_length: int | None = Field(None, gt=0, description="Prompt plus generated tokens.")
    stems: list[str] | None = Field(None, description="Sources a separation model outputs.")
    voices: list[str] | None = Field(None, description="Voice names a speech model accepts (presets, speakers).")
    min_voice_sample_seconds: float | None = Field(None, gt=0, description="Shortest voice sample to clone.")
    max_voice_sample_seconds: float | None = Field(None, gt=0, description="Longest voice sample to clone.")
    image_size_multiple: int | None = Field(None, gt=0, description="Image/video width and height must be "
                                            "multiples of this (the VAE's downsampling times the patch size).")
    max_image_size: int | None = Field(None, gt=0, description="Largest width or height in pixels.")
    default_image_size: int | None = Field(None, gt=0, description="Width and height when a request sets none.")
    max_inference_steps: int | None = Field(None, gt=0, description="Most denoising steps a request may ask for.")
    default_inference_steps: int | None = Field(None, gt=0)
    max_guidance_scale: float | None = Field(None, ge=0, description="Largest classifier-free guidance scale.")
    default_guidance_scale: float | None = Field(None, ge=0)
    max_images: int | None = Field(None, gt=0, description="Images one request may ask for.")
    max_frames: int | None = Field(None, gt=0, description="Most video frames (duration x fps) per request.")
    default_fps: int | None = Field(None, gt=0, description="Video frames per second when a request sets none.")
    tool_calls: Literal["hermes", "mistral"] | None = Field(None, description="How a chat model writes tool "
                                                             "calls: hermes (<tool_call> JSON </tool_call>, "
                                                             "Qwen2.5) or mistral ([TOOL_CALLS] [JSON]); none: "
                                                             "it takes no tools.")


class TaskConfig(StrictModel):
    category: Literal["audio", "text", "vision", "video"]
    default_model: str = Field(description="Model used when a request names none.")
    aliases: list[str] = Field(default_factory=list, description="Other names requests may use for the task, "
                               "e.g. seed 001's 'text-generation' for chat.")


class FamilyConfig(StrictModel):
    task: str
    deployment: str = Field(description="Serve deployment that runs this family (see deployments/app.py).")
    default_model: str
    file_types: list[str] = Field(default_factory=list, description="Upload extensions accepted, lower case.")
    description: str = ""


class ModelEntry(StrictModel):
    """One servable model: a variant of a family, downloadable from the hub."""

    id: str = Field(pattern=NAME_PATTERN, description="Catalog name used in requests.")
    family: str
    variant: str = Field(description="Short name within the family, as in seed 000's model_variant.")
    display_name: str
    description: str = ""
    aliases: list[str] = Field(default_factory=list, description="Other names requests may use.")
    hub: HubRepo
    companions: list[HubRepo] = Field(default_factory=list, description="Extra repos the model needs.")
    capabilities: list[str] = Field(default_factory=list)
    engine: str | None = Field(None, pattern=r"^[a-z0-9-]+$", description="What runs it within its family "
                               "(whisper: transformers or ctranslate2; embeddings: sentence-transformers or "
                               "onnx); None: the family's first. A profile's `engines:` overrides it.")
    specs: ModelSpecs = ModelSpecs()
    quality: Literal["standard", "high", "very-high"] | None = Field(None, description="Output quality, as seed "
                                                                     "001's tts_features rate it.")
    speed: Literal["fast", "medium", "slow"] | None = Field(None, description="Relative speed within its task.")
    experimental: bool = Field(False, description="Downloaded only when the request says experimental: true.")
    recommended_for: list[Literal["beginners", "advanced", "fast_setup", "highest_quality"]] = Field(
        default_factory=list, description="Lists of GET /models/available's download_recommendations it is in.")

    @field_validator("capabilities")
    @classmethod
    def _capabilities_are_names(cls, value: list[str]) -> list[str]:
        bad = [c for c in value if not re.fullmatch(r"[a-z0-9-]+", c)]
        if bad:
            raise ValueError(f"capabilities must be lower-case-dashed names, got {bad}")
        return value

    @property
    def names(self) -> set[str]:
        """Every name a request may use for this model, lower case."""
        return {self.id, self.hub.repo_id.lower(), *(alias.lower() for alias in self.aliases)}

    @property
    def repos(self) -> list[HubRepo]:
        return [self.hub, *self.companions]


class AdapterEntry(StrictModel):
    """A LoRA adapter (seed 002): weights applied on top of one base model, per request."""

    id: str = Field(pattern=NAME_PATTERN, description="Name requests use in `adapter`.")
    name: str = Field(description="Display name.")
    base_model: str = Field(description="Catalog id of the model the adapter was trained on.")
    hub: HubRepo
    description: str = ""


class NotServed(StrictModel):
    """A model users ask for by name (a seed's default) that this service cannot run, and what to use."""

    name: str = Field(description="Hub id (or name) as users send it.")
    use: str = Field(description="Catalog id of the model served in its place, named in the 404.")
    why: str = Field(description="Why it cannot run here.")


class CatalogFile(StrictModel):
    """The catalog data file as written, before cross-references are checked."""

    version: Literal[1]
    tasks: dict[str, TaskConfig]
    families: dict[str, FamilyConfig]
    models: list[dict] = Field(description="Validated one by one so errors name the entry.")
    adapters: list[AdapterEntry] = Field(default_factory=list)
    not_served: list[NotServed] = Field(default_factory=list)
