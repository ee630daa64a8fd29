"""The video engines, one per catalog family, behind one contract (VideoEngine): the deployment picks the
engine by the model's catalog family (ENGINES). Each loads a diffusers pipeline, reports progress once per
denoising step (which also lets a cancelled job stop at its next step) and returns uint8 frames."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, Protocol

from deployments.errors import InvalidRequest
from deployments.families.image_generation.engines import load_pipeline, pipeline_modules
from deployments.families.video_generation.protocol import VideoJob
from registry import ModelEntry

# text-to-video pipeline class -> its image-to-video twin on the same components (diffusers' from_pipe)
IMAGE_TO_VIDEO_PIPELINES = {"LTXPipeline": "LTXImageToVideoPipeline", "WanPipeline": "WanImageToVideoPipeline"}


class VideoEngine(Protocol):
    """What the video deployment asks of an engine."""

    def __init__(self, entry: ModelEntry, paths: dict[str, str], device: str) -> None: ...

    def render(self, params: VideoJob, first_frame: Any, on_step: Callable[[int], None]) -> Any:
        """(params.frames, height, width, 3) uint8 frames; on_step(i) after each denoising step."""

    def torch_modules(self) -> list:
        """The modules a replica reports (memory, dtypes) and optimizes."""


def frames_for(pipeline, frames: int) -> int:
    """The smallest frame count >= `frames` the pipeline can make (1 + k x its temporal compression)."""
    step = getattr(pipeline, "vae_temporal_compression_ratio", 1) or 1
    return frames if step == 1 else 1 + -(-(frames - 1) // step) * step


def call_parameters(pipeline) -> set[str]:
    return set(inspect.signature(pipeline.__call__).parameters)


class TextToVideo:
    """Any diffusers pipeline whose call takes num_frames (ModelScope's TextToVideoSD, LTX, Wan)."""

    def __init__(self, entry: ModelEntry, paths: dict[str, str], device: str):
        self.device = device
        self.pipeline = load_pipeline(paths["weights"], device, "DiffusionPipeline")
        if "num_frames" not in call_parameters(self.pipeline):
            raise InvalidRequest(f"Model '{entry.id}' is a {type(self.pipeline).__name__}, not a video pipeline")

    def torch_modules(self) -> list:
        return pipeline_modules(self.pipeline)

    def render(self, params: VideoJob, first_frame: Any, on_step: Callable[[int], None]) -> Any:
        import numpy as np
        import torch

        def on_step_end(_pipe, step: int, _timestep, tensors: dict) -> dict:
            on_step(step)
            return tensors

        options: dict[str, Any] = {
            "prompt": params.prompt, "negative_prompt": params.negative_prompt, "height": params.height,
            "width": params.width, "num_frames": frames_for(self.pipeline, params.frames),
            "num_inference_steps": params.num_inference_steps, "guidance_scale": params.guidance_scale,
            "output_type": "np", "generator": torch.Generator(self.device).manual_seed(params.seed)}
        if "callback_on_step_end" in call_parameters(self.pipeline):
            options["callback_on_step_end"] = on_step_end
        else:  # pipelines from before diffusers 0.23 (TextToVideoSD): callback(step, timestep, latents)
            options |= {"callback": lambda step, _t, _latents: on_step(step), "callback_steps": 1}
        if first_frame is not None:
            options["image"] = first_frame
        with torch.inference_mode():
            video = np.asarray(self.pipeline(**options).frames[0])  # (frames, h, w, 3) floats in [0, 1]
        return (video[:params.frames].clip(0, 1) * 255).round().astype(np.uint8)


class ImageToVideo(TextToVideo):
    """The first frame given: the pipeline itself if its call takes an image, else its image-to-video twin."""

    def __init__(self, entry: ModelEntry, paths: dict[str, str], device: str):
        import diffusers

        super().__init__(entry, paths, device)
        if "image" not in call_parameters(self.pipeline):
            twin = IMAGE_TO_VIDEO_PIPELINES.get(type(self.pipeline).__name__)
            if twin is None:
                raise InvalidRequest(f"Model '{entry.id}' is a {type(self.pipeline).__name__}, which takes no "
                                     f"image; image-to-video runs {', '.join(IMAGE_TO_VIDEO_PIPELINES.values())}")
            self.pipeline = getattr(diffusers, twin).from_pipe(self.pipeline)


ENGINES: dict[str, type[VideoEngine]] = {"text-to-video": TextToVideo, "image-to-video": ImageToVideo}
