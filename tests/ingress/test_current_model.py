"""One current model per task, everywhere: after "Use this model" (PUT /models/current/{task}), each seed
route that names no model runs the chosen one, and so does a job for the task (/api/v1/run); switching back
restores the catalog's default. (Embeddings: tests/model_cache/test_model_downloads.py; /process and /separate:
tests/families/test_separation_jobs.py.)"""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from tests.families.test_separation_jobs import make_clip


def png() -> bytes:
    out = io.BytesIO()
    Image.fromarray(np.random.default_rng(3).integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(out, format="PNG")
    return out.getvalue()


def wav() -> bytes:
    return make_clip(1.0, rate=16000, channels=1)


# task -> (the model switched to, the route's request as httpx arguments, where the reply names the model,
#          the same work as a job's input)
ROUTES = {
    "image-classification": ("vit-base-patch16-224", ("/api/image/classify", {"files": {"file": ("a.png", png())}}),
                             "body", None),
    "image-to-text": ("qwen2-vl-2b-instruct", ("/api/image/describe", {
        "files": {"file": ("a.png", png())}, "data": {"max_tokens": "2"}}), "body", None),
    "chat": ("mistral-7b-instruct", ("/api/llm", {"json": {
        "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}}), "body",
             {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}),
    "speech-to-text": ("whisper-tiny", ("/api/stt", {"files": {"audio": ("a.wav", wav())}}), "body", None),
    "text-to-music": ("musicgen-medium", ("/api/music", {"json": {"prompt": "a chime", "duration": 1}}), "header",
                      {"prompt": "a chime", "duration": 1}),
    "text-to-speech": ("bark-small", ("/api/tts", {"json": {"text": "Hello."}}), "header", {"text": "Hello."}),
}


@pytest.mark.parametrize("task", ROUTES)
def test_the_current_model_is_what_the_tasks_routes_and_jobs_run(client, task):
    model, (path, request), named_in, job_input = ROUTES[task]
    default = client.get("/models/current").json()["current_models"][task]
    switched = client.put(f"/models/current/{task}", json={"model": model})
    assert switched.status_code == 200, switched.text
    try:
        reply = client.post(path, **request)
        assert reply.status_code == 200, reply.text[:400]
        assert (reply.json()["model"] if named_in == "body" else reply.headers["x-model"]) == model
        if job_input is not None:
            job = client.post("/api/v1/run", params={"wait": 120}, json={"task": task, "input": job_input}).json()
            assert job["status"] == "completed" and job["model"] == model, job
    finally:
        back = client.put(f"/models/current/{task}", json={"model": default})
    assert back.status_code == 200
    assert client.get("/models/current").json()["current_models"][task] == default
