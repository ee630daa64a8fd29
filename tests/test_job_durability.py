"""Jobs outlive the application and the replicas that run them."""

from __future__ import annotations

import time

import ray
from ray import serve

from tests.conftest import deploy_inference_app
from tests.test_separation_jobs import decode, make_clip, upload, wait_for


def test_finished_jobs_and_their_stems_survive_an_application_restart(client):
    finished = client.post(f"/separate/{upload(client, make_clip(1.0)).json()['file_id']}?wait=120").json()
    assert finished["status"] == "completed", finished

    serve.delete("inference")
    assert client.get(f"/jobs/{finished['job_id']}").status_code == 404  # nothing is serving now
    deploy_inference_app()

    again = client.get(f"/jobs/{finished['job_id']}").json()
    assert again["status"] == "completed" and again["files"] == finished["files"]
    for file in again["files"]:
        audio, rate = decode(client, file["url"])
        assert rate == 44100 and audio.shape == (44100, 2)


def _replicas_of(deployment: str) -> list[str]:
    return [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
            if a["name"].startswith(f"SERVE_REPLICA::inference#{deployment}#")]


def test_a_job_whose_replica_dies_is_requeued_and_finishes(client):
    long_id = upload(client, make_clip(40.0, channels=1, fmt="FLAC"), "long.flac").json()["file_id"]
    job_id = client.post(f"/process/htdemucs_ft/{long_id}", json={"shifts": 2}).json()["job_id"]
    deadline = time.monotonic() + 120
    while (job := client.get(f"/jobs/{job_id}").json())["progress"] <= 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert job["status"] == "running" and 0 < job["progress"] < 1, job

    replicas = _replicas_of("htdemucs_ft")  # the model's own deployment
    assert replicas
    for name in replicas:  # a crash, not a graceful drain
        ray.kill(ray.get_actor(name, namespace="serve"), no_restart=True)

    resumed = wait_for(client, job_id, timeout=300)
    assert resumed["status"] == "completed", resumed
    assert resumed["attempts"] == 2 and len(resumed["files"]) == 4
    audio, _ = decode(client, resumed["files"][0]["url"])
    assert audio.shape == (40 * 44100, 2)
