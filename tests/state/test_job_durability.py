"""Jobs outlive the application and the replicas that run them."""

from __future__ import annotations

import time

import httpx
import ray
from ray import serve

from tests.families.test_separation_jobs import decode, make_clip, upload, wait_for


def test_finished_jobs_and_their_stems_survive_an_application_restart(client, service):
    """A fresh application over the same store, as after a restart: a new ingress, which knows the
    job only from what was stored (its model deployment starts with no replica: serving stored
    stems needs none)."""
    from deployments.app import AppArgs, compose_app
    from deployments.settings import ServiceSettings
    from registry import load_catalog

    finished = client.post(f"/separate/{upload(client, make_clip(1.0)).json()['file_id']}?wait=120").json()
    assert finished["status"] == "completed", finished
    profile = AppArgs(models=["htdemucs"], warm_models=[], runtime_pools=False)
    app = compose_app(load_catalog(), ServiceSettings(), profile)
    serve.run(app, name="restarted", route_prefix="/restarted")
    try:
        with httpx.Client(base_url=f"{service}/restarted", timeout=120) as fresh:
            again = fresh.get(f"/jobs/{finished['job_id']}").json()
            assert again["status"] == "completed" and again["files"] == finished["files"]
            for file in again["files"]:
                audio, rate = decode(fresh, file["url"])
                assert rate == 44100 and audio.shape == (44100, 2)
    finally:
        serve.delete("restarted")


def _replicas_of(deployment: str) -> list[str]:
    return [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
            if a["name"].startswith(f"SERVE_REPLICA::inference#{deployment}#")]


def test_a_job_whose_replica_dies_is_requeued_and_finishes(client):
    seconds = 16.0  # several segments, times a bag of 4 models and 2 shifts: long enough to be killed mid-way
    long_id = upload(client, make_clip(seconds, channels=1, fmt="FLAC"), "long.flac").json()["file_id"]
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
    assert audio.shape == (int(seconds * 44100), 2)
