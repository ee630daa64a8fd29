"""Voice cloning with the tiny random-weight Sesame CSM (tests/tiny_csm.py) on all three routes: a
sample given as base64 (`audio_prompt`), as a URL (`audio_prompt_url`, fetched through the safe-URL
fetcher) or as an upload (`voice_sample_file_id`), with its transcript (`audio_prompt_text`).

The audio is noise, but what a user checks is real: a 24 kHz WAV of the length the model generated
(its duration cap is set to 1.6 s = 20 Mimi frames for the suite), different from the default voice
for the same text and seed, identical across runs and across routes for the same sample and seed."""

from __future__ import annotations

import base64
import io
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
import soundfile as sf

from tests.families.test_separation_jobs import make_clip, wait_for

MODEL, TEXT, SEED = "csm-1b", "Hello there, this is a test.", 7
SAMPLE = make_clip(2.0, rate=16000, channels=1)  # a 2 s "voice": any rate, the engine resamples
SECONDS = 20 * 1920 / 24000  # the suite's cap: 20 frames of 1920 samples at 24 kHz


@pytest.fixture(scope="module")
def sample_server():
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            self.send_response(200)
            self.send_header("Content-Type", "audio/wav")
            self.send_header("Content-Length", str(len(SAMPLE)))
            self.end_headers()
            self.wfile.write(SAMPLE)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def speech(reply) -> np.ndarray:
    assert reply.status_code == 200, reply.text[:300]
    audio, rate = sf.read(io.BytesIO(reply.content), dtype="float32")
    assert rate == 24000 and audio.ndim == 1
    assert len(audio) / rate == pytest.approx(SECONDS, abs=0.01)
    return audio


def test_a_cloned_voice_differs_from_the_default_and_repeats_itself(client):
    default = speech(client.post("/api/tts", json={"model": MODEL, "text": TEXT, "seed": SEED}))
    clone = {"model": MODEL, "text": TEXT, "seed": SEED, "audio_prompt": base64.b64encode(SAMPLE).decode(),
             "audio_prompt_text": "This is how my voice sounds."}
    first, second = (speech(client.post("/api/tts", json=clone)) for _ in range(2))
    assert not np.array_equal(first, default)
    assert np.array_equal(first, second)
    # a sample and no model: the model that clones speaks, rather than the default refusing the sample
    unnamed = client.post("/api/tts", json={key: value for key, value in clone.items() if key != "model"})
    assert unnamed.headers["X-Model"] == MODEL and np.array_equal(speech(unnamed), first)


def test_the_same_sample_clones_alike_on_all_three_routes(client, sample_server):
    text = {"audio_prompt_text": "This is how my voice sounds.", "seed": SEED}
    by_base64 = speech(client.post("/api/tts", json={"model": MODEL, "text": TEXT, **text,
                                                      "audio_prompt": base64.b64encode(SAMPLE).decode()}))
    by_url = speech(client.post("/v1/audio/speech", json={
        "model": MODEL, "input": TEXT, "response_format": "wav", "audio_prompt_url": f"{sample_server}/me.wav",
        **text}))
    upload = client.post("/upload", files={"file": ("me.wav", SAMPLE)})
    assert upload.status_code == 201, upload.text
    queued = client.post("/api/v1/run", json={"model": MODEL, "input": {
        "text": TEXT, "voice_sample_file_id": upload.json()["file_id"], **text}})
    assert queued.status_code == 202, queued.text
    job = wait_for(client, queued.json()["job_id"], timeout=120)
    assert job["status"] == "completed", job
    by_upload = speech(client.get(job["files"][0]["url"]))
    assert np.array_equal(by_base64, by_url) and np.array_equal(by_url, by_upload)


def _wav(seconds: float) -> str:
    return base64.b64encode(make_clip(seconds, rate=16000, channels=1)).decode()


@pytest.mark.parametrize(("sample", "status", "message"), [
    ({"audio_prompt": base64.b64encode(b"not audio at all").decode()}, 400,
     "The voice sample (audio_prompt) is not audio this service can decode"),
    ({"audio_prompt": _wav(0.5)}, 400, "The voice sample (audio_prompt) is 0.5s long; model 'csm-1b' takes samples "
                                       "of 1-30s"),
    ({"audio_prompt": _wav(31)}, 400, "is 31.0s long; model 'csm-1b' takes samples of 1-30s"),
    ({"audio_prompt": "%%% not base64"}, 400, "audio_prompt is not valid base64"),
    ({"audio_prompt": _wav(2), "voice_sample_file_id": "abc"}, 400,
     "Send one voice sample, not voice_sample_file_id and audio_prompt"),
    ({"voice_sample_file_id": "nope"}, 404, "No upload with file_id 'nope'"),
    ({"audio_prompt_url": "http://10.0.0.1/voice.wav"}, 400, "10.0.0.1"),
])
def test_bad_samples_are_refused_with_the_reason(client, sample, status, message):
    reply = client.post("/api/tts", json={"model": MODEL, "text": TEXT, **sample})
    assert reply.status_code == status, reply.text[:300]
    assert message in reply.json()["message"]


def test_models_that_cannot_clone_name_the_one_that_can(client):
    reply = client.post("/v1/audio/speech", json={"model": "bark-small", "input": "hi", "audio_prompt": _wav(2)})
    assert reply.status_code == 400
    assert reply.json()["message"].startswith("Voice cloning from a sample (audio_prompt) is not supported by model "
                                              "'bark-small'; models that can: csm-1b.")
    model = client.get(f"/models/{MODEL}").json()["model"]
    assert "voice-cloning" in model["capabilities"] and model["voices"] == ["0", "1"]
    assert (model["min_voice_sample_seconds"], model["max_voice_sample_seconds"]) == (1, 30)


def test_a_saved_voice_clones_by_name_until_it_is_deleted(client):
    sample = {"audio_prompt": base64.b64encode(SAMPLE).decode(), "audio_prompt_text": "This is how my voice sounds."}
    saved = client.post("/voices", json={"name": "My-Voice", **sample})
    assert saved.status_code == 201, saved.text
    assert (saved.json()["name"], saved.json()["model"], saved.json()["duration"]) == ("my-voice", MODEL, 2.0)
    by_name = speech(client.post("/v1/audio/speech", json={
        "model": MODEL, "input": TEXT, "voice": "my-voice", "seed": SEED, "response_format": "wav"}))
    by_sample = speech(client.post("/api/tts", json={"model": MODEL, "text": TEXT, "seed": SEED, **sample}))
    assert np.array_equal(by_name, by_sample)
    assert "my-voice" in client.get(f"/models/{MODEL}").json()["model"]["saved_voices"]
    assert [v["name"] for v in client.get("/voices", params={"model": MODEL}).json()["voices"]] == ["my-voice"]
    for body, message in [({"name": "0", **sample}, "'0' is one of model 'csm-1b's own voices"),
                          ({"name": "my voice", **sample}, "must be 1-64 lower-case letters"),
                          ({"name": "quiet"}, "A voice needs a sample"),
                          ({"name": "x", "model": "bark-small", **sample}, "models that can: csm-1b")]:
        reply = client.post("/voices", json=body)
        assert reply.status_code == 400 and message in reply.json()["message"], reply.text
    assert client.delete("/voices/my-voice").status_code == 200
    gone = client.post("/api/tts", json={"model": MODEL, "text": TEXT, "voice": "my-voice"})
    assert gone.status_code == 400 and "Unknown voice 'my-voice' for model 'csm-1b'" in gone.json()["message"]
