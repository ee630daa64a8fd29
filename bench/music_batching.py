"""MusicGen throughput with and without cross-request batching (@serve.batch), through the deployed app.

Builds a random-weight MusicGen (`python -m tests.tiny_musicgen`: the tiny test model by default;
`--size small` has musicgen-small's dimensions, ~590M parameters, meant for a GPU), serves it as
facebook/musicgen-small from a local test hub subprocess, deploys the music deployment on a local
Ray, and sends POST /api/music from 1, 16 and 32 concurrent clients: once with max_batch_size 32 and
once with max_batch_size 1 (the deployment's user_config, applied live by `reconfigure`). Prints
generations/s, latency and the batch sizes seen (X-Batch-Size), and their ratios; results, with the
machine they ran on, go to bench/results/music_batching.json. Random weights cost what trained ones cost.

    .venv/bin/python bench/music_batching.py [--size tiny|small] [--duration 1] [--requests 64]
        [--concurrency 1 16 32] [--device auto|cpu|cuda]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import ray
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # for `deployments`, when run as bench/music_batching.py
from bench.local_service import deploy_models, local_service  # noqa: E402
from bench.results import write_result  # noqa: E402

REPO_ID = "facebook/musicgen-small"
PROMPTS = ["upbeat electronic dance music with a driving bassline", "calm piano melody in the rain",
           "90s rock song with loud guitars and heavy drums", "lofi hip hop beat to study to"]
MAX_BATCH_SIZE = 32


def build_model(folder: Path, size: str) -> Path:
    """The random-weight model, built by the tests' builder run as a program (nothing here imports tests/)."""
    subprocess.run([sys.executable, "-m", "tests.tiny_musicgen", str(folder), size], cwd=REPO_ROOT, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return folder


def deploy(max_batch_size: int, gpus: float) -> None:
    """(Re)deploy the app with only musicgen-small; a user_config change reconfigures the live replica."""
    deploy_models(["musicgen-small"], {"music": {"max_batch_size": max_batch_size, "batch_wait_timeout_s": 0.05}},
                  {"num_cpus": 1, "num_gpus": gpus})

async def run_clients(base_url: str, requests: int, clients: int, duration: float) -> dict:
    """`clients` concurrent clients, each sending one prompt at a time until `requests` were answered."""
    pending = list(range(requests))
    latencies, batch_sizes = [], []
    async with httpx.AsyncClient(base_url=base_url, timeout=600) as http:
        async def one_client() -> None:
            while pending:
                i, started = pending.pop(), time.perf_counter()
                reply = await http.post("/api/music", json={"prompt": PROMPTS[i % len(PROMPTS)], "seed": i,
                                                            "duration": duration})
                reply.raise_for_status()
                latencies.append(time.perf_counter() - started)
                batch_sizes.append(int(reply.headers["x-batch-size"]))
        started = time.perf_counter()
        await asyncio.gather(*(one_client() for _ in range(clients)))
        wall = time.perf_counter() - started
    ms = np.asarray(latencies) * 1000
    return {"concurrency": clients, "requests": requests, "generations_per_s": round(requests / wall, 3),
            "p50_ms": round(float(np.percentile(ms, 50)), 1), "p99_ms": round(float(np.percentile(ms, 99)), 1),
            "mean_batch_size": round(float(np.mean(batch_sizes)), 2), "max_batch_size_seen": max(batch_sizes)}


def bench(base_url: str, args, gpus: float) -> dict:
    results = {}
    for mode, max_batch_size in (("batched", MAX_BATCH_SIZE), ("unbatched", 1)):
        deploy(max_batch_size, gpus)
        print(f"{mode} (max_batch_size {max_batch_size}): warming up...", flush=True)
        asyncio.run(run_clients(base_url, max(args.concurrency), max(args.concurrency), args.duration))
        results[mode] = {}
        for clients in args.concurrency:
            requests = max(args.requests, 2 * clients) if clients > 1 else max(4, args.requests // 4)
            row = asyncio.run(run_clients(base_url, requests, clients, args.duration))
            results[mode][f"c{clients}"] = row
            print(f"  {clients:>3} clients: {row['generations_per_s']:>8} gen/s  p50 {row['p50_ms']:>8} ms  "
                  f"mean batch {row['mean_batch_size']}", flush=True)
    return results


def machine(device: str) -> dict:
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    cpu_names = re.findall(r"^model name\s*:\s*(.+)$", cpuinfo, re.MULTILINE) or [platform.processor()]
    device_name = torch.cuda.get_device_name() if device == "cuda" else cpu_names[0]
    return {"device": device, "device_name": device_name, "cpu_count": os.cpu_count(),
            "torch": torch.__version__, "ray": ray.__version__}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=["tiny", "small"], default="tiny", help="Model dimensions.")
    parser.add_argument("--duration", type=float, default=1.0, help="Seconds of audio per request.")
    parser.add_argument("--requests", type=int, default=64, help="Requests per measurement (a quarter at 1 client).")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 32])
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "bench/results/music_batching.json")
    args = parser.parse_args()
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    gpus = 1 if device == "cuda" else 0

    with contextlib.ExitStack() as cleanup:
        work = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="bench-music-")))
        print(f"building the {args.size} model...", flush=True)
        repos = {REPO_ID: build_model(work / "model", args.size)}
        with local_service(repos, work, num_cpus=max(4, os.cpu_count() or 1), num_gpus=gpus) as base_url:
            results = bench(base_url, args, gpus)

    ratios = {f"batching_gain_c{c}": round(results["batched"][f"c{c}"]["generations_per_s"]
                                           / results["unbatched"][f"c{c}"]["generations_per_s"], 2)
              for c in args.concurrency}
    low, high = min(args.concurrency), max(args.concurrency)
    ratios[f"batched_c{high}_over_unbatched_c{low}"] = round(
        results["batched"][f"c{high}"]["generations_per_s"] / results["unbatched"][f"c{low}"]["generations_per_s"], 2)
    print(f"\n{'':22}{'gen/s':>10}{'p50 ms':>10}{'batch':>8}")
    for mode, rows in results.items():
        for name, row in rows.items():
            print(f"{mode + ' ' + name:22}{row['generations_per_s']:>10}{row['p50_ms']:>10}{row['mean_batch_size']:>8}")
    for name, value in ratios.items():
        print(f"{name}: {value}x")

    result = {"model": REPO_ID,
              "size": args.size, "duration_s": args.duration, "max_batch_size": MAX_BATCH_SIZE,
              "machine": machine(device), "results": results, "ratios": ratios}
    write_result(args.out, result)


if __name__ == "__main__":
    main()
