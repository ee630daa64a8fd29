"""Image generation batching: images/s of POST /api/image from 1 and N concurrent clients, with
@serve.batch (max_batch_size 8: same-size requests share one pipeline call) and without
(max_batch_size 1), switched live through the deployment's user_config.

    .venv/bin/python bench/image_batching.py                        # tiny random SD-Turbo, CPU
    .venv/bin/python bench/image_batching.py --size 512 --steps 4 --device cuda

The pipeline is the random-weight SD-Turbo (StableDiffusionPipeline) written by
`python -m tests.tiny_diffusion`, served as stabilityai/sd-turbo by a local test hub subprocess.
Results, with the machine, go to bench/results/image_batching.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # for `deployments` and bench/, when run as bench/image_batching.py
from bench.embedding_latency import batched_load, machine  # noqa: E402
from bench.local_service import deploy_models, local_service  # noqa: E402
from bench.results import print_table, write_result  # noqa: E402

MODEL, REPO, BATCHED = "sd-turbo", "stabilityai/sd-turbo", 8


async def run_clients(base_url: str, request: dict, requests: int, clients: int) -> dict:
    """`clients` concurrent clients each asking for one image until `requests` are done."""
    async with httpx.AsyncClient(base_url=base_url, timeout=600) as http:
        async def post(i: int) -> int:
            reply = await http.post("/api/image", json={**request, "seed": i})
            reply.raise_for_status()
            return reply.json()["batch_size"]

        result = await batched_load(post, requests, clients)
    return {**result, "images_per_s": round(requests / result.pop("wall_s"), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256, help="Image width and height.")
    parser.add_argument("--steps", type=int, default=2, help="Denoising steps per image.")
    parser.add_argument("--requests", type=int, default=32, help="Requests per measurement.")
    parser.add_argument("--concurrency", type=int, default=8, help="Concurrent clients of the concurrent runs.")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="cuda: give the replica a GPU.")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "bench/results/image_batching.json")
    args = parser.parse_args()
    gpu = args.device == "cuda"
    request = {"prompt": "a lighthouse on a cliff at dusk", "height": args.size, "width": args.size,
               "num_inference_steps": args.steps}

    with contextlib.ExitStack() as cleanup:
        work = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="bench-image-")))
        print("writing random-weight pipelines...", flush=True)
        subprocess.run([sys.executable, "-m", "tests.tiny_diffusion", str(work / "models")],
                       cwd=REPO_ROOT, check=True, capture_output=True)
        with local_service({REPO: work / "models" / "sd-turbo"}, work, num_cpus=8, num_gpus=int(gpu)) as base_url:
            results = {}
            for batch in (BATCHED, 1):
                deploy_models([MODEL], {"image-generation": {"max_batch_size": batch, "batch_wait_timeout_s": 0.05}},
                              {"num_gpus": 1} if gpu else None)
                for clients in (1, args.concurrency):
                    name = f"max_batch_size {batch}, {clients} client{'s' * (clients > 1)}"
                    print(f"{name}: {args.requests} requests...", flush=True)
                    results[name] = asyncio.run(run_clients(base_url, request, args.requests, clients))

    batched, unbatched = (results[f"max_batch_size {b}, {args.concurrency} clients"] for b in (BATCHED, 1))
    ratio = round(batched["images_per_s"] / unbatched["images_per_s"], 2)
    print_table(results, {"p50 ms": "p50_ms", "p99 ms": "p99_ms", "img/s": "images_per_s",
                          "batch": "mean_batch_size"})
    print(f"batched / unbatched images/s at {args.concurrency} clients: {ratio}x")
    result = {"model": MODEL, "size": args.size,
              "steps": args.steps, "requests": args.requests, "machine": machine(args.device), "serve": results,
              "ratios": {"batching_gain_at_concurrency": ratio}}
    write_result(args.out, result)


if __name__ == "__main__":
    main()
