"""Image classification batching: throughput of POST /api/image/classify from 1 and N concurrent
clients, with @serve.batch (max_batch_size 8) and without (max_batch_size 1), switched live through
the vision deployment's user_config.

    .venv/bin/python bench/vision_batching.py                          # tiny random ResNet
    .venv/bin/python bench/vision_batching.py --full-resnet            # ResNet-50's real sizes (25M parameters)
    .venv/bin/python bench/vision_batching.py --model vit-base-patch16-224 --requests 96 --concurrency 16

The models are random-weight ResNet and ViT written by `python -m tests.tiny_vision`, served as
microsoft/resnet-50 and google/vit-base-patch16-224 by a local test hub subprocess, so no network is
needed; random weights cost what trained ones cost. Every request uploads its own 320x240 PNG.
Results, with the machine, go to bench/results/vision_batching.json.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import sys
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # for `deployments` and bench/, when run as bench/vision_batching.py
from bench.embedding_latency import batched_load, machine  # noqa: E402
from bench.local_service import deploy_models, random_model_service  # noqa: E402
from bench.results import print_table, serving_arguments, write_result  # noqa: E402

REPOS = {"resnet": "microsoft/resnet-50", "vit": "google/vit-base-patch16-224"}
BATCHED = 8


def pictures(count: int, size: tuple[int, int] = (320, 240)) -> list[bytes]:
    rng = np.random.default_rng(0)
    images = []
    for _ in range(count):
        out = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(out, "PNG")
        images.append(out.getvalue())
    return images


def deploy(max_batch_size: int, gpu: bool, model: str) -> None:
    """(Re)deploy the ingress and the classifier; a second call only reconfigures the replica."""
    config = {"max_batch_size": max_batch_size, "batch_wait_timeout_s": 0.01}
    deploy_models([model], {"vision": config}, {"num_gpus": 1} if gpu else None)


async def run_clients(base_url: str, images: list[bytes], model: str, requests: int, clients: int) -> dict:
    """`clients` concurrent clients each uploading an image to /api/image/classify until `requests` are done."""
    async with httpx.AsyncClient(base_url=base_url, timeout=600) as http:
        async def post(i: int) -> int:
            reply = await http.post("/api/image/classify", files={"file": (f"{i}.png", images[i % len(images)])},
                                    data={"model": model, "top_k": "5"})
            reply.raise_for_status()
            return int(reply.headers["x-batch-size"])

        result = await batched_load(post, requests, clients)
    del result["wall_s"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    serving_arguments(parser, "vision_batching", requests=64, concurrency=16,
                      gpu_help="Give the vision replica the GPU.")
    parser.add_argument("--model", default="resnet-50", help="Catalog id of the classifier (resnet-50, vit-...).")
    parser.add_argument("--full-resnet", action="store_true", help="ResNet-50's real sizes instead of a tiny one.")
    args = parser.parse_args()
    images = pictures(32)

    with random_model_service(["tests.tiny_vision", *(["--full-resnet"] if args.full_resnet else [])],
                              lambda models: {repo: models / name for name, repo in REPOS.items()},
                              "random-weight classifiers", num_cpus=args.num_cpus,
                              num_gpus=int(args.gpu)) as base_url:
        results = {}
        for batch in (BATCHED, 1):
            deploy(batch, args.gpu, args.model)
            for clients in (1, args.concurrency):
                name = f"max_batch_size {batch}, {clients} client{'s' * (clients > 1)}"
                print(f"{name}: {args.requests} requests...", flush=True)
                results[name] = asyncio.run(run_clients(base_url, images, args.model, args.requests, clients))

    batched, unbatched = (results[f"max_batch_size {b}, {args.concurrency} clients"] for b in (BATCHED, 1))
    ratios = {"batching_gain_at_concurrency": round(batched["throughput_rps"] / unbatched["throughput_rps"], 2),
              "concurrency_gain_batched": round(batched["throughput_rps"]
                                                / results[f"max_batch_size {BATCHED}, 1 client"]["throughput_rps"], 2)}
    print_table(results, {"p50 ms": "p50_ms", "p99 ms": "p99_ms", "req/s": "throughput_rps",
                          "batch": "mean_batch_size"})
    print(f"batched / unbatched req/s at {args.concurrency} clients: {ratios['batching_gain_at_concurrency']}x\n"
          f"batched req/s, {args.concurrency} clients / 1 client:      {ratios['concurrency_gain_batched']}x")

    result = {"model": args.model,
              "full_resnet": args.full_resnet, "image_size": [320, 240], "requests": args.requests,
              "machine": machine("cuda" if args.gpu else "cpu"), "serve": results, "ratios": ratios}
    write_result(args.out, result)


if __name__ == "__main__":
    main()
