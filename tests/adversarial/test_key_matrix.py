"""Keys are identities. A copy of the application configured with two user keys and an admin key (and an
allowed CORS origin) is deployed beside the open one. Every operation of its OpenAPI spec is called with
no key, a wrong key, another owner's key, its own key and an admin key: a route added later is walked
too, so none ships unguarded."""

from __future__ import annotations

import base64
import json
import re

import httpx
import openai
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect as ws_connect

from tests.families.test_separation_jobs import make_clip

ALICE, BOB, ADMIN = "alice-key-1", "bob-key-2", "admin-key-3"
ORIGIN = "https://studio.example"
# The operations that manage models: only admin keys may call them. Every other needs a key of either kind.
ADMIN_OPERATIONS = {("POST", "/models/download"), ("POST", "/models/download/{download_id}/cancel"),
                    ("DELETE", "/models/download/{model_name}"), ("POST", "/models/manage"),
                    ("PUT", "/models/current/{task}")}
OPEN_OPERATIONS = {("GET", "/health")}
SAMPLE = base64.b64encode(make_clip(2.0, rate=16000, channels=1)).decode()


def key(value: str) -> dict[str, str]:
    return {"authorization": f"Bearer {value}"}


@pytest.fixture(scope="module")
def secured(service):
    from ray import serve

    from deployments.app import AppArgs, compose_app
    from deployments.settings import ServiceSettings
    from registry import load_catalog

    settings = ServiceSettings(api_keys=f"{ALICE}, {BOB}", admin_api_keys=ADMIN, cors_origins=ORIGIN)
    app = compose_app(load_catalog(), settings, AppArgs(models=["all-minilm-l6-v2", "csm-1b", "htdemucs"],
                                                             runtime_pools=False))
    serve.run(app, name="secured", route_prefix="/secured")
    with httpx.Client(base_url=f"{service}/secured", timeout=120) as http:
        yield http
    serve.delete("secured")


@pytest.fixture(scope="module")
def owned(secured):
    """Alice's upload, finished job and saved voice: what the other keys must not see."""
    upload = secured.post("/upload/demucs", files={"file": ("a.wav", make_clip(0.5))}, headers=key(ALICE))
    assert upload.status_code == 201, upload.text
    job = secured.post("/api/v1/run", params={"wait": 60}, headers=key(ALICE),
                       json={"model": "all-minilm-l6-v2", "input": {"text": "mine"}})
    assert job.status_code == 200 and job.json()["status"] == "completed", job.text
    voice = secured.post("/voices", headers=key(ALICE), json={"name": "alice-voice", "audio_prompt": SAMPLE})
    assert voice.status_code == 201, voice.text
    return {"file_id": upload.json()["file_id"], "job_id": job.json()["job_id"], "voice": "alice-voice"}


def operations(secured) -> list[tuple[str, str]]:
    spec = secured.get("/openapi.json").json()
    found = [(method.upper(), path) for path, item in spec["paths"].items() for method in item
             if method in ("get", "post", "put", "delete", "patch")]
    return sorted(found, key=lambda op: (op[0] == "DELETE", op[1]))  # deletes last: they remove what others read


def concrete(path: str, owned: dict[str, str]) -> tuple[str, bool]:
    """The path with its parameters filled (Alice's objects where it names one); whether it names one of hers."""
    mine = False

    def fill(match: re.Match) -> str:
        nonlocal mine
        name = match.group(1)
        if name in ("job_id", "file_id") or (name == "name" and path.startswith("/voices/")):
            mine = True
            return owned["voice"] if name == "name" else owned[name]
        if name == "model" and "{file_id}" in path:
            return "demucs"  # Alice's upload is a song
        # model_name: the admin's DELETE would remove a real model from the session's cache
        return {"task": "text-embedding", "download_id": "nope", "model_name": "not-a-cached-model"}.get(
            name, "all-minilm-l6-v2")

    return re.sub(r"\{(\w+)\}", fill, path), mine


def test_lists_show_only_the_callers_own(secured, owned):
    mine = secured.get("/jobs", headers=key(ALICE)).json()["jobs"]
    assert owned["job_id"] in [job["job_id"] for job in mine]
    assert owned["job_id"] not in [job["job_id"] for job in secured.get("/jobs", headers=key(BOB)).json()["jobs"]]
    assert [v["name"] for v in secured.get("/voices", headers=key(ALICE)).json()["voices"]] == ["alice-voice"]
    assert secured.get("/voices", headers=key(BOB)).json()["voices"] == []
    assert secured.get("/models/csm-1b", headers=key(BOB)).json()["model"]["saved_voices"] == []
    taken = secured.post("/voices", headers=key(BOB), json={"name": "alice-voice", "audio_prompt": SAMPLE})
    assert taken.status_code == 409 and "taken" in taken.json()["message"]
    clone = secured.post("/api/tts", headers=key(BOB), json={"model": "csm-1b", "text": "hi", "voice": "alice-voice"})
    assert clone.status_code == 400 and "Unknown voice 'alice-voice'" in clone.json()["message"]
    file_id = owned["file_id"]
    stolen = secured.post(f"/process/demucs/{file_id}", headers=key(BOB), json={})
    assert stolen.status_code == 404 and f"No upload with file_id '{file_id}'" in stolen.json()["message"]


def test_every_operation_times_every_kind_of_key(secured, owned):
    ops = operations(secured)
    assert len(ops) >= 55, ops  # the spec lists every route: a shrinking count means routes fell out of it
    for method, template in ops:
        path, mine = concrete(template, owned)

        def ask(headers, method=method, path=path):
            return secured.request(method, path, headers=headers, json={} if method in ("POST", "PUT") else None)

        if (method, template) in OPEN_OPERATIONS:
            assert ask({}).status_code == 200, path
            continue
        none, wrong = ask({}), ask(key("not-a-key"))
        assert none.status_code == 401 and none.json()["error_code"] == "UNAUTHORIZED", (method, path, none.text)
        assert wrong.status_code == 403 and wrong.json()["error_code"] == "INVALID_API_KEY", (method, path)
        admin_only = (method, template) in ADMIN_OPERATIONS
        other, admin, own = ask(key(BOB)), ask(key(ADMIN)), ask(key(ALICE))
        if admin_only:
            assert own.status_code == 403 and own.json()["error_code"] == "ADMIN_KEY_REQUIRED", (method, path)
            assert other.status_code == 403, (method, path)
            assert admin.status_code not in (401, 403), (method, path, admin.text)
        elif mine:  # Bob, and the admin (another identity), find nothing of Alice's
            for reply in (other, admin):
                assert reply.status_code == 404, (method, path, reply.status_code, reply.text[:200])
            assert own.status_code not in (401, 403, 404) or "has no file" in own.text, (method, path, own.text)
        else:
            for reply in (other, admin, own):
                assert reply.status_code not in (401, 403), (method, path, reply.text[:200])
    print(f"key matrix: {len(ops)} operations x 5 cases")


def test_the_openai_client_works_when_given_the_key(secured, service):
    client = openai.OpenAI(base_url=f"{service}/secured/v1", api_key=ALICE, max_retries=0)
    assert len(client.embeddings.create(model="all-minilm-l6-v2", input=["hello"]).data[0].embedding) == 384
    assert "all-minilm-l6-v2" in [m.id for m in client.models.list()]
    with pytest.raises(openai.PermissionDeniedError):
        openai.OpenAI(base_url=f"{service}/secured/v1", api_key="wrong", max_retries=0).models.list()


def test_health_and_the_console_need_no_key(secured):
    assert secured.get("/health").status_code == 200
    page = secured.get("/ui/")
    assert page.status_code == 200 and "console.js" in page.text
    assert secured.get("/ui/console.js").status_code == 200
    assert secured.get("/models").status_code == 401


def test_the_open_application_asks_no_key(client):
    assert client.post("/upload/demucs", files={"file": ("a.wav", make_clip(0.5))}).status_code == 201


def test_cors_allows_only_the_configured_origin(secured, client):
    preflight = {"access-control-request-method": "POST", "access-control-request-headers": "authorization"}
    allowed = secured.options("/upload/demucs", headers={"origin": ORIGIN, **preflight})
    assert allowed.status_code == 200 and allowed.headers["access-control-allow-origin"] == ORIGIN
    other = secured.options("/upload/demucs", headers={"origin": "https://evil.example", **preflight})
    assert "access-control-allow-origin" not in other.headers
    assert "access-control-allow-origin" not in client.get("/models", headers={"origin": ORIGIN}).headers


def test_a_family_the_application_does_not_deploy_answers_503(secured):
    """This copy deploys only embeddings, CSM and htdemucs: the catalog still lists the rest, as not active."""
    models = {m["id"]: m for m in secured.get("/models", headers=key(BOB)).json()["models"]}
    assert models["all-minilm-l6-v2"]["is_active"] is True and models["qwen2.5-0.5b-instruct"]["is_active"] is False
    reply = secured.post("/api/v1/run", json={"model": "qwen2.5-0.5b-instruct", "input": {}}, headers=key(BOB))
    assert reply.status_code == 503, reply.text
    assert "Model 'qwen2.5-0.5b-instruct' (chat) is not deployed in this application" in reply.json()["message"]


def test_a_replayed_job_request_with_an_idempotency_key_creates_one_job(secured):
    """What HAProxy replays after an ingress replica died under a request carries the same headers: with an
    Idempotency-Key, the replay answers with the job the first attempt made. Keys are per owner."""
    def run(who: str):
        reply = secured.post("/api/v1/run", headers={**key(who), "Idempotency-Key": "order-42"},
                             json={"model": "all-minilm-l6-v2", "input": {"text": "once"}})
        assert reply.status_code == 202, reply.text
        return reply.json()["job_id"]

    first = run(ALICE)
    assert run(ALICE) == first and run(ALICE) == first
    assert run(BOB) != first
    mine = [j["job_id"] for j in secured.get("/jobs", headers=key(ALICE)).json()["jobs"]]
    assert mine.count(first) == 1


def test_every_websocket_times_every_kind_of_key(secured, service):
    """The WebSocket routes (listed beside the spec) refuse a missing or wrong key before the upgrade and take
    a good one as a header or, as browsers send it, as the subprotocol OpenAI's Realtime API reads."""
    routes = secured.get("/openapi.json", headers=key(ALICE)).json()["x-websocket-routes"]
    assert "/v1/realtime" in routes
    base = f"{service.replace('http', 'ws', 1)}/secured"
    for path in routes:
        url = f"{base}{path}?intent=transcription"
        for headers, status, code in (({}, 401, "UNAUTHORIZED"), (key("not-a-key"), 403, "INVALID_API_KEY")):
            with pytest.raises(InvalidStatus) as denied:
                ws_connect(url, additional_headers=headers, open_timeout=30)
            assert denied.value.response.status_code == status, path
            assert json.loads(denied.value.response.body)["error_code"] == code
        for who in (ALICE, BOB, ADMIN):
            with ws_connect(url, additional_headers=key(who), open_timeout=30) as socket:
                first = json.loads(socket.recv(timeout=30))
            # this copy deploys no Whisper: past the key, the session says so
            assert first["type"] == "error" and first["error"]["code"] == "model_unavailable", first
        with ws_connect(url, subprotocols=["realtime", f"openai-insecure-api-key.{ALICE}"], open_timeout=30) as socket:
            assert socket.subprotocol == "realtime"
            assert json.loads(socket.recv(timeout=30))["error"]["code"] == "model_unavailable"
