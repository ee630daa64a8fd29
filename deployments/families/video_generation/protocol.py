"""What the ingress may know of video generation: the request, the stored job input and its checks
against the model's catalog specs (duration, fps, frames). Built on the image protocol; no engine."""

from __future__ import annotations

import math

from pydantic import Field

from deployments.errors import InvalidRequest
from deployments.families.image_generation.protocol import GenerationParams, ImageJob, resolve_image
from deployments.families.protocol import check_duration, format_seconds
from registry import ModelEntry

TEXT_TO_VIDEO, IMAGE_TO_VIDEO = "text-to-video", "image-to-video"


class VideoParams(GenerationParams):
    duration: float | None = Field(None, gt=0, description="Seconds; default the model's "
                                   "recommended_duration_seconds; at most its max_duration_seconds.")
    fps: int | None = Field(None, gt=0, le=60, description="Frames per second; default the model's default_fps. "
                            "duration x fps is at most the model's max_frames.")


class VideoJob(ImageJob):
    """A video job's stored input (text-to-video and image-to-video)."""

    frames: int
    fps: int
    duration: float
    file_id: str | None = Field(None, description="The upload of the first frame (image-to-video).")


def resolve_video(entry: ModelEntry, params: VideoParams, file_id: str | None = None) -> VideoJob:
    """As resolve_image, plus duration (its own limit) and duration x fps within the model's max_frames."""
    image = resolve_image(entry, params)
    duration = params.duration or entry.specs.recommended_duration_seconds or 2.0
    check_duration(entry, duration)
    fps = params.fps or entry.specs.default_fps or 8
    frames = max(1, math.ceil(duration * fps - 1e-9))
    limit = entry.specs.max_frames
    if limit is not None and frames > limit:
        raise InvalidRequest(f"Duration {format_seconds(duration)}s at {fps} fps is {frames} frames, which exceeds "
                             f"model limit of {limit} frames")
    return VideoJob(**image.model_dump(), frames=frames, fps=fps, duration=duration, file_id=file_id)
