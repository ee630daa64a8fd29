"""What a separation request may ask for (seed 000's body), checked against the catalog entry and
the upload in the ingress, and read back by the worker from the stored job."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from deployments.errors import InvalidRequest
from deployments.state.store import Upload
from registry import ModelEntry


class SeparationParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model_variant: str | None = Field(None, description="htdemucs, htdemucs_ft, htdemucs_6s, mdx_extra; "
                                      "default the family's default.")
    shifts: int = Field(1, ge=0, le=10, description="Random time shifts averaged (Demucs' shift trick).")
    overlap: float = Field(0.25, ge=0, lt=1, description="Overlap between consecutive segments.")
    segment: float | None = Field(None, gt=0, description="Segment length in seconds; default the model's.")
    two_stems: str | None = Field(None, description="Return this stem and the sum of the rest, e.g. vocals.")
    output_format: Literal["wav", "flac", "mp3"] = "wav"


class SeparationInput(SeparationParams):
    """A separation job as stored: the parameters plus the upload it separates."""

    file_id: str


def check_separation(entry: ModelEntry, params: SeparationParams, upload: Upload) -> None:
    """Refuse, before queuing, anything the model or the upload rules out."""
    specs = entry.specs
    if params.two_stems is not None and params.two_stems not in (specs.stems or []):
        raise InvalidRequest(
            f"two_stems '{params.two_stems}' is not a stem of model '{entry.id}'; "
            f"it has {', '.join(specs.stems or [])}"
        )
    if params.segment is not None and specs.chunk_length_seconds and params.segment > specs.chunk_length_seconds:
        raise InvalidRequest(
            f"Segment {params.segment:g}s exceeds model limit of {specs.chunk_length_seconds:g}s"
        )
    duration = upload.info.get("duration")
    if duration and specs.max_duration_seconds and duration > specs.max_duration_seconds:
        raise InvalidRequest(
            f"Duration {round(duration, 1):g}s exceeds model limit of {specs.max_duration_seconds:g}s"
        )
