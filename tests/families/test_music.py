"""Text-to-music over HTTP against the real app, with tiny random-weight MusicGen models from the test hub.

The weights are random, so the music is noise; what is checked is what a client relies on: the
audio has the model's sample rate and the requested length, a seed reproduces a clip whether or
not it was batched with others, concurrent prompts share one generate call, adapters change the
sound and are refused on the wrong model, limits come from the catalog, and uploads run as jobs.
"""

from __future__ import annotations

import io
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import soundfile as sf

from deployments.errors import InvalidRequest
from deployments.families.music.protocol import check_duration
from registry import load_catalog
from tests.tiny_musicgen import ADAPTERS

RATE = 32000
JAZZ = "jazz trio with walking bass and brushed drums, late night club"


def music(client, **body):
    return client.post("/api/music", json={"prompt": "calm piano melody in the rain", "duration": 1, **body})


def decode(reply) -> tuple[np.ndarray, int]:
    assert reply.status_code == 200, reply.text
    audio, rate = sf.read(io.BytesIO(reply.content), dtype="float32")
    return audio, rate


@pytest.mark.parametrize(("duration", "fmt", "frames"), [(1, "wav", RATE), (2, "flac", 2 * RATE), (1.5, "wav", 48000)])
def test_audio_has_the_model_rate_and_the_requested_length(client, duration, fmt, frames):
    reply = music(client, duration=duration, output_format=fmt, seed=1)
    audio, rate = decode(reply)
    assert (rate, audio.shape) == (RATE, (frames,))
    assert reply.headers["content-type"] == f"audio/{fmt}"
    assert (reply.headers["x-sample-rate"], float(reply.headers["x-duration"])) == ("32000", duration)
    assert reply.headers["x-model"] == "musicgen-small" and reply.headers["x-seed"] == "1"
    assert 0.01 < np.sqrt(np.mean(audio ** 2)) and np.abs(audio).max() <= 1


def test_mp3_output_decodes_at_32khz(client):
    audio, rate = decode(music(client, output_format="mp3", seed=1))
    assert rate == RATE and abs(len(audio) - RATE) < 0.1 * RATE  # MP3 pads by up to a frame


def test_concurrent_prompts_share_one_generate_call_and_keep_their_own_audio(client):
    prompts = [{"seed": 5}, {"prompt": JAZZ, "seed": 6}]  # prompts of different token lengths
    alone = [music(client, **p) for p in prompts]
    assert [r.headers["x-batch-size"] for r in alone] == ["1", "1"]
    with ThreadPoolExecutor(2) as pool:
        together = list(pool.map(lambda p: music(client, **p), prompts))
    assert [r.headers["x-batch-size"] for r in together] == ["2", "2"]
    for single, batched in zip(alone, together):
        assert np.allclose(decode(single)[0], decode(batched)[0], atol=1e-3)
    assert not np.allclose(decode(alone[0])[0], decode(alone[1])[0], atol=0.05)


def test_seed_reproduces_and_another_seed_differs(client):
    first, again, other = (decode(music(client, seed=s))[0] for s in (9, 9, 10))
    assert np.array_equal(first, again)
    assert np.abs(first - other).max() > 0.05
    assert music(client).headers["x-seed"].isdigit()  # a seed is chosen and reported when none is given


@pytest.mark.parametrize(("duration", "message"), [(31, "Duration 31s exceeds model limit of 30s"),
                                                   (30.5, "Duration 30.5s exceeds model limit of 30s")])
def test_duration_over_the_model_limit_is_refused(client, duration, message):
    reply = music(client, duration=duration)
    assert reply.status_code == 400 and reply.json()["message"] == message


def test_the_limit_follows_the_environment_override():
    catalog = load_catalog(environ={"CATALOG__MUSICGEN_SMALL__MAX_DURATION_SECONDS": "45"})
    small = catalog.models["musicgen-small"]
    check_duration(small, 45)
    with pytest.raises(InvalidRequest, match=r"^Duration 45\.5s exceeds model limit of 45s$"):
        check_duration(small, 45.5)
    with pytest.raises(InvalidRequest, match="limit of 30s"):
        check_duration(catalog.models["musicgen-medium"], 31)


def test_an_adapter_changes_the_sound_and_is_fetched_from_the_hub(client, hub):
    base = decode(music(client, seed=3))[0]
    reply = music(client, seed=3, adapter="lofi-small")
    adapted = decode(reply)[0]
    assert reply.headers["x-adapter"] == "lofi-small"
    assert np.abs(adapted - base).max() > 0.05
    assert np.array_equal(decode(music(client, seed=3, adapter="lofi-small"))[0], adapted)
    assert np.array_equal(decode(music(client, seed=3))[0], base)  # the base model is untouched afterwards
    assert sum(hub.file_downloads(ADAPTERS["lofi-small"][0]).values()) > 0


def test_an_adapter_without_a_model_runs_on_its_base_model(client):
    reply = music(client, adapter="jazz-medium", seed=2)
    assert decode(reply)[1] == RATE
    assert (reply.headers["x-model"], reply.headers["x-adapter"]) == ("musicgen-medium", "jazz-medium")


@pytest.mark.parametrize(("body", "status", "message"), [
    ({"adapter": "jazz-medium", "model": "musicgen-small"}, 400,
     "Adapter 'jazz-medium' requires model 'musicgen-medium' (facebook/musicgen-medium); "
     "the request uses 'musicgen-small'"),
    ({"adapter": "disco"}, 404, "Adapter 'disco' not found. Known adapters: lofi-small, jazz-medium"),
    ({"prompt": "  "}, 400, "prompt: prompt must not be empty"),
    ({"duration": 0}, 400, "duration: Input should be greater than 0"),
    ({"output_format": "ogg"}, 400, "output_format: Input should be 'wav', 'flac' or 'mp3'"),
    ({"tempo": 120}, 400, "tempo: Extra inputs are not permitted"),
    ({"model": "musicgen-huge"}, 404, "Model 'musicgen-huge' not found for task 'text-to-music'"),
    ({"model": "whisper-base"}, 400, "Model 'whisper-base' is a speech-to-text model, not text-to-music"),
])
def test_bad_requests_are_clear_4xx(client, body, status, message):
    reply = music(client, **body)
    assert reply.status_code == status, reply.text
    assert message in reply.json()["message"]


def test_adapters_list_their_base_model_and_its_limits(client):
    body = client.get("/adapters").json()
    by_id = {a["id"]: a for a in body["adapters"]}
    assert set(by_id) == set(ADAPTERS) and body["count"] == 2
    jazz = by_id["jazz-medium"]
    assert (jazz["name"], jazz["base_model"], jazz["hf_adapter_id"]) == (
        "Jazz Trio", "facebook/musicgen-medium", ADAPTERS["jazz-medium"][0])
    assert jazz["base_model_config"]["max_duration_seconds"] == 30
    assert jazz["base_model_config"]["display_name"] == "MusicGen Medium"
    only_small = client.get("/adapters", params={"model": "facebook/musicgen-small"}).json()["adapters"]
    assert [a["id"] for a in only_small] == ["lofi-small"]


def wait_for(client, job_id: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while (job := client.get(f"/jobs/{job_id}").json())["status"] not in ("completed", "failed", "cancelled"):
        assert time.monotonic() < deadline, job
        time.sleep(0.2)
    return job


def test_an_uploaded_prompt_runs_as_a_job_and_writes_the_audio(client):
    uploaded = client.post("/upload/musicgen", files={"file": ("idea.txt", JAZZ.encode())})
    assert uploaded.status_code == 201, uploaded.text
    started = client.post(f"/process/musicgen/{uploaded.json()['file_id']}",
                          json={"model_variant": "small", "duration": 1.5, "seed": 6, "output_format": "flac"})
    assert started.status_code == 202, started.text
    job = wait_for(client, started.json()["job_id"])
    assert job["status"] == "completed", job
    assert (job["output"]["prompt"], job["output"]["sample_rate"], job["output"]["seed"]) == (JAZZ, RATE, 6)
    [file] = job["files"]
    audio, rate = decode(client.get(file["url"]))
    assert (file["name"], rate, audio.shape) == ("music.flac", RATE, (48000,))
    direct = decode(music(client, prompt=JAZZ, duration=1.5, seed=6))[0]
    assert np.allclose(audio, direct, atol=1e-3)  # the file's text was the prompt


@pytest.mark.parametrize(("body", "message"), [
    ({"duration": 31}, "Duration 31s exceeds model limit of 30s"),
    ({"adapter": "jazz-medium"}, "Adapter 'jazz-medium' requires model 'musicgen-medium'"),
    ({"prompt": "x", "temperature": 2}, "temperature: Extra inputs are not permitted"),
])
def test_job_input_is_checked_before_queueing(client, body, message):
    file_id = client.post("/upload/musicgen", files={"file": ("idea.txt", b"slow blues")}).json()["file_id"]
    reply = client.post(f"/process/musicgen/{file_id}", json=body)
    assert reply.status_code == 400 and message in reply.json()["message"], reply.text


def test_run_api_takes_a_prompt(client):
    reply = client.post("/api/v1/run?wait=60", json={"task": "text-to-music",
                                                    "input": {"prompt": "lofi hip hop beat", "duration": 1}})
    assert reply.status_code == 200 and reply.json()["status"] == "completed", reply.text
    assert reply.json()["output"]["duration"] == 1.0
    assert client.post("/api/v1/run", json={"task": "text-to-music", "input": {}}).status_code == 400
