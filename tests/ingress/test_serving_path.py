"""The serving path as an operator sees it: the service's own series on the real Ray's Prometheus
endpoint, /health's checks, X-Request-ID on every response, and the upload cap on chunked bodies."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import UPLOAD_LIMIT_BYTES

EMBEDDING = "all-minilm-l6-v2"
REPO_ROOT = Path(__file__).resolve().parents[2]


def scrape(port: int) -> dict[str, list]:
    """Every sample on the Ray node's metrics endpoint, by sample name."""
    samples: dict[str, list] = {}
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append(sample)
    return samples


def total(samples: dict[str, list], name: str, **labels: str) -> float:
    return sum(s.value for s in samples.get(name, []) if all(s.labels.get(k) == v for k, v in labels.items()))


def wait_for_metrics(port: int, ready, seconds: float = 60) -> dict[str, list]:
    """Ray exports every few seconds: scrape until `ready(samples)` holds."""
    deadline = time.monotonic() + seconds
    while True:
        samples = scrape(port)
        if ready(samples) or time.monotonic() > deadline:
            return samples
        time.sleep(1)


def test_request_and_model_metrics_move_after_requests(client, metrics_port):
    route = {"route": "POST /api/embedding", "model": EMBEDDING}
    before = scrape(metrics_port)
    ok_before = total(before, "ray_inference_requests_total", **route, status="200")
    refused_before = total(before, "ray_inference_requests_total", **route, status="400")
    for text in ("one", "two", "three"):
        assert client.post("/api/embedding", json={"text": text}).status_code == 200
    too_many = client.post("/api/embedding", json={"text": ["x"] * 10_000})
    assert too_many.status_code == 400  # refused by the catalog's max_inputs: tagged with the model too
    assert client.get("/jobs/no-such-job").status_code == 404

    samples = wait_for_metrics(metrics_port, lambda s: total(s, "ray_inference_requests_total", **route,
                                                            status="200") >= ok_before + 3
                               and total(s, "ray_inference_model_state", model=EMBEDDING, state="ready") >= 1)
    assert total(samples, "ray_inference_requests_total", **route, status="200") >= ok_before + 3
    assert total(samples, "ray_inference_requests_total", **route, status="400") >= refused_before + 1
    # the route template, never the raw path: one series per route
    assert total(samples, "ray_inference_requests_total", route="GET /jobs/{job_id}", status="404") >= 1
    assert not [s for s in samples["ray_inference_requests_total"] if "no-such-job" in s.labels["route"]]
    # latency: a histogram whose count follows the requests, with Serve's application tag
    latency = [s for s in samples["ray_inference_request_latency_ms_count"]
               if s.labels.get("route") == route["route"] and s.labels.get("model") == EMBEDDING]
    assert sum(s.value for s in latency) >= 4 and "inference" in {s.labels.get("application") for s in latency}
    # models: lifecycle state from the ingress, load time and memory from the replica that loaded it
    assert total(samples, "ray_inference_model_state", model=EMBEDDING, state="ready") >= 1
    assert total(samples, "ray_inference_model_loaded", model=EMBEDDING) >= 1
    assert total(samples, "ray_inference_model_load_seconds", model=EMBEDDING) > 0
    # downloads: bytes done equal the total once complete; jobs: one gauge per state
    done = total(samples, "ray_inference_download_bytes", model=EMBEDDING, measure="done")
    assert done > 1_000_000 and done == total(samples, "ray_inference_download_bytes", model=EMBEDDING,
                                              measure="total")
    assert total(samples, "ray_inference_download_state", model=EMBEDDING, state="completed") >= 1
    assert {s.labels["state"] for s in samples["ray_inference_jobs"]} >= {"pending", "running", "completed",
                                                                          "failed", "cancelled"}
    # Serve's own batching series are there beside ours (the dashboard's batch panels read them)
    assert any(name.startswith("ray_serve_batch_") or name.startswith("ray_serve_actual_batch_size")
               for name in samples)


def test_grafana_dashboard_reads_only_series_the_service_exports(client, metrics_port):
    """Every series grafana/inference_dashboard.json queries is on Ray's endpoint (none misspelled)."""
    dashboard = json.loads((REPO_ROOT / "grafana/inference_dashboard.json").read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    wanted = {name for expr in exprs for name in re.findall(r"\b(ray_[a-z_]+)", expr)}
    assert len(dashboard["panels"]) >= 12 and {p["datasource"]["uid"] for p in dashboard["panels"]} == {"${datasource}"}
    assert client.post("/api/embedding", json={"text": "for the dashboard"}).status_code == 200
    samples = wait_for_metrics(metrics_port, lambda s: wanted <= set(s))
    assert wanted - set(samples) == set()


def test_grafana_dashboard_satisfies_grafanas_own_dashboard_schema(tmp_path):
    """No Grafana server installs here, so the import is checked against the dashboard model Grafana publishes
    (npm @grafana/schema, locked in scripts/grafana_check): a misspelled key or a wrong type fails tsc."""
    if shutil.which("npm") is None:
        pytest.skip("npm is not installed: scripts/grafana_check needs Node.js")
    check = REPO_ROOT / "scripts/grafana_check/check.sh"
    passed = subprocess.run([str(check)], capture_output=True, text=True, timeout=300)
    assert passed.returncode == 0 and "PASS:" in passed.stdout, passed.stdout + passed.stderr
    broken = json.loads((REPO_ROOT / "grafana/inference_dashboard.json").read_text())
    broken["panels"][0]["gridpos"] = broken["panels"][0].pop("gridPos")  # the control: one key misspelled
    (tmp_path / "broken.json").write_text(json.dumps(broken, indent=2))
    failed = subprocess.run([str(check), str(tmp_path / "broken.json")], capture_output=True, text=True, timeout=300)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert 'gridpos"\' does not exist in type' in failed.stdout, failed.stdout


def test_health_checks_manager_store_and_deployments(client):
    reply = client.get("/health")
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["status"] == "healthy" and body["problems"] == []
    assert body["checks"]["model_manager"]["ok"] and body["checks"]["job_store"]["ok"]
    states = body["checks"]["deployments"]["states"]
    assert states[EMBEDDING] == "HEALTHY" and states["Ingress"] == "HEALTHY"


def test_request_id_is_echoed_generated_and_in_error_bodies(client):
    mine = f"client-{uuid.uuid4()}"
    refused = client.post("/api/embedding", json={"text": "hi", "model": "no-such-model"},
                          headers={"X-Request-ID": mine})
    assert refused.status_code == 404
    assert refused.headers["x-request-id"] == mine and refused.json()["request_id"] == mine
    served = client.get("/models")
    generated = served.headers.get("x-request-id", "")
    assert served.status_code == 200 and len(generated) >= 16


def test_chunked_upload_over_the_cap_is_refused_with_the_limit(client, job_store_dir):
    """No Content-Length (chunked): the cap counts bytes as they arrive and nothing is kept."""
    staged_before = set((job_store_dir / "staging").iterdir())
    boundary = "capboundary"

    def body():
        yield (f"--{boundary}\r\nContent-Disposition: form-data; name=\"audio\"; filename=\"big.wav\"\r\n"
               "Content-Type: audio/wav\r\n\r\n").encode()
        chunk = b"\0" * (1 << 20)
        for _ in range(UPLOAD_LIMIT_BYTES // len(chunk) + 3):  # past the cap plus the multipart allowance
            yield chunk
        yield f"\r\n--{boundary}--\r\n".encode()

    for path in ("/api/stt", "/v1/audio/transcriptions"):
        reply = client.post(path, content=body(), headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
        assert "content-length" not in reply.request.headers
        assert reply.status_code == 413, (path, reply.text[:300])
        assert f"upload limit of {UPLOAD_LIMIT_BYTES} bytes" in reply.text
    assert set((job_store_dir / "staging").iterdir()) == staged_before


@pytest.mark.parametrize("extra", [1024])
def test_upload_just_over_the_cap_is_refused_by_the_route(client, extra):
    """Under the multipart allowance but over the file cap: the route's capped read refuses it."""
    reply = client.post("/api/stt", files={"audio": ("big.wav", b"\0" * (UPLOAD_LIMIT_BYTES + extra))})
    assert reply.status_code == 413
    assert reply.json()["message"] == f"The audio file 'big.wav' exceeds the upload limit of {UPLOAD_LIMIT_BYTES} bytes"


def test_fuzzer_findings_are_client_errors(client):
    """What the issue's schemathesis run found answering 500: each is now a 4xx with the reason."""
    reply = client.post("/api/v1/run", json={"input": {}, "model": ""})
    assert 400 <= reply.status_code < 500, reply.text
    assert reply.json()["message"]
