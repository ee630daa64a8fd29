"""Video generation through the real app: seed 003's text-to-video and image-to-video routes as jobs, with
progress per denoising step and an MP4 (H.264) of duration x fps frames; limits as 4xx before any job.
Tiny random-weight ModelScope (UNet3D) and LTX-Video pipelines (tests/tiny_diffusion.py)."""

from __future__ import annotations

import io
import time

import numpy as np
from PIL import Image


def mp4_facts(data: bytes, tmp_path) -> dict:
    """What ffmpeg (imageio-ffmpeg's) reads back: codec, size, fps and every decoded frame."""
    import imageio_ffmpeg

    path = tmp_path / "video.mp4"
    path.write_bytes(data)
    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    frames = list(reader)
    return {"codec": meta["codec"], "size": tuple(meta["size"]), "fps": meta["fps"], "frames": len(frames)}


def finished(client, job_id: str, timeout: float = 120) -> dict:
    reply = client.get(f"/jobs/{job_id}", params={"wait": timeout})
    assert reply.status_code == 200
    return reply.json()


def test_text_to_video_is_a_job_whose_mp4_has_duration_times_fps_frames(client, tmp_path):
    reply = client.post("/api/video/text-to-video", json={
        "prompt": "A cat playing with a ball", "model": "damo-vilab/text-to-video-ms-1.7b", "duration": 2,
        "fps": 8, "height": 64, "width": 48, "num_inference_steps": 40, "seed": 5})
    assert reply.status_code == 202, reply.text
    job_id = reply.json()["job_id"]
    assert reply.headers["location"] == f"/jobs/{job_id}"
    seen = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        job = client.get(f"/jobs/{job_id}").json()
        seen.append(job["progress"])
        if job["status"] in ("completed", "failed"):
            break
        time.sleep(0.1)
    assert job["status"] == "completed", job
    assert seen == sorted(seen) and any(0 < p < 1 for p in seen), seen  # rises step by step
    output = job["output"]
    assert (output["frames"], output["fps"], output["duration"]) == (16, 8, 2.0)
    assert (output["width"], output["height"], output["model"]) == (48, 64, "text-to-video-ms-1.7b")
    video = client.get(f"/jobs/{job_id}/files/video.mp4")
    assert video.status_code == 200 and video.headers["content-type"] == "video/mp4"
    facts = mp4_facts(video.content, tmp_path)
    assert facts["codec"].startswith("h264") and facts["size"] == (48, 64)
    assert facts["fps"] == 8 and facts["frames"] == 16


def test_image_to_video_starts_from_the_upload_at_its_shape(client, tmp_path):
    image = Image.fromarray(np.random.default_rng(1).integers(0, 256, (64, 96, 3), dtype=np.uint8))
    data = io.BytesIO()
    image.save(data, format="PNG")
    reply = client.post("/api/video/image-to-video", params={"wait": 120},
                        files={"image": ("input.png", data.getvalue(), "image/png")},
                        data={"prompt": "The person is waving", "duration": "1", "fps": "8",
                              "num_inference_steps": "2"})
    assert reply.status_code == 200, reply.text  # waited: finished
    job = reply.json()
    assert job["status"] == "completed" and job["model"] == "ltx-video", job
    # LTX makes 1 + 8k frames (9 here); the video keeps duration x fps of them
    assert (job["output"]["frames"], job["output"]["width"], job["output"]["height"]) == (8, 96, 64)
    facts = mp4_facts(client.get(f"/jobs/{job['job_id']}/files/video.mp4").content, tmp_path)
    assert facts["size"] == (96, 64) and facts["frames"] == 8


def test_video_limits_and_bad_uploads_are_4xx_before_any_job(client):
    before = client.get("/jobs", params={"limit": 1000}).json()["count"]
    cases = [
        ({"prompt": "a cat", "duration": 12}, "Duration 12s exceeds model limit of 8s"),
        ({"prompt": "a cat", "duration": 8, "fps": 24},
         "Duration 8s at 24 fps is 192 frames, which exceeds model limit of 64 frames"),
        ({"prompt": "a cat", "width": 60}, "Width 60 px is not a multiple of 8"),
        ({"prompt": "a cat", "num_inference_steps": 500}, "num_inference_steps 500 exceeds model limit of 100"),
    ]
    for body, message in cases:
        reply = client.post("/api/video/text-to-video", json=body)
        assert reply.status_code == 400 and message in reply.json()["message"], reply.text
    no_image = client.post("/api/video/image-to-video", files={"other": ("a.png", b"x", "image/png")},
                           data={"prompt": "waving"})
    assert no_image.status_code == 400  # `other` is no field of the request; without it, no `image`
    text = client.post("/api/video/image-to-video", files={"image": ("notes.txt", b"hello", "text/plain")},
                       data={"prompt": "waving"})
    assert text.status_code == 415
    as_json = client.post("/api/video/image-to-video", json={"prompt": "waving"})
    assert as_json.status_code == 415
    assert client.get("/jobs", params={"limit": 1000}).json()["count"] == before  # nothing was queued
