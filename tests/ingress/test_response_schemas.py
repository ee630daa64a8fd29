"""The OpenAPI spec states every route's success reply, and the replies keep to it.

First the spec (GET /openapi.json, as /docs reads it): every operation documents a 2xx or 3xx reply, with a
JSON schema of named fields or the media types it sends. Then real requests, as a client makes them, across
the areas (catalog, model management, embeddings, OpenAI's /v1 routes, uploads, jobs, RunPod's jobs, music,
speech, voices, transcription, chat, vision, images, video, health): each reply's status, content type and
documented headers must be the spec's, and a JSON body must validate against its documented schema with
every object closed (`additionalProperties: false` added wherever the spec leaves it open), so a field the
code sends but the model does not state fails as surely as a missing or mistyped one.
"""

from __future__ import annotations

import base64
import io
import time
from typing import Any

import httpx
import numpy as np
import pytest
import soundfile as sf
from jsonschema import Draft202012Validator
from PIL import Image

SUCCESS = ("2", "3")
ROUTES_AT_LEAST = 58  # the operations when every route was documented: fewer means some were not reached
JSON = "application/json"


def tone(seconds: float, rate: int = 16000) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    out = io.BytesIO()
    sf.write(out, (0.3 * np.sin(2 * np.pi * 220 * t)).astype("float32"), rate, format="WAV")
    return out.getvalue()


def picture(size: tuple[int, int] = (64, 48)) -> bytes:
    pixels = np.random.default_rng(3).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "PNG")
    return out.getvalue()


def closed(node: Any) -> Any:
    """A copy of a JSON schema in which every object that lists its properties allows no others."""
    if isinstance(node, list):
        return [closed(item) for item in node]
    if not isinstance(node, dict):
        return node
    result = {key: closed(value) for key, value in node.items()}
    if "properties" in result and "additionalProperties" not in result:
        result["additionalProperties"] = False
    return result


@pytest.fixture(scope="module")
def spec(client) -> dict[str, Any]:
    reply = client.get("/openapi.json")
    assert reply.status_code == 200, reply.text
    return reply.json()


@pytest.fixture(scope="module")
def check(client, spec):
    """check(reply, method, path template) -> the reply's JSON body (or bytes), after checking the reply against
    what the spec documents for the operation and the reply's status."""
    components = closed(spec["components"])

    def check_reply(reply, method: str, path: str, headers: bool = True) -> Any:
        assert reply.status_code < 400, f"{method} {reply.url} -> {reply.status_code} {reply.text[:500]}"
        responses = spec["paths"][path][method.lower()]["responses"]
        documented = responses.get(str(reply.status_code))
        assert documented is not None, f"{method} {path} answered {reply.status_code}; documented: {list(responses)}"
        kind = reply.headers.get("content-type", "").split(";")[0].strip()
        assert kind in documented.get("content", {}), (
            f"{method} {path} sent {kind!r}; documented: {list(documented.get('content', {}))}")
        if headers:
            missing = [name for name in documented.get("headers", {}) if name not in reply.headers]
            assert not missing, f"{method} {path}: documented headers {missing} were not sent"
        if kind != JSON:
            return reply.content
        body = reply.json()
        schema = {**documented["content"][JSON]["schema"], "components": components}
        errors = sorted(Draft202012Validator(schema).iter_errors(body), key=lambda e: list(e.absolute_path))
        assert not errors, f"{method} {path}: the reply does not match its documented schema:\n" + "\n".join(
            f"  at /{'/'.join(map(str, e.absolute_path))}: {e.message[:300]}" for e in errors[:12])
        return body

    return check_reply


def test_every_operation_documents_its_success_reply(spec):
    schemas = spec["components"]["schemas"]
    operations, undocumented, vague = 0, [], []
    for path, methods in spec["paths"].items():
        for method, operation in methods.items():
            operations += 1
            name = f"{method.upper()} {path}"
            success = {status: doc for status, doc in operation["responses"].items() if status.startswith(SUCCESS)}
            if not success:
                undocumented.append(name)
            for status, doc in success.items():
                assert doc.get("description"), f"{name} {status} has no description"
                content = doc.get("content", {})
                if not content and not (status.startswith("3") and "Location" in doc.get("headers", {})):
                    vague.append(f"{name} {status}: neither content nor a Location")
                if JSON not in content:
                    continue
                schema = content[JSON].get("schema", {})
                refs = [branch.get("$ref", "") for branch in schema.get("anyOf", [schema])]
                for ref in refs:
                    model = schemas.get(ref.removeprefix("#/components/schemas/"))
                    if not ref or model is None or not model.get("properties") or not model.get("required"):
                        vague.append(f"{name} {status}: {schema} names no model with required fields")
    assert operations >= ROUTES_AT_LEAST, operations
    assert not undocumented, f"operations without a documented success reply: {undocumented}"
    assert not vague, "\n".join(vague)
    for schema in schemas.values():
        Draft202012Validator.check_schema(schema)
    # the reply models are as a client sees them: nothing a route always sends is optional
    job = schemas["JobReply"]
    assert {"job_id", "status", "progress", "files", "output", "status_url"} <= set(job["required"])
    assert schemas["JobStatus"]["enum"] == ["pending", "running", "completed", "failed", "cancelled"]


def test_catalog_health_and_current_models(client, check):
    health = client.get("/health")
    body = check(health, "GET", "/health")
    assert body["status"] == ("healthy" if health.status_code == 200 else "degraded")
    models = check(client.get("/models"), "GET", "/models")
    assert models["total_models"] == len(models["models"]) > 10
    one = check(client.get("/models/all-minilm-l6-v2"), "GET", "/models/{name}")
    assert one["model"]["id"] == "all-minilm-l6-v2" and one["model"]["dimensions"] == 384  # a flattened spec
    family = check(client.get("/models/demucs"), "GET", "/models/{name}")
    assert family["family"] == "demucs" and {m["id"] for m in family["variants"]} >= {"htdemucs", "mdx_extra"}
    current = check(client.get("/models/current"), "GET", "/models/current")
    same = current["current_models"]["text-embedding"]
    switched = check(client.put("/models/current/text-embedding", json={"model": same}), "PUT",
                     "/models/current/{task}")
    assert switched["previous_model"] == switched["current_model"] == same
    listed = check(client.get("/v1/models"), "GET", "/v1/models")
    assert "all-minilm-l6-v2" in [m["id"] for m in listed["data"]]
    check(client.get("/v1/models/whisper-1"), "GET", "/v1/models/{name}")


def test_model_management(client, check):
    started = check(client.post("/models/download", json={"model_id": "all-minilm-l6-v2", "load": False}),
                    "POST", "/models/download")
    status = check(client.get(f"/models/download/status/{started['download_id']}"), "GET",
                   "/models/download/status/{download_id}")
    assert status["model_name"] == "all-minilm-l6-v2"
    available = check(client.get("/models/available"), "GET", "/models/available")
    assert available["available_models"]["all-minilm-l6-v2"]["downloaded"] is True
    managed = check(client.get("/models/managed"), "GET", "/models/managed")
    assert managed["total_models"] >= 1 and managed["downloaded_models"][0]["replicas"]
    cache = check(client.get("/models/cache/info"), "GET", "/models/cache/info")
    assert "all-minilm-l6-v2" in cache["models"]


def test_embeddings(client, check):
    one = check(client.post("/api/embedding", json={"text": "a cat sits on the mat"}), "POST", "/api/embedding")
    assert len(one["embedding"]) == one["dimensions"] and "embeddings" not in one
    many = check(client.post("/api/embedding", json={"text": ["a", "b"]}), "POST", "/api/embedding")
    assert len(many["embeddings"]) == 2 and "embedding" not in many
    for encoding in ("float", "base64"):
        reply = client.post("/v1/embeddings", json={"input": ["hello"], "model": "all-minilm-l6-v2",
                                                     "encoding_format": encoding})
        data = check(reply, "POST", "/v1/embeddings")["data"]
        assert isinstance(data[0]["embedding"], list if encoding == "float" else str)


def wait_done(client, job_id: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while (job := client.get(f"/jobs/{job_id}").json())["status"] in ("pending", "running"):
        assert time.monotonic() < deadline, job
        time.sleep(0.2)
    return job


def test_uploads_and_jobs(client, check):
    audio = check(client.post("/upload/whisper", files={"file": ("speech.wav", tone(2.0))}), "POST",
                  "/upload/{model}")
    assert audio["duration"] == 2.0 and audio["sample_rate"] == 16000
    image = check(client.post("/upload/image-classifier", files={"file": ("cat.png", picture())}), "POST",
                  "/upload/{model}")
    assert (image["width"], image["height"], image["format"]) == (64, 48, "PNG")
    text = check(client.post("/upload/musicgen", files={"file": ("p.txt", b"calm piano")}), "POST",
                 "/upload/{model}")
    assert text["characters"] == 10
    check(client.post("/upload", files={"file": ("song.wav", tone(1.0, rate=44100))}), "POST", "/upload")

    done = check(client.post(f"/process/whisper/{audio['file_id']}", params={"wait": 120}), "POST",
                 "/process/{model}/{file_id}")
    assert done["status"] == "completed" and done["files"], done
    queued = client.post("/api/v1/run", json={"model": "all-minilm-l6-v2", "input": {"text": ["hello"]}})
    job = check(queued, "POST", "/api/v1/run")
    wait_done(client, job["job_id"])
    finished = check(client.get(f"/jobs/{job['job_id']}"), "GET", "/jobs/{job_id}")
    assert finished["output"]["dimensions"] == 384
    check(client.get(f"/api/v1/status/{job['job_id']}"), "GET", "/api/v1/status/{job_id}")
    listed = check(client.get("/jobs", params={"limit": 5}), "GET", "/jobs")
    assert listed["count"] == len(listed["jobs"]) >= 1
    transcript = done["files"][0]
    file = client.get(transcript["url"])
    check(file, "GET", "/jobs/{job_id}/files/{name}")
    deleted = check(client.delete(f"/jobs/{job['job_id']}"), "DELETE", "/jobs/{job_id}")
    assert deleted["job_id"] == job["job_id"]


VIDEO = {"prompt": "A cat playing with a ball", "duration": 2, "fps": 8, "height": 64, "width": 48,
         "num_inference_steps": 40, "seed": 5}


def test_video_job_cancelled_and_runpod_shape(client, check):
    queued = check(client.post("/api/video/text-to-video", json=VIDEO), "POST", "/api/video/text-to-video")
    cancelled = check(client.post(f"/jobs/{queued['job_id']}/cancel"), "POST", "/jobs/{job_id}/cancel")
    assert cancelled["status"] == "cancelled"

    endpoint = "/v2/text-to-video-ms-1.7b"
    run = check(client.post(f"{endpoint}/run", json={"input": VIDEO}), "POST", "/v2/{model}/run")
    stopped = check(client.post(f"{endpoint}/cancel/{run['id']}"), "POST", "/v2/{model}/cancel/{job_id}")
    assert stopped == {"id": run["id"], "status": "CANCELLED"}
    check(client.get(f"{endpoint}/status/{run['id']}"), "GET", "/v2/{model}/status/{job_id}")
    synced = client.post("/v2/all-minilm-l6-v2/runsync", json={"input": {"text": ["hello"]}})
    body = check(synced, "POST", "/v2/{model}/runsync")
    assert body["status"] == "COMPLETED" and body["output"]["dimensions"] == 384
    check(client.get("/v2/all-minilm-l6-v2/health"), "GET", "/v2/{model}/health")


def test_music_speech_and_voices(client, check):
    check(client.post("/api/music", json={"prompt": "calm piano", "duration": 1}), "POST", "/api/music")
    adapters = check(client.get("/adapters"), "GET", "/adapters")
    assert adapters["count"] == len(adapters["adapters"]) >= 1
    check(client.post("/api/tts", json={"text": "Hello there."}), "POST", "/api/tts")
    check(client.post("/v1/audio/speech", json={"model": "tts-1", "input": "Hello.", "response_format": "wav"}),
          "POST", "/v1/audio/speech")

    sample = {"audio_prompt": base64.b64encode(tone(2.0)).decode(), "audio_prompt_text": "A tone."}
    saved = check(client.post("/voices", json={"name": "schema-voice", **sample}), "POST", "/voices")
    assert (saved["name"], saved["model"], saved["duration"]) == ("schema-voice", "csm-1b", 2.0)
    listed = check(client.get("/voices"), "GET", "/voices")
    assert "schema-voice" in [v["name"] for v in listed["voices"]]
    csm = check(client.get("/models/csm-1b"), "GET", "/models/{name}")
    assert "schema-voice" in csm["model"]["saved_voices"]
    check(client.delete("/voices/schema-voice"), "DELETE", "/voices/{name}")


def test_transcription(client, check):
    clip = tone(2.5)
    stt = client.post("/api/stt", files={"audio": ("rec.wav", clip)}, data={"word_timestamps": "true"})
    assert "words" in check(stt, "POST", "/api/stt")
    for response_format in ("json", "verbose_json", "text", "srt", "vtt"):
        form = {"model": "whisper-1", "response_format": response_format}
        if response_format == "verbose_json":
            form["timestamp_granularities[]"] = "word"
        reply = client.post("/v1/audio/transcriptions", files={"file": ("clip.wav", clip)}, data=form)
        body = check(reply, "POST", "/v1/audio/transcriptions")
        assert isinstance(body, dict) == (response_format in ("json", "verbose_json")), reply.headers
    translated = client.post("/v1/audio/translations", files={"file": ("clip.wav", clip)}, data={"model": "whisper-1"})
    check(translated, "POST", "/v1/audio/translations")


def test_chat(client, check):
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    llm = check(client.post("/api/llm", json={"messages": messages, "max_tokens": 4, "seed": 1}), "POST", "/api/llm")
    assert llm["usage"]["completion_tokens"] <= 4
    completion = client.post("/v1/chat/completions", json={"model": "qwen2.5-0.5b-instruct", "messages": messages,
                                                            "max_tokens": 4, "seed": 1})
    assert check(completion, "POST", "/v1/chat/completions")["object"] == "chat.completion"
    stream = client.post("/v1/chat/completions", json={"model": "qwen2.5-0.5b-instruct", "messages": messages,
                                                        "max_tokens": 2, "stream": True})
    assert check(stream, "POST", "/v1/chat/completions", headers=False).endswith(b"data: [DONE]\n\n")
    product = client.post("/api/product-description", json={"image_description": "A brown leather wallet.",
                                                             "seed": 5})
    assert check(product, "POST", "/api/product-description")["product"]["title"]


def test_vision_and_images(client, check):
    classified = client.post("/api/image/classify", files={"file": ("cat.png", picture())}, data={"top_k": "3"})
    assert len(check(classified, "POST", "/api/image/classify")["predictions"]) == 3
    described = client.post("/api/image/describe", files={"file": ("cat.png", picture())}, data={"max_tokens": "4"})
    assert check(described, "POST", "/api/image/describe")["generated_tokens"] <= 4
    image = {"prompt": "A lake", "height": 64, "width": 64, "num_inference_steps": 1, "seed": 7}
    seed = check(client.post("/api/image", json=image), "POST", "/api/image")
    assert len(seed["images"]) == len(seed["seeds"]) == 1
    for response_format in ("b64_json", "url"):
        reply = client.post("/v1/images/generations", json={"prompt": "A lake", "size": "64x64", "seed": 7,
                                                             "response_format": response_format})
        data = check(reply, "POST", "/v1/images/generations")["data"]
        assert list(data[0]) == [response_format]
    png = client.get(data[0]["url"])
    assert check(png, "GET", "/jobs/{job_id}/files/{name}").startswith(b"\x89PNG")


def test_an_undocumented_field_fails_the_check(client, check):
    """The check itself: a body with a field its model does not state is refused (the spec is closed here)."""
    reply = client.get("/models/current")
    tampered = httpx.Response(200, json={**reply.json(), "surprise": 1}, request=reply.request)
    with pytest.raises(AssertionError, match="surprise"):
        check(tampered, "GET", "/models/current")
    untyped = httpx.Response(200, json={**reply.json(), "success": "yes"}, request=reply.request)
    with pytest.raises(AssertionError, match="'yes' is not of type 'boolean'"):
        check(untyped, "GET", "/models/current")
