"""Seed 000's separation flow over HTTP against the real app: upload, process, stems, jobs."""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
import soundfile as sf

from tests.conftest import DEMUCS_REPOS, UPLOAD_LIMIT_BYTES

FOUR_STEMS = ["bass", "drums", "other", "vocals"]
RATE = 44100


def make_clip(seconds: float = 3.0, rate: int = RATE, channels: int = 2, fmt: str = "WAV") -> bytes:
    """A chord with a click track: something for every stem to pick up."""
    t = np.arange(int(seconds * rate)) / rate
    tone = 0.2 * np.sin(2 * np.pi * 220 * t) + 0.1 * np.sin(2 * np.pi * 330 * t)
    clicks = 0.3 * (np.sin(2 * np.pi * 2 * t) > 0.99)
    audio = np.stack([tone + clicks * (c + 1) / channels for c in range(channels)], axis=1).astype("float32")
    out = io.BytesIO()
    sf.write(out, audio, rate, format=fmt)
    return out.getvalue()


def upload(client, data: bytes, name: str = "song.wav", model: str | None = "demucs"):
    return client.post(f"/upload/{model}" if model else "/upload", files={"file": (name, data)})


def wait_for(client, job_id: str, until=("completed", "failed", "cancelled"), timeout: float = 180) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/jobs/{job_id}").json()
        if job["status"] in until:
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} still {job['status']} after {timeout}s: {job}")


def decode(client, url: str) -> tuple[np.ndarray, int]:
    reply = client.get(url)
    assert reply.status_code == 200, reply.text
    return sf.read(io.BytesIO(reply.content), always_2d=True)


def separate(client, body: dict | None = None, clip: bytes | None = None, name: str = "song.wav") -> dict:
    uploaded = upload(client, clip or make_clip(), name)
    assert uploaded.status_code == 201, uploaded.text
    started = client.post(f"/process/demucs/{uploaded.json()['file_id']}", json=body)
    assert started.status_code == 202, started.text
    assert started.json()["status"] in ("pending", "running")
    return wait_for(client, started.json()["job_id"])


@pytest.mark.parametrize("variant", list(DEMUCS_REPOS))
def test_every_variant_returns_its_stems_at_the_clip_length(client, hub, variant):
    job = separate(client, {"model_variant": variant})
    assert job["status"] == "completed", job
    stems = client.get(f"/models/{variant}").json()["model"]["stems"]
    assert sorted(f["name"] for f in job["files"]) == sorted(f"{stem}.wav" for stem in stems)
    assert job["model"] == variant and job["progress"] == 1.0
    for file in job["files"]:
        audio, rate = decode(client, file["url"])
        assert rate == RATE and audio.shape == (3 * RATE, 2)
        assert np.abs(audio).max() > 0
    # the weights came through the model manager: every file of the repo fetched exactly once
    repo_id, _ = DEMUCS_REPOS[variant]
    assert set(hub.file_downloads(repo_id).values()) == {1}


def test_upload_reports_what_it_read(client):
    reply = upload(client, make_clip(2.5, rate=22050, channels=1, fmt="FLAC"), "voice memo.flac")
    assert reply.status_code == 201, reply.text
    body = reply.json()
    assert body["model"] == "demucs" and body["filename"] == "voice memo.flac"
    assert (body["duration"], body["sample_rate"], body["channels"]) == (2.5, 22050, 1)
    assert body["process_url"] == f"/process/demucs/{body['file_id']}"


def test_other_rates_and_channels_are_converted_to_the_model_rate(client):
    job = separate(client, {"output_format": "flac"}, make_clip(2.0, rate=22050, channels=1, fmt="FLAC"), "m.flac")
    assert job["status"] == "completed", job
    audio, rate = decode(client, job["files"][0]["url"])
    assert job["files"][0]["name"].endswith(".flac")
    assert rate == RATE and audio.shape == (2 * RATE, 2)


def test_two_stems_gives_the_stem_and_the_rest_as_mp3(client):
    job = separate(client, {"two_stems": "vocals", "output_format": "mp3"}, make_clip(fmt="OGG"), "song.ogg")
    assert job["status"] == "completed", job
    assert sorted(f["name"] for f in job["files"]) == ["no_vocals.mp3", "vocals.mp3"]
    audio, rate = decode(client, job["files"][0]["url"])
    assert rate == RATE and abs(audio.shape[0] - 3 * RATE) <= 2 * 1152  # mp3 frames pad the ends


def test_seed_routes_default_to_demucs(client):
    uploaded = client.post("/upload", files={"file": ("a.mp3", make_clip(1.5, fmt="MP3"))})
    assert uploaded.status_code == 201 and uploaded.json()["model"] == "demucs"
    started = client.post(f"/separate/{uploaded.json()['file_id']}?wait=120")
    assert started.status_code == 200, started.text
    job = started.json()
    assert job["status"] == "completed" and job["model"] == "htdemucs"
    assert sorted(f["name"] for f in job["files"]) == [f"{s}.wav" for s in FOUR_STEMS]


def test_the_current_model_is_what_the_family_routes_run(client):
    """PUT /models/current reaches /separate/{id} and /process/demucs/{id}: a request naming only the family
    gets the switched model; one naming a variant still gets it."""
    file_id = upload(client, make_clip(1.0)).json()["file_id"]
    switched = client.put("/models/current/source-separation", json={"model": "htdemucs_6s"})
    assert switched.status_code == 200, switched.text
    try:
        for path in (f"/separate/{file_id}", f"/process/demucs/{file_id}"):
            job = client.post(path, params={"wait": 120}, json={}).json()
            assert (job["status"], job["model"], len(job["files"])) == ("completed", "htdemucs_6s", 6), job
        named = client.post(f"/process/demucs/{file_id}", params={"wait": 120}, json={"model_variant": "htdemucs"})
        assert named.json()["model"] == "htdemucs"
    finally:
        assert client.put("/models/current/source-separation", json={"model": "htdemucs"}).status_code == 200


def test_generic_job_api_runs_separation_and_embeddings(client):
    file_id = upload(client, make_clip(1.0)).json()["file_id"]
    started = client.post("/api/v1/run", json={"model": "htdemucs_6s", "input": {"file_id": file_id}})
    assert started.status_code == 202, started.text
    job_id = started.json()["job_id"]
    wait_for(client, job_id)
    status = client.get(f"/api/v1/status/{job_id}").json()
    assert status["status"] == "completed" and len(status["files"]) == 6
    assert status["output"]["stems"] == ["drums", "bass", "other", "vocals", "guitar", "piano"]

    embedded = client.post("/api/v1/run?wait=60", json={"task": "text-embedding", "input": {"text": ["a", "b"]}})
    assert embedded.status_code == 200, embedded.text
    output = embedded.json()["output"]
    assert embedded.json()["model"] == "all-minilm-l6-v2"
    assert output["dimensions"] == 384 and len(output["embeddings"]) == 2

    listed = client.get("/jobs", params={"status": "completed"}).json()["jobs"]
    assert {job_id, embedded.json()["job_id"]} <= {job["job_id"] for job in listed}


def test_cancel_stops_a_running_job_and_keeps_no_files(client, job_store_dir):
    file_id = upload(client, make_clip(60.0, channels=1, fmt="FLAC"), "long.flac").json()["file_id"]
    job_id = client.post(f"/process/htdemucs_ft/{file_id}", json={"shifts": 2}).json()["job_id"]
    running = wait_for(client, job_id, until=("running", "completed", "failed"))
    assert running["status"] == "running", running
    cancelled = client.post(f"/jobs/{job_id}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    again = client.post(f"/api/v1/cancel/{job_id}")
    assert again.status_code == 409 and "already cancelled" in again.json()["message"]
    time.sleep(2)  # the worker notices at its next progress report
    job = client.get(f"/jobs/{job_id}").json()
    assert job["status"] == "cancelled" and job["files"] == []
    assert not (job_store_dir / "results" / job_id).exists()
    deadline = time.monotonic() + 30  # the worker clears its staging once its separation thread returns
    while list((job_store_dir / "staging").glob(f"job-{job_id}-*")) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert list((job_store_dir / "staging").glob(f"job-{job_id}-*")) == []
    assert client.get(f"/jobs/{job_id}/files/vocals.wav").status_code == 409
    assert client.delete(f"/jobs/{job_id}").status_code == 200
    assert client.get(f"/jobs/{job_id}").status_code == 404


def _truncated_wav() -> bytes:
    data = make_clip(2.0)
    return data[: len(data) // 2]


BAD_UPLOADS = [
    ("notes.txt", b"just some words", 415, "File type 'txt' is not accepted by demucs; it takes wav, flac, mp3, ogg"),
    ("fake.wav", b"this is text, not audio" * 10, 400, "File 'fake.wav' is not valid audio: not a readable audio file"),
    ("cut.wav", _truncated_wav(), 400, "truncated WAV: the header announces"),
    ("big.wav", b"\0" * (UPLOAD_LIMIT_BYTES + 2 * 1024 * 1024), 413, "exceeds the upload limit"),
]


@pytest.mark.parametrize(("name", "data", "status", "message"), BAD_UPLOADS, ids=[b[0] for b in BAD_UPLOADS])
def test_bad_uploads_are_refused_and_leave_nothing(client, job_store_dir, name, data, status, message):
    before = sorted((job_store_dir / "uploads").iterdir())
    reply = upload(client, data, name)
    assert reply.status_code == status, reply.text
    assert message in reply.json()["message"]
    assert sorted((job_store_dir / "uploads").iterdir()) == before
    assert list((job_store_dir / "staging").iterdir()) == []


def test_bad_processing_requests_name_the_problem(client):
    file_id = upload(client, make_clip(1.0)).json()["file_id"]
    cases = [
        ("/process/demucs/" + file_id, {"model_variant": "htdemucs_9s"}, 404,
         "Unknown model_variant 'htdemucs_9s' for demucs; known variants: htdemucs, htdemucs_ft"),
        ("/process/demucs/nope", None, 404, "No upload with file_id 'nope'"),
        ("/process/nope/" + file_id, None, 404, "Model 'nope' not found. Known families: demucs"),
        ("/process/demucs/" + file_id, {"two_stems": "guitar"}, 400,
         "two_stems 'guitar' is not a stem of model 'htdemucs'; it has drums, bass, other, vocals"),
        ("/process/demucs/" + file_id, {"shifts": -1}, 400, "shifts: Input should be greater than or equal to 0"),
        ("/process/demucs/" + file_id, {"segment": 9}, 400, "Segment 9s exceeds model limit of 7.8s"),
        ("/process/demucs/" + file_id, {"output_format": "aac"}, 400,
         "output_format: Input should be 'wav', 'flac' or 'mp3'"),
        ("/process/demucs/" + file_id, {"quality": "best"}, 400, "quality: Extra inputs are not permitted"),
        ("/process/mdx_extra/" + file_id, {"model_variant": "htdemucs"}, 400, "contradicts the model 'mdx_extra'"),
        ("/api/v1/run", {"model": "htdemucs"}, 400, "input: Field required"),
        ("/api/v1/run", {"model": "htdemucs", "input": {}}, 400, "file_id: Field required"),
        ("/jobs/nope/cancel", None, 404, "No job with id 'nope'"),
    ]
    for url, body, status, message in cases:
        reply = client.post(url, json=body)
        assert reply.status_code == status, (url, body, reply.text)
        assert message in reply.json()["message"], (url, body, reply.json())
    assert client.get("/jobs/nope").status_code == 404
    text_id = client.post("/upload/musicgen", files={"file": ("p.txt", b"calm piano")}).json()["file_id"]
    refused = client.post(f"/process/demucs/{text_id}")
    assert refused.status_code == 415 and "cannot be processed by demucs" in refused.json()["message"]


def test_a_track_over_the_model_limit_is_refused_before_queuing():
    from deployments.errors import InvalidRequest
    from deployments.families.separation.protocol import SeparationParams, check_separation
    from deployments.state.store import Upload
    from registry import load_catalog

    entry = load_catalog().models["htdemucs"]
    song = Upload(file_id="f", family="demucs", filename="a.wav", size=1, created_at=0, info={"duration": 2000.04})
    with pytest.raises(InvalidRequest, match=r"^Duration 2000s exceeds model limit of 1800s$"):
        check_separation(entry, SeparationParams(), song)
