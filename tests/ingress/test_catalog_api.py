"""GET /health, /models, /models/{name} and /docs over HTTP against the deployed application."""

from __future__ import annotations

from registry import load_catalog


def test_health(client):
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json()["status"] == "healthy"
    assert {"all-minilm-l6-v2", "musicgen-small", "embedding-pool"} <= set(response.json()["deployments"])


def test_models_lists_every_catalog_entry_with_capabilities(client):
    catalog = load_catalog()
    # a model that has served a request is active: a replica holds it loaded
    assert client.post("/api/music", json={"prompt": "a chime", "duration": 1}).status_code == 200
    body = client.get("/models").json()
    assert body["success"] is True
    # catalog.yaml's models in its order, then any downloaded at run time by other tests
    assert body["available_models"][:len(catalog.models)] == list(catalog.models)
    assert body["total_models"] == len(body["available_models"]) == len(body["models"])
    by_id = {m["id"]: m for m in body["models"]}
    for entry in catalog.models.values():
        assert by_id[entry.id]["capabilities"] == entry.capabilities
        assert by_id[entry.id]["hf_model_id"] == entry.hub.repo_id
    # seed 002's fields, flattened
    small = by_id["musicgen-small"]
    assert (small["max_duration_seconds"], small["recommended_duration_seconds"]) == (30, 10)
    assert (small["vram_requirement_gb"], small["sample_rate"], small["tokens_per_second"]) == (4, 32000, 50)
    assert small["display_name"] == "MusicGen Small" and small["is_active"] is True
    assert all(model["is_deployed"] for model in body["models"])  # the test app deploys every family
    # active: a replica holds it loaded (the warm task defaults), not merely deployed
    assert all(m["is_active"] == (m["state"] in {"ready", "idle"}) for m in body["models"])
    assert by_id["musicgen-large"]["is_active"] is False and by_id["musicgen-large"]["state"] in {"available", "cached"}
    assert body["current_model"] == "musicgen-small" and by_id["musicgen-small"]["is_current"] is True
    assert body["gpu"] == {"count": 0, "memory_gb": None}  # the test profile runs its models on CPU
    # seed 001's task categories, and a default/current model per task
    assert body["specialized_models"]["text-to-speech"] == ["speecht5-tts", "bark-small", "bark", "csm-1b"]
    assert body["tasks"]["source-separation"]["default_model"] == "htdemucs"
    assert body["tasks"]["text-embedding"]["current_model"] == "all-minilm-l6-v2"
    assert body["models_info"]["htdemucs_6s"]["stems"][-2:] == ["guitar", "piano"]


def test_model_by_name_alias_or_repo_id(client):
    for name in ("whisper-large-v3", "openai/whisper-large-v3", "OpenAI/Whisper-Large-V3"):
        body = client.get(f"/models/{name}").json()
        assert body["model"]["id"] == "whisper-large-v3" and body["model"]["task"] == "speech-to-text"
    assert client.get("/models/bark_tts").json()["model"]["id"] == "bark"


def test_family_lists_its_variants(client):
    body = client.get("/models/demucs").json()
    assert body["default_model"] == "htdemucs"
    assert [v["variant"] for v in body["variants"]] == ["htdemucs", "htdemucs_ft", "htdemucs_6s", "mdx_extra"]
    assert body["file_types"] == ["wav", "flac", "mp3", "ogg"]


def test_unknown_model_is_404_naming_the_known_ones(client):
    response = client.get("/models/nope")
    assert response.status_code == 404
    body = response.json()
    assert body["success"] is False and body["error_code"] == "MODEL_NOT_FOUND"
    assert body["message"].startswith("Model 'nope' not found. Known models: htdemucs, htdemucs_ft,")
    assert "all-minilm-l6-v2" in body["message"] and "demucs" in body["message"]


def test_unknown_route_has_the_same_error_shape(client):
    response = client.get("/no/such/route")
    assert response.status_code == 404
    body = response.json()
    assert set(body) == {"success", "message", "error", "error_code", "request_id", "detail", "status_code"}
    assert (body["status_code"], body["detail"]) == (404, body["message"])


def test_openapi_docs(client):
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/health", "/models", "/models/{name}", "/api/embedding", "/v1/embeddings"} <= set(paths)


def test_official_openai_client_lists_and_retrieves_models(service):
    from openai import NotFoundError, OpenAI

    openai = OpenAI(base_url=f"{service}/v1", api_key="unused")
    listed = {model.id: model for model in openai.models.list()}
    assert set(load_catalog().models) <= set(listed)  # the test app serves every family
    whisper = listed["whisper-large-v3"]
    assert (whisper.object, whisper.owned_by, whisper.task) == ("model", "openai", "speech-to-text")
    assert whisper.created > 1_700_000_000
    assert openai.models.retrieve("whisper-1").id == "whisper-base"  # aliases resolve to the catalog id
    try:
        openai.models.retrieve("gpt-9")
        raise AssertionError("an unknown model was found")
    except NotFoundError as missing:
        assert "Model 'gpt-9' not found" in str(missing)
