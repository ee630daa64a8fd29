"""Embeddings over HTTP with the real all-MiniLM-L6-v2 weights, fetched from the test hub."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import MINILM_REPO


def cosine(a, b) -> float:
    a, b = np.asarray(a), np.asarray(b)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_similar_sentences_are_closer(client, hub):
    response = client.post("/api/embedding", json={
        "text": ["a cat sits on the mat", "a kitten rests on a rug", "stock prices fell sharply"],
    })
    assert response.status_code == 200, response.text
    body = response.json()
    cat, kitten, stocks = body["embeddings"]
    assert body["model"] == "all-minilm-l6-v2" and body["dimensions"] == 384
    assert len(cat) == len(kitten) == len(stocks) == 384
    assert cosine(cat, kitten) > 0.5 > 0.2 > cosine(cat, stocks)
    assert np.linalg.norm(cat) == pytest.approx(1.0, abs=1e-4)
    assert sum(hub.file_downloads(MINILM_REPO).values()) > 0  # it came through the download path


def test_single_text_gives_one_vector(client):
    body = client.post("/api/embedding", json={"text": "hello world", "model": MINILM_REPO}).json()
    assert len(body["embedding"]) == 384 and "embeddings" not in body
    assert body["usage"]["prompt_tokens"] == 4  # [CLS] hello world [SEP]


def test_openai_shape(client):
    texts = ["a cat sits on the mat", "stock prices fell sharply"]
    body = client.post("/v1/embeddings", json={"input": texts, "model": "all-minilm-l6-v2"}).json()
    assert body["object"] == "list" and body["model"] == "all-minilm-l6-v2"
    assert [(d["object"], d["index"], len(d["embedding"])) for d in body["data"]] == [
        ("embedding", 0, 384), ("embedding", 1, 384)]
    assert body["usage"]["prompt_tokens"] == body["usage"]["total_tokens"] > 0
    seed_route = client.post("/api/embedding", json={"text": texts}).json()
    assert np.allclose(seed_route["embeddings"], [d["embedding"] for d in body["data"]], atol=1e-5)


def test_official_openai_client(service):
    from openai import OpenAI

    openai = OpenAI(base_url=f"{service}/v1", api_key="unused")
    result = openai.embeddings.create(model="all-minilm-l6-v2", input=["a kitten rests on a rug", "hello"])
    assert [len(item.embedding) for item in result.data] == [384, 384]  # the client asks for base64
    assert np.linalg.norm(result.data[0].embedding) == pytest.approx(1.0, abs=1e-4)
    assert result.usage.prompt_tokens > 0


def test_concurrent_requests_each_get_their_own_vectors(client):
    from concurrent.futures import ThreadPoolExecutor

    texts = [f"sentence number {i} about {'cats' if i % 2 else 'markets'}" for i in range(24)]
    alone = client.post("/api/embedding", json={"text": texts}).json()["embeddings"]
    with ThreadPoolExecutor(12) as pool:
        together = list(pool.map(lambda t: client.post("/api/embedding", json={"text": t}).json(), texts))
    assert np.allclose([r["embedding"] for r in together], alone, atol=1e-5)


@pytest.mark.parametrize(
    ("path", "payload", "status", "message"),
    [
        ("/api/embedding", {"text": ""}, 400, "text: text must not be empty"),
        ("/api/embedding", {"text": "   "}, 400, "text: text must not be empty"),
        ("/api/embedding", {"text": []}, 400, "text: text must not be an empty list"),
        ("/api/embedding", {"text": ["ok", ""]}, 400, "text: text[1] must not be empty"),
        ("/api/embedding", {"text": 42}, 400, "text: text must be a string or a list of strings"),
        ("/api/embedding", {"text": ["ok", 7]}, 400, "text: text must be a string or a list of strings"),
        ("/api/embedding", {"text": {"a": 1}}, 400, "text: text must be a string or a list of strings"),
        ("/api/embedding", {}, 400, "text: Field required"),
        ("/api/embedding", {"text": "hi", "modle": "x"}, 400, "modle: Extra inputs are not permitted"),
        ("/api/embedding", {"text": ["x"] * 257}, 400,
         "Too many inputs: 257; model 'all-minilm-l6-v2' accepts at most 256 per request"),
        ("/api/embedding", {"text": "hi", "model": "nope"}, 404,
         "Model 'nope' not found for task 'text-embedding'. Known models: all-minilm-l6-v2, bge-small-en-v1.5"),
        ("/api/embedding", {"text": "hi", "model": "whisper-base"}, 400,
         "Model 'whisper-base' is a speech-to-text model, not text-embedding"),
        ("/v1/embeddings", {"input": "hi"}, 400, "model: Field required"),
        ("/v1/embeddings", {"input": [[1, 2, 3]], "model": "all-minilm-l6-v2"}, 400,
         "input: input must be a string or a list of strings"),
        ("/v1/embeddings", {"input": "hi", "model": "all-minilm-l6-v2", "encoding_format": "hex"}, 400,
         "encoding_format: Input should be 'float' or 'base64'"),
        ("/v1/embeddings", {"input": "hi", "model": "all-minilm-l6-v2", "dimensions": 128}, 400,
         "dimensions=128 is not supported by model 'all-minilm-l6-v2', which returns 384-dimensional vectors"),
        ("/v1/embeddings", {"input": "hi", "model": "text-embedding-3-small"}, 404,
         "Model 'text-embedding-3-small' not found"),
    ],
)
def test_bad_input_is_a_clear_4xx(client, path, payload, status, message):
    response = client.post(path, json=payload)
    assert response.status_code == status, response.text
    body = response.json()
    assert body["success"] is False and message in body["message"]
    assert body["error_code"] in {"VALIDATION_ERROR", "MODEL_NOT_FOUND", "WRONG_MODEL_TASK"}


def test_malformed_json_is_400(client):
    response = client.post("/api/embedding", content=b'{"text": "unterminated',
                           headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.json()["error_code"] == "VALIDATION_ERROR"
    assert "JSON decode error" in response.json()["message"]


def test_python_deployment_handle(service):
    from ray import serve

    from deployments.errors import InvalidRequest, ModelNotFound

    embedder = serve.get_deployment_handle("all-minilm-l6-v2", app_name="inference")  # one deployment per model
    result = embedder.embed.remote(["a cat sits on the mat"]).result()
    assert (result.model, result.dimensions, len(result.vectors)) == ("all-minilm-l6-v2", 384, 1)
    by_alias = embedder.embed.remote(["a cat sits on the mat"], model="sentence-transformers/all-MiniLM-L6-v2").result()
    assert by_alias.model == "all-minilm-l6-v2" and by_alias.vectors == result.vectors
    with pytest.raises(ModelNotFound, match="Model 'nope' not found for task 'text-embedding'"):
        embedder.embed.remote(["hi"], model="nope").result()
    with pytest.raises(InvalidRequest, match="Deployment 'all-minilm-l6-v2' serves model 'all-minilm-l6-v2' only"):
        embedder.embed.remote(["hi"], model="bge-small-en-v1.5").result()
