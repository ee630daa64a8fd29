"""The README's first command, as a new user runs it: `bash scripts/serve.sh` with the shipped CPU profile,
unmodified, on this box (CI: 2 cores). Only the hub endpoint and the folders come from the environment.

It must answer /health within START_BOUND_S, never hold a request while it starts (a refused connection,
Serve's 404 before it has any route, then 503 with Retry-After, each within PROBE_TIMEOUT_S), answer one
request to every task's default model, and stop every process it started within STOP_BOUND_S of a Ctrl-C
(SIGINT to its process group, as a terminal sends it). Ray's temp dir names a dead cluster, as a `ray start`
that died uncleanly leaves it: the command still serves on its own embedded Ray.

Runs first in the suite (conftest orders it), before the session's own application starts, so the box is
the user's: nothing else on it."""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx
import numpy as np
import psutil
import pytest
import yaml
from PIL import Image

from tests.conftest import free_port
from tests.families.test_separation_jobs import make_clip
from tests.hub import TestHub

pytestmark = pytest.mark.own_ray  # starts a Ray of its own: runs before the session's application

ROOT = Path(__file__).resolve().parents[2]
START_BOUND_S = 420  # measured: see the issue 30 note (2-core box)
PROBE_TIMEOUT_S = 10
STOP_BOUND_S = 30
SHIPPED_PORT = 8000


@pytest.fixture(scope="module")
def mirror_hub(hub):
    """Every repo of the session hub, on a hub of its own (the session hub's fetch counts stay the other
    tests')."""
    mirror = TestHub()
    mirror.repos.update(hub.repos)
    mirror.datasets.update(hub.datasets)
    mirror.start()
    yield mirror
    mirror.stop()


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def png(width: int = 64, height: int = 48, seed: int = 0) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


def wav(seconds: float = 1.0) -> bytes:
    return make_clip(seconds, rate=16000, channels=1)


def finished_job(http: httpx.Client, reply: httpx.Response) -> dict:
    assert reply.status_code == 202, reply.text
    job = http.get(f"/jobs/{reply.json()['job_id']}", params={"wait": 240}).json()
    assert job["status"] == "completed", job
    return job


def one_request_per_task(http: httpx.Client) -> dict[str, str]:
    """Each task's default model (no `model` named) answers a small request: task -> what it answered."""
    answered: dict[str, str] = {}
    mask = Image.new("L", (64, 48), 0)
    mask.paste(255, (0, 0, 32, 48))
    mask_png = io.BytesIO()
    mask.save(mask_png, format="PNG")
    calls = {
        "source-separation": lambda: finished_job(http, http.post(
            f"/separate/{http.post('/upload', files={'file': ('a.wav', make_clip(1.0))}).json()['file_id']}")),
        "text-to-music": lambda: http.post("/api/music", json={"prompt": "a tune", "duration": 1}),
        "speech-to-text": lambda: http.post("/api/stt", files={"audio": ("a.wav", wav(), "audio/wav")}),
        "text-to-speech": lambda: http.post("/api/tts", json={"text": "Hello."}),
        "text-embedding": lambda: http.post("/v1/embeddings", json={"input": "hello", "model": "all-minilm-l6-v2"}),
        "chat": lambda: http.post("/v1/chat/completions", json={
            "model": "qwen2.5-0.5b-instruct", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}),
        "image-classification": lambda: http.post("/api/image/classify",
                                                  files={"file": ("a.png", png(), "image/png")}),
        "image-to-text": lambda: http.post("/api/image/describe", files={"file": ("a.png", png(), "image/png")},
                                           data={"max_tokens": "4"}),
        "text-to-image": lambda: http.post("/api/image", json={"prompt": "a lighthouse", "width": 64,
                                                               "height": 64}),
        "image-inpainting": lambda: http.post("/api/edit-image", data={"prompt": "a red car"}, files={
            "image": ("a.png", png(), "image/png"), "mask": ("m.png", mask_png.getvalue(), "image/png")}),
        "text-to-video": lambda: finished_job(http, http.post("/api/video/text-to-video", json={
            "prompt": "a cat", "duration": 1, "fps": 8, "width": 48, "height": 64, "num_inference_steps": 2})),
        "image-to-video": lambda: finished_job(http, http.post("/api/video/image-to-video", data={
            "prompt": "waves", "duration": "1", "fps": "8", "num_inference_steps": "2"},
            files={"image": ("a.png", png(), "image/png")})),
    }
    for task, call in calls.items():
        reply = call()
        if isinstance(reply, dict):  # a finished job
            answered[task] = reply["model"] if "model" in reply else reply["output"].get("model", "job")
            continue
        assert reply.status_code == 200, f"{task}: {reply.status_code} {reply.text[:400]}"
        answered[task] = reply.headers.get("content-type", "")
    return answered


def tree_of(pid: int) -> list[psutil.Process]:
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def running(processes: list[psutil.Process]) -> list[psutil.Process]:
    """Those still running (a zombie has ended: it only waits for its parent to read its status)."""
    alive = []
    for process in processes:
        try:
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                alive.append(process)
        except psutil.Error:
            pass
    return alive


def started_by_it(temp_dir: Path) -> list[psutil.Process]:
    """Running processes whose environment names this test's Ray temp dir (each inherits it)."""
    found = []
    for process in psutil.process_iter():
        try:
            if process.environ().get("RAY_TMPDIR") == str(temp_dir) and process.status() != psutil.STATUS_ZOMBIE:
                found.append(process)
        except (psutil.Error, OSError):
            pass
    return found


def test_readme_serve_command_serves_the_shipped_cpu_profile_and_stops_on_ctrl_c(mirror_hub, tmp_path,
                                                                                   stale_temp_dir):
    shipped = yaml.safe_load((ROOT / "serve_config.cpu.yaml").read_text())
    port = SHIPPED_PORT if port_is_free(SHIPPED_PORT) else free_port()
    assert shipped["http_options"]["port"] == SHIPPED_PORT
    env = {**{k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "SERVE_CONFIG")},
           "RAY_TMPDIR": str(stale_temp_dir[0]), "HF_ENDPOINT": mirror_hub.url,
           "INFERENCE_CACHE_DIR": str(tmp_path / "cache"), "INFERENCE_DATA_DIR": str(tmp_path / "jobs")}
    if port != SHIPPED_PORT:  # something of this machine's holds 8000: seed 003's PORT, as a user would
        env["PORT"] = str(port)
    log_path = tmp_path / "serve.log"
    server = subprocess.Popen(["bash", "scripts/serve.sh"], cwd=ROOT, env=env, stdout=log_path.open("w"),
                              stderr=subprocess.STDOUT, start_new_session=True)

    def log_tail() -> str:
        return log_path.read_text()[-4000:]

    started = time.monotonic()
    held: list[str] = []  # probes that got no answer within PROBE_TIMEOUT_S
    timeline: list[str] = []
    early: list[tuple[int, str | None]] = []  # (status, Retry-After) of answers before healthy
    starting: list[dict] = []  # the bodies of the 503s
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=PROBE_TIMEOUT_S) as probe:
            while True:
                assert server.poll() is None, log_tail()
                assert time.monotonic() - started < START_BOUND_S, log_tail()
                sent = time.monotonic()
                try:
                    health = probe.get("/health")
                    timeline.append(f"{sent - started:.0f}s {health.status_code} {time.monotonic() - sent:.1f}s "
                                    f"{health.text[:80]}")
                    if health.status_code == 200:
                        break
                    early.append((health.status_code, health.headers.get("retry-after")))
                    if health.status_code == 503:
                        starting.append(health.json() if "json" in health.headers.get("content-type", "") else {})
                except httpx.TimeoutException:
                    held.append(f"/health held {time.monotonic() - sent:.0f}s at {sent - started:.0f}s")
                except httpx.TransportError:
                    pass  # nothing listens yet: refused at once
                time.sleep(1)
        healthy_s = time.monotonic() - started
        assert not held, "\n".join(held + timeline)
        # until Serve's proxy has a route (its first seconds) it answers 404 at once; from then on the starting
        # gate answers 503 + Retry-After until the ingress serves
        gated = next((i for i, (status, _) in enumerate(early) if status != 404), len(early))
        assert all(status == 503 and retry for status, retry in early[gated:]), "\n".join(timeline) + log_tail()
        # the gate says how far the start has got: deployments ready of all, and those still starting
        said = [body for body in starting if body.get("error_code") == "SERVICE_STARTING"]
        assert said and said[-1]["message"].startswith("The service is starting"), starting[-3:]
        # (the last one may already count every deployment ready: the application turns RUNNING just after)
        assert said[-1]["deployments"]["total"], said[-1]
        assert any(body["deployments"]["starting"] for body in said), said[-3:]
        print(f"\nserve.sh (shipped serve_config.cpu.yaml): /health 200 after {healthy_s:.0f}s")
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=300) as http:
            answered = one_request_per_task(http)
        tasks = {task for task, info in yaml.safe_load((ROOT / "registry/catalog.yaml").read_text())["tasks"].items()
                 if info.get("default_model")}
        assert set(answered) == tasks, answered
        processes = running(tree_of(server.pid))
        pss_mb = sum(p.memory_full_info().pss for p in processes) / 2**20  # shared pages counted once
        print(f"at rest, every task's default loaded: {len(processes)} processes, {pss_mb:.0f} MiB (PSS)")

        processes = tree_of(server.pid)
        stop = time.monotonic()
        os.killpg(server.pid, signal.SIGINT)  # what Ctrl-C in the terminal sends: the whole foreground group
        while (alive := running(processes) + started_by_it(stale_temp_dir[0])) and \
                time.monotonic() - stop < STOP_BOUND_S:  # (children Ray handed to init count too)
            time.sleep(0.2)
        stopped_s = time.monotonic() - stop
        assert not alive, f"still running {stopped_s:.0f}s after Ctrl-C: " \
                          f"{[(p.pid, p.name(), p.status(), p.ppid()) for p in alive]}\n{log_tail()}"
        print(f"Ctrl-C: all {len(processes)} processes gone after {stopped_s:.1f}s")
        assert port_is_free(port)
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
        for process in started_by_it(stale_temp_dir[0]):
            process.kill()
