"""Chat batching: N concurrent POST /v1/chat/completions with @serve.batch (max_batch_size 8) and
without (max_batch_size 1), switched live through the chat deployment's user_config.

    .venv/bin/python bench/chat_batching.py                        # tiny random Qwen2, 32 requests, 8 clients
    .venv/bin/python bench/chat_batching.py --size 0.5b --requests 16 --max-tokens 32 --gpu

The model is a random-weight Qwen2 written by `python -m tests.tiny_chat` (`--size 0.5b`: Qwen2.5-0.5B's
real layer sizes with a 400-token vocabulary), served by a local test hub subprocess, so no network is
needed. Request i uses seed i in both runs, so the answers must match between them (the bench counts
mismatches); random weights may stop early, so throughput is also reported in generated tokens/s.
Results, with the machine, go to bench/results/chat_batching.json.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

import httpx
import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # for `deployments` and bench/, when run as bench/chat_batching.py
from bench.embedding_latency import machine, summary  # noqa: E402
from bench.local_service import deploy_models, random_model_service  # noqa: E402
from bench.results import print_table, serving_arguments, write_result  # noqa: E402

REPO = "Qwen/Qwen2.5-0.5B-Instruct"
PROMPTS = ["What is the capital of France?", "Describe a leather wallet.", "Tell me about water bottles.",
           "Why is the sky blue?", "Write a haiku about machine learning.", "Hello!"]


def deploy(max_batch_size: int, gpu: bool) -> None:
    """(Re)deploy the ingress and qwen2.5-0.5b-instruct; a second call only reconfigures the replica."""
    deploy_models(["qwen2.5-0.5b-instruct"], {"chat": {"max_batch_size": max_batch_size, "batch_wait_timeout_s": 0.02}},
                  {"num_gpus": 1} if gpu else None)


async def run_clients(base_url: str, requests: int, clients: int, max_tokens: int) -> tuple[dict, dict[int, str]]:
    """`clients` concurrent clients until `requests` are done; request i asks PROMPTS[i % 6] with seed i."""
    async with httpx.AsyncClient(base_url=base_url, timeout=600) as http:
        async def post(i: int) -> tuple[str, int, int]:
            reply = await http.post("/v1/chat/completions", json={
                "model": REPO, "messages": [{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}],
                "max_tokens": max_tokens, "temperature": 1.0, "top_p": 1.0, "seed": i})
            reply.raise_for_status()
            body = reply.json()
            return (body["choices"][0]["message"]["content"], body["usage"]["completion_tokens"],
                    int(reply.headers["X-Batch-Size"]))

        await asyncio.gather(*(post(10_000 + i) for i in range(min(clients, 4))))  # warm-up
        queue = list(range(requests))
        latencies, tokens, batch_sizes, answers = [], [], [], {}

        async def one_client() -> None:
            while queue:
                i = queue.pop(0)
                started = time.perf_counter()
                answers[i], count, size = await post(i)
                latencies.append(time.perf_counter() - started)
                tokens.append(count)
                batch_sizes.append(size)

        started = time.perf_counter()
        await asyncio.gather(*(one_client() for _ in range(clients)))
        wall = time.perf_counter() - started
    return ({**summary(latencies, wall, requests), "concurrency": clients,
             "tokens_per_second": round(sum(tokens) / wall, 1), "completion_tokens": sum(tokens),
             "mean_batch_size": round(float(np.mean(batch_sizes)), 2), "max_batch_size_seen": max(batch_sizes)},
            answers)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    serving_arguments(parser, "chat_batching", requests=32, concurrency=8,
                      gpu_help="Give the chat replica the GPU (bf16).")
    parser.add_argument("--size", choices=["tiny", "0.5b"], default="tiny", help="Random Qwen2's layer sizes.")
    parser.add_argument("--max-tokens", type=int, default=48, help="max_tokens of every request.")
    args = parser.parse_args()

    with random_model_service(["tests.tiny_chat", "--size", args.size], lambda model: {REPO: model},
                              f"a random-weight Qwen2 ({args.size})", num_cpus=args.num_cpus,
                              num_gpus=int(args.gpu)) as base_url:
        results, answers = {}, {}
        for batch in (8, 1):
            deploy(batch, args.gpu)
            name = f"max_batch_size {batch}"
            print(f"{name}: {args.requests} requests, {args.concurrency} clients, "
                  f"max_tokens {args.max_tokens}...", flush=True)
            results[name], answers[batch] = asyncio.run(
                run_clients(base_url, args.requests, args.concurrency, args.max_tokens))

    batched, unbatched = results["max_batch_size 8"], results["max_batch_size 1"]
    mismatches = sum(answers[8][i] != answers[1][i] for i in answers[8])
    ratios = {"requests_per_second": round(batched["throughput_rps"] / unbatched["throughput_rps"], 2),
              "tokens_per_second": round(batched["tokens_per_second"] / unbatched["tokens_per_second"], 2)}
    print_table(results, {"p50 ms": "p50_ms", "p99 ms": "p99_ms", "req/s": "throughput_rps",
                          "tok/s": "tokens_per_second", "batch": "mean_batch_size"}, width=20)
    print(f"batched / unbatched at {args.concurrency} clients: {ratios['requests_per_second']}x req/s, "
          f"{ratios['tokens_per_second']}x tokens/s; answers differing between the runs: {mismatches}/{args.requests}")

    result = {"size": args.size,
              "max_tokens": args.max_tokens, "requests": args.requests, "concurrency": args.concurrency,
              "machine": machine("cuda" if args.gpu else "cpu"), "serve": results, "ratios": ratios,
              "answers_differing_between_runs": mismatches}
    write_result(args.out, result)


if __name__ == "__main__":
    main()
