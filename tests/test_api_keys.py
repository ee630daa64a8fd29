"""API keys guard the routes that change state; CORS follows configuration. A second copy of the
application, configured with keys and an allowed origin, is deployed beside the open one."""

from __future__ import annotations

import httpx
import pytest

KEY = "s3cret-key"
ORIGIN = "https://studio.example"


@pytest.fixture(scope="module")
def secured(service):
    from ray import serve

    from deployments.app import AppArgs, compose_app
    from deployments.settings import ServiceSettings
    from registry import load_catalog

    settings = ServiceSettings(api_keys=f"{KEY}, other-key", cors_origins=ORIGIN)
    app = compose_app(load_catalog(), settings, AppArgs(models=["all-minilm-l6-v2"], runtime_pools=False))
    serve.run(app, name="secured", route_prefix="/secured")
    with httpx.Client(base_url=f"{service}/secured", timeout=120) as http:
        yield http
    serve.delete("secured")


def _upload(http, **headers):
    from tests.test_separation_jobs import make_clip

    return http.post("/upload/demucs", files={"file": ("a.wav", make_clip(0.5))}, headers=headers)


def test_state_changing_routes_need_a_key(secured):
    missing = _upload(secured)
    assert missing.status_code == 401 and missing.json()["error_code"] == "UNAUTHORIZED"
    assert "needs an API key" in missing.json()["message"]
    wrong = _upload(secured, authorization="Bearer nope")
    assert wrong.status_code == 403 and wrong.json()["error_code"] == "INVALID_API_KEY"
    assert _upload(secured, authorization=f"Bearer {KEY}").status_code == 201
    assert _upload(secured, **{"x-api-key": "other-key"}).status_code == 201
    for method, path in [("POST", "/api/v1/run"), ("POST", "/separate/x"), ("DELETE", "/jobs/x"),
                         ("POST", "/jobs/x/cancel"), ("POST", "/models/download"),
                         ("PUT", "/models/current/text-embedding"), ("POST", "/voices"),
                         ("DELETE", "/voices/x")]:
        assert secured.request(method, path, json={}).status_code == 401, (method, path)


def test_read_only_and_inference_routes_stay_open(secured):
    assert secured.get("/models").status_code == 200
    assert secured.get("/health").status_code == 200
    assert secured.get("/jobs/nope").status_code == 404  # a read: no key asked, just not found
    embedded = secured.post("/api/embedding", json={"text": "open to all"})
    assert embedded.status_code == 200 and len(embedded.json()["embedding"]) == 384


def test_the_open_application_asks_no_key(client):
    assert _upload(client).status_code == 201


def test_cors_allows_only_the_configured_origin(secured, client):
    preflight = {"access-control-request-method": "POST", "access-control-request-headers": "authorization"}
    allowed = secured.options("/upload/demucs", headers={"origin": ORIGIN, **preflight})
    assert allowed.status_code == 200 and allowed.headers["access-control-allow-origin"] == ORIGIN
    other = secured.options("/upload/demucs", headers={"origin": "https://evil.example", **preflight})
    assert "access-control-allow-origin" not in other.headers
    assert "access-control-allow-origin" not in client.get("/models", headers={"origin": ORIGIN}).headers


def test_a_family_the_application_does_not_deploy_answers_503(secured):
    """This copy deploys only the embedding family: the catalog still lists the rest, as not active."""
    models = {m["id"]: m for m in secured.get("/models").json()["models"]}
    assert models["all-minilm-l6-v2"]["is_active"] is True and models["qwen2.5-0.5b-instruct"]["is_active"] is False
    reply = secured.post("/api/v1/run", json={"model": "qwen2.5-0.5b-instruct", "input": {}},
                         headers={"x-api-key": KEY})
    assert reply.status_code == 503, reply.text
    assert "Model 'qwen2.5-0.5b-instruct' (chat) is not deployed in this application" in reply.json()["message"]
