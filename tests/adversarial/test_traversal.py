"""No name in a request reaches a path it did not create: a traversal corpus through every route that
takes a file name, model name, voice, adapter, download name, job or file id, or S3 prefix, against
the real application, with canary folders where each escape would land (beside the model cache and the
job store, and an absolute path under /tmp). Every request gets a 4xx (or a plain 'not found'), never a
5xx, and no canary changes."""

from __future__ import annotations

import hashlib
import io
import os
import uuid
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pytest
from PIL import Image


# the escapes: parent steps, absolute paths, encoded, NUL, backslashes, overlong, Unicode look-alikes
def corpus(canary: Path) -> list[str]:
    return [
        "..", "../victim", "../../victim", "../../../victim", "a/../../victim", "./../victim",
        str(canary / "planted"), "/etc/passwd", "/tmp",
        "%2e%2e%2fvictim", "%2e%2e/%2e%2e/victim", "..%2fvictim", "%252e%252e%252fvictim",
        "victim\x00.wav", "..\x00/victim",
        "..\\victim", "..\\..\\victim", "C:\\Windows\\win.ini",
        "a" * 5000, "../" * 200 + "victim",
        "\uff0e\uff0e\uff0fvictim", "\u2025/victim", "..\u2215victim", "\u2024\u2024/victim",
    ]


def tree(folder: Path) -> dict[str, str]:
    """Every file and folder under `folder`, with a hash of each file: what a canary must keep."""
    found = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs:
            found[os.path.relpath(os.path.join(root, name), folder) + "/"] = ""
        for name in files:
            path = os.path.join(root, name)
            found[os.path.relpath(path, folder)] = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    return found


@pytest.fixture(scope="module")
def canaries(service, model_cache, job_store_dir, tmp_path_factory):
    """`victim` folders where '../victim' and '../../victim' lead from the cache, its url-downloads and
    s3-models folders and the job store's folders, and one under /tmp that absolute names point at."""
    outside = Path(f"/tmp/canary-{uuid.uuid4().hex[:8]}")
    roots = {outside}
    for base in (model_cache, job_store_dir):
        roots |= {base.parent / "victim", base.parent.parent / "victim", base / "victim"}
    (model_cache / "url-downloads").mkdir(parents=True, exist_ok=True)  # as any url download leaves it
    for root in roots:
        (root / "keep").mkdir(parents=True, exist_ok=True)
        (root / "keep" / "data.txt").write_text("do not touch")
    before = {root: tree(root) for root in roots}
    yield outside
    for root in roots:
        assert tree(root) == before[root], f"{root} changed"
    planted = [p for p in [Path("/tmp/written-by-api"), outside / "planted"] if p.exists()]
    assert not planted, planted


def png() -> bytes:
    out = io.BytesIO()
    Image.fromarray(np.full((32, 48, 3), 120, dtype=np.uint8)).save(out, format="PNG")
    return out.getvalue() + b"\nssh-ed25519 AAAA attacker\n"  # after IEND: Pillow still decodes it


def wav() -> bytes:
    from tests.families.test_separation_jobs import make_clip

    return make_clip(0.5)


def _sane(reply, name: str) -> None:
    assert reply.status_code < 500, f"{reply.request.method} {str(reply.request.url)[:120]} ({name[:60]!r}): " \
                                    f"{reply.status_code} {reply.text[:300]}"


def test_upload_file_names_never_become_paths(client, canaries, job_store_dir):
    """Hole 1: image-to-video stored the upload under the client's file name, so an absolute one wrote
    anywhere. The client's file name is only metadata now: the stored file is named by the service."""
    planted = ["/tmp/written-by-api", "../../../../../../tmp/written-by-api", str(canaries / "planted"),
               "..\\..\\victim"]
    for name in planted:  # each a real job of the video model: a few names, each cancelled at once
        video = client.post("/api/video/image-to-video", data={"prompt": "waves", "duration": "1", "fps": "8",
                                                               "num_inference_steps": "1"},
                            files={"image": (name, png(), "image/png")})
        assert video.status_code == 202, video.text
        assert not Path("/tmp/written-by-api").exists() and not (canaries / "planted").exists(), name
        job = video.json()
        client.post(f"/jobs/{job['job_id']}/cancel")
        stored = job_store_dir / "uploads" / job["input"]["file_id"]
        assert [p.name for p in stored.iterdir()] == ["upload.png"], name  # the extension of what it is
    for name in [*corpus(canaries), *planted]:
        reply = client.post("/upload/demucs", files={"file": (name + ".wav", wav(), "audio/wav")})
        _sane(reply, name)
        if reply.status_code == 201:
            body = reply.json()
            assert not set("/\\\x00") & set(body["filename"]), body["filename"]
            folder = job_store_dir / "uploads" / body["file_id"]
            assert [p.name for p in folder.iterdir()] == ["upload.wav"], name
    assert not Path("/tmp/written-by-api").exists()


def test_model_and_download_names_never_reach_outside_the_cache(client, canaries, model_cache):
    """Hole 2: retry_download with force_redownload, and DELETE of a download, removed any folder."""
    for name in ["../../victim", ".."]:  # the report's two: the folder beside the cache, and the cache itself
        reply = client.post("/models/manage", params={"action": "retry_download", "force_redownload": "true",
                                                      "model_name": name})
        assert reply.status_code == 400 and "model_name must match" in reply.json()["message"], reply.text
        assert (model_cache.parent / "victim" / "keep" / "data.txt").is_file() and any(model_cache.iterdir())
    for name in corpus(canaries):
        quoted = quote(name, safe="")
        for reply in (
            client.post("/models/manage", params={"action": "retry_download", "force_redownload": "true",
                                                  "model_name": name}),
            client.post("/models/manage", params={"action": "update", "model_name": name}),
            client.delete(f"/models/download/{quoted}"),
            client.delete(f"/models/download/{name.lstrip('/')}") if "\x00" not in name else None,
            client.post("/models/download", json={"source": "url", "model_id": "http://127.0.0.1:9/x.bin",
                                                  "name": name}),
            client.post("/models/download", json={"source": "huggingface", "model_id": "owner/model",
                                                  "task": "text-embedding", "name": name}),
            client.post("/models/download", json={"source": "huggingface", "model_id": name,
                                                  "task": "text-embedding"}),
            client.post("/models/download", json={"source": "s3", "model_id": f"s3://models/{name}",
                                                  "name": "fine", "task": "text-embedding"}),
            client.get(f"/models/download/status/{quoted}"),
            client.post(f"/models/download/{quoted}/cancel"),
            client.get(f"/models/{quoted}"),
            client.put("/models/current/text-embedding", json={"model": name}),
        ):
            if reply is not None:
                _sane(reply, name)
                assert reply.status_code != 200 or reply.request.method == "GET", (name, reply.text[:200])


def test_s3_prefixes_with_parent_steps_are_refused_where_they_enter(client):
    for prefix in ["s3://models/../victim", "s3://models/a/../../victim", "s3://models/..", "s3://models/./x/.."]:
        reply = client.post("/models/download", json={"source": "s3", "model_id": prefix, "name": "fine",
                                                      "task": "text-embedding"})
        assert reply.status_code == 400 and "s3://bucket/prefix" in reply.json()["message"], prefix


def test_voice_adapter_job_and_file_names_stay_lookups(client, canaries):
    for name in corpus(canaries):
        quoted = quote(name, safe="")
        for reply in (
            client.post("/voices", json={"name": name, "model": "csm-1b", "audio_prompt": "AAAA"}),
            client.delete(f"/voices/{quoted}"),
            client.post("/api/tts", json={"text": "hi", "model": "csm-1b", "voice": name}),
            client.post("/api/tts", json={"text": "hi", "voice_sample_file_id": name, "model": "csm-1b"}),
            client.post("/api/music", json={"prompt": "a tune", "duration": 1, "adapter": name}),
            client.get(f"/jobs/{quoted}"),
            client.get(f"/jobs/{quoted}/files/{quoted}"),
            client.delete(f"/jobs/{quoted}"),
            client.post(f"/process/demucs/{quoted}", json={}),
            client.post(f"/process/{quoted}/abc", json={}),
            client.post(f"/upload/{quoted}", files={"file": ("a.wav", b"RIFF")}),
            client.post("/api/v1/run", json={"model": "htdemucs", "input": {"file_id": name}}),
        ):
            _sane(reply, name)
            assert reply.status_code >= 400, (name, reply.request.url, reply.text[:200])


def test_realtime_model_and_voice_names_stay_lookups(service, canaries):
    """/v1/realtime's model (query and session.update), transcription model and voice: an error event each."""
    import json

    from websockets.sync.client import connect

    url = f"{service.replace('http', 'ws', 1)}/v1/realtime"
    with connect(f"{url}?intent=transcription", open_timeout=30) as session:
        assert json.loads(session.recv(timeout=30))["type"] == "session.created"
        for name in corpus(canaries):
            with connect(f"{url}?model={quote(name, safe='')}", open_timeout=30) as refused:
                first = json.loads(refused.recv(timeout=30))
            assert first["type"] == "error" and first["error"]["code"] == "model_not_found", (name, first)
            session.send(json.dumps({"type": "session.update", "session": {
                "type": "transcription", "audio": {"input": {"transcription": {"model": name}}}}}))
            error = json.loads(session.recv(timeout=30))
            assert error["type"] == "error" and error["error"]["code"] == "model_not_found", (name, error)
    with connect(f"{url}?model=qwen2.5-0.5b-instruct", open_timeout=30) as conversation:
        assert json.loads(conversation.recv(timeout=30))["type"] == "session.created"
        for name in corpus(canaries):
            conversation.send(json.dumps({"type": "session.update", "session": {
                "type": "realtime", "audio": {"output": {"voice": name}}}}))
            error = json.loads(conversation.recv(timeout=30))
            assert error["type"] == "error" and "Unknown voice" in error["error"]["message"], (name, error)
