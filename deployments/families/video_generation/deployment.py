"""Video generation as jobs: text-to-video (ModelScope 1.7B) and image-to-video (LTX-Video), on diffusers.

A video takes minutes on a GPU, so it always runs as a job (POST returns 202): progress advances once
per denoising step (the pipeline's `callback_on_step_end`, which also stops a cancelled job at its next
step), and the result is an MP4 (H.264, yuv420p) written with imageio-ffmpeg's bundled ffmpeg, plus the
frame count, fps and size in the job's output. Models whose VAE compresses time (LTX: 8 frames per
latent) generate the next valid frame count and the video keeps the first duration x fps frames.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

from ray import serve

from deployments.errors import InvalidRequest
from deployments.families.video_generation.engines import ENGINES, VideoEngine
from deployments.families.video_generation.protocol import IMAGE_TO_VIDEO, VideoJob
from deployments.media.images import open_image
from deployments.serving.model_loading import FamilyDeployment
from deployments.serving.torch_threads import run_inference
from deployments.state.runner import JobContext
from registry import ModelEntry

logger = logging.getLogger(__name__)

VIDEO_FILE = "video.mp4"


def write_mp4(frames, fps: int, path: Path) -> None:
    """uint8 frames (n, h, w, 3) as H.264 in yuv420p, the pixel format every player decodes."""
    import imageio_ffmpeg

    height, width = frames.shape[1:3]
    writer = imageio_ffmpeg.write_frames(str(path), (width, height), fps=fps, codec="libx264",
                                         pix_fmt_out="yuv420p", macro_block_size=1,
                                         output_params=["-crf", "18"], ffmpeg_log_level="error")
    writer.send(None)
    for frame in frames:
        writer.send(frame.tobytes())
    writer.close()


@serve.deployment(max_ongoing_requests=4, health_check_period_s=5)
class VideoGenerationDeployment(FamilyDeployment):
    """Runs one video job at a time per replica (a video fills a GPU); queued jobs wait in Serve."""

    async def run_job(self, job_id: str) -> str:
        return await self._jobs.run(job_id, self._video_job)

    async def _video_job(self, context: JobContext) -> dict[str, Any]:
        job = context.job
        entry = self._entry(job.model, job.task)
        params = VideoJob.model_validate(job.input)
        first_frame = None
        if job.task == IMAGE_TO_VIDEO:
            upload = await asyncio.to_thread(self._store.get_upload, params.file_id) if params.file_id else None
            if upload is None:
                raise InvalidRequest(f"Upload '{params.file_id}' no longer exists")
            data = await asyncio.to_thread(self._store.read_upload, upload)
            first_frame, _ = await asyncio.to_thread(open_image, data, upload.filename)
            first_frame = first_frame.resize((params.width, params.height))
        context.report(0.0, "loading model")
        engine: VideoEngine = await self._models.get(entry)
        steps, started = params.num_inference_steps, time.perf_counter()

        def on_step(step: int) -> None:
            context.report(0.95 * (step + 1) / steps, f"denoising step {step + 1}/{steps}")

        frames = await run_inference(engine.render, params, first_frame, on_step)
        context.report(0.99, "encoding MP4")
        await asyncio.to_thread(write_mp4, frames, params.fps, context.output_dir / VIDEO_FILE)
        return {"model": entry.id, "file": VIDEO_FILE, "frames": len(frames), "fps": params.fps,
                "duration": round(len(frames) / params.fps, 3), "width": params.width, "height": params.height,
                "seed": params.seed, "num_inference_steps": params.num_inference_steps,
                "generation_time": round(time.perf_counter() - started, 3)}

    def _load(self, entry: ModelEntry, paths: dict[str, str]) -> VideoEngine:
        return ENGINES[entry.family](entry, paths, self._device)
