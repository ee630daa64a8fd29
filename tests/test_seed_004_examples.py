"""Seed 004's three services (qwen-describe-image, mistral-generate-description, chatterbox-text-to-speech),
called the way their RunPod-style clients call them: `{"input": {...}}` to `<base>/run` or `/runsync`, then
`/status/{id}` until COMPLETED. A client switches by setting its base URL to `/v2/<model>`.
"""

from __future__ import annotations

import io
import time

import soundfile as sf

from tests.families.test_vision import image_server  # noqa: F401  (a fixture: a local server of test images)

FINISHED = {"COMPLETED", "FAILED", "CANCELLED"}


def until_finished(client, base: str, job_id: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while (status := client.get(f"{base}/status/{job_id}").json())["status"] not in FINISHED:
        assert status["status"] in ("IN_QUEUE", "IN_PROGRESS") and time.monotonic() < deadline, status
        time.sleep(0.2)
    return status


def test_qwen_describe_image_run_then_status(client, image_server):  # noqa: F811
    base_url, _ = image_server
    base = "/v2/qwen-describe-image"
    # the seed service's own path under the model's base URL (RunPod's /run is the same route)
    queued = client.post(f"{base}/api/v1/run", json={"input": {"image_url": f"{base_url}/cat.png",
                                                        "prompt": "Describe this product photo"}})
    assert queued.status_code == 200, queued.text
    assert set(queued.json()) == {"id", "status"} and queued.json()["status"] == "IN_QUEUE"
    assert client.get(f"{base}/api/v1/status/{queued.json()['id']}").json()["id"] == queued.json()["id"]
    done = until_finished(client, base, queued.json()["id"])
    assert done["status"] == "COMPLETED", done
    assert isinstance(done["output"]["description"], str) and done["output"]["model"] == "qwen2-vl-2b-instruct"
    assert done["delayTime"] >= 0 and done["executionTime"] > 0
    # the same job through the service's own job API
    assert client.get(f"/jobs/{done['id']}").json()["status"] == "completed"


def test_mistral_generate_description_runsync(client):
    reply = client.post("/v2/mistral-generate-description/runsync", json={"input": {
        "image_description": "A brown leather wallet with six card slots on a wooden table.", "seed": 5}})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["status"] == "COMPLETED", body
    product = body["output"]["product"]
    assert {"title", "description", "keywords", "suggested_categories"} <= set(product)


def test_chatterbox_names_the_cloning_model_served_instead(client):
    reply = client.post("/v2/chatterbox-text-to-speech/run", json={"input": {"text": "Hello"}})
    assert reply.status_code == 404
    assert "use 'csm-1b' instead" in reply.json()["message"] and "torchaudio" in reply.json()["message"]


def test_text_to_speech_runsync_result_file(client):
    reply = client.post("/v2/speecht5-tts/runsync", json={"input": {"text": "Hello from a RunPod client.",
                                                                    "voice": "slt"}})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["status"] == "COMPLETED", body
    [result] = body["output"]["files"]
    audio = client.get(result["url"])
    assert audio.status_code == 200 and len(audio.content) == result["size"]
    assert sf.info(io.BytesIO(audio.content)).samplerate == 16000


def test_cancel_health_and_errors(client):
    base = "/v2/all-minilm-l6-v2"
    done = client.post(f"{base}/runsync", json={"input": {"text": "a sentence"}}).json()
    assert done["status"] == "COMPLETED" and len(done["output"]["embeddings"][0]) == 384, done
    # a finished job cannot be cancelled; a queued one can (RunPod's /cancel answers CANCELLED)
    late = client.post(f"{base}/cancel/{done['id']}")
    assert late.status_code == 409 and "already COMPLETED" in late.json()["message"]
    health = client.get(f"{base}/health").json()
    assert health["jobs"]["completed"] >= 1 and health["workers"]["idle"] + health["workers"]["running"] >= 1
    # another endpoint's job is not found here; an unknown endpoint names the known models
    assert client.get(f"/v2/speecht5-tts/status/{done['id']}").status_code == 404
    unknown = client.post("/v2/no-such-model/run", json={"input": {}})
    assert unknown.status_code == 404 and "all-minilm-l6-v2" in unknown.json()["message"]
    # RunPod's webhook is refused by name, not ignored; a bad input is the model's own 400
    hooked = client.post(f"{base}/run", json={"input": {"text": "x"}, "webhook": "http://example.com/done"})
    assert hooked.status_code == 400 and "webhook" in hooked.json()["message"]
    assert client.post(f"{base}/run", json={"input": {"text": ""}}).status_code == 400
