"""Chat batching, two workloads, each compared side by side in one run through the chat deployment's
user_config (switched live):

- `--workload mixed` (default): 16 clients work through `--requests` requests, half asking 8 tokens, half
  256, with continuous batching (a request joins the running batch at the next step) vs static batching (a
  batch admits nobody until all its rows are done), max_batch_size 16: tokens/s and the short requests'
  p50. Greedy decoding, so each request's answer, and so the work, is the same in both runs (the bench
  counts answers that differ). Then the per-token cost of constrained decoding (a JSON schema's grammar)
  next to a decoding step.
- `--workload uniform`: `--requests` of `--max-tokens` from `--concurrency` clients, max_batch_size 8 vs 1.

    .venv/bin/python bench/chat_batching.py                        # tiny random Qwen2
    .venv/bin/python bench/chat_batching.py --size 0.5b            # Qwen2.5-0.5B's layer sizes
    .venv/bin/python bench/chat_batching.py --workload uniform --size 0.5b --requests 16 --max-tokens 32 --gpu

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
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # for `deployments` and bench/, when run as bench/chat_batching.py
from bench.embedding_latency import machine, summary  # noqa: E402
from bench.local_service import deploy_models, random_model_service  # noqa: E402
from bench.results import print_table, serving_arguments, write_result  # noqa: E402
from deployments.serving.torch_threads import inference_executor, run_once  # noqa: E402

REPO = "Qwen/Qwen2.5-0.5B-Instruct"
PROMPTS = ["What is the capital of France?", "Describe a leather wallet.", "Tell me about water bottles.",
           "Why is the sky blue?", "Write a haiku about machine learning.", "Hello!"]


def deploy(max_batch_size: int, gpu: bool, scheduling: str = "continuous") -> None:
    """(Re)deploy the ingress and qwen2.5-0.5b-instruct; a second call only reconfigures the replica."""
    deploy_models(["qwen2.5-0.5b-instruct"], {"chat": {"max_batch_size": max_batch_size, "batch_wait_timeout_s": 0.02,
                                                        "scheduling": scheduling}},
                  {"num_gpus": 1} if gpu else None)


async def run_mixed(base_url: str, clients: int, requests: int, short: int, long: int) -> tuple[dict, dict]:
    """`clients` concurrent clients work through `requests` requests, alternately asking `short` and `long`
    tokens. Every request is greedy, so its answer (and its work) is the same whichever way it is batched."""
    async with httpx.AsyncClient(base_url=base_url, timeout=3600) as http:
        async def post(i: int, max_tokens: int) -> tuple[str, int]:
            reply = await http.post("/v1/chat/completions", json={
                "model": REPO, "messages": [{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}],
                "max_tokens": max_tokens, "temperature": 0})
            reply.raise_for_status()
            body = reply.json()
            return body["choices"][0]["message"]["content"], body["usage"]["completion_tokens"]

        return await clients_through(post, clients, requests, short, long)


async def clients_through(post: Callable[[int, int], Awaitable[tuple[str, int]]], clients: int, requests: int,
                          short: int, long: int) -> tuple[dict, dict]:
    """The mixed workload's client loop over `post(i, max_tokens) -> (answer, tokens)`: the figures and answers."""
    await asyncio.gather(*(post(i, short) for i in range(4)))  # warm-up
    queue = list(range(requests))
    latencies: dict[str, list[float]] = {"short": [], "long": []}
    tokens, answers = [0], {}

    async def client() -> None:
        while queue:
            i = queue.pop(0)
            kind, n = ("long", long) if i % 2 else ("short", short)
            started = time.perf_counter()
            answers[i], count = await post(i, n)
            latencies[kind].append(time.perf_counter() - started)
            tokens[0] += count

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    wall = time.perf_counter() - started
    ms = {kind: np.asarray(values) * 1000 for kind, values in latencies.items()}
    return ({"wall_s": round(wall, 2), "tokens_per_second": round(tokens[0] / wall, 1), "completion_tokens": tokens[0],
             "short_p50_ms": round(float(np.percentile(ms["short"], 50)), 1),
             "short_mean_ms": round(float(ms["short"].mean()), 1),
             "short_p99_ms": round(float(np.percentile(ms["short"], 99)), 1),
             "long_p50_ms": round(float(np.percentile(ms["long"], 50)), 1)},
            answers)


def dtype_name(gpu: bool) -> str:
    """The dtype the chat deployment decodes in here (INFERENCE_CPU_DTYPE on a CPU)."""
    from deployments.serving.model_loading import generation_dtype
    from deployments.settings import ServiceSettings

    return str(generation_dtype("cuda" if gpu else "cpu", ServiceSettings())).removeprefix("torch.")


def load_chat_model(folder: Path, device: str):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from deployments.families.chat.decoding import ChatModel
    from deployments.serving.model_loading import generation_dtype
    from deployments.settings import ServiceSettings

    tokenizer = AutoTokenizer.from_pretrained(folder)
    dtype = generation_dtype(device, ServiceSettings())  # as the chat deployment picks it
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype).to(device).eval()
    eos = model.generation_config.eos_token_id
    return ChatModel(tokenizer, model, set(eos if isinstance(eos, list) else [eos]), tokenizer.pad_token_id, 4096,
                     None)


async def run_mixed_in_process(chat_model, device: str, scheduling: str, clients: int, requests: int, short: int,
                               long: int) -> tuple[dict, dict]:
    """run_mixed without Ray or HTTP: the clients call the deployment's own Scheduler directly (for a device
    with no Ray, and to see the scheduling without the serving path's overhead)."""
    from types import SimpleNamespace

    from deployments.families.chat.decoding import Row
    from deployments.families.chat.scheduler import Scheduler

    config = SimpleNamespace(max_batch_size=clients, batch_wait_timeout_s=0.02, scheduling=scheduling)

    async def load(_: str):
        return chat_model

    scheduler = Scheduler(load, device, lambda: config)
    tokenizer = chat_model.tokenizer

    async def post(i: int, max_tokens: int) -> tuple[str, int]:
        prompt = tokenizer.apply_chat_template([{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}],
                                               add_generation_prompt=True, tokenize=False)
        row = Row(model="bench", prompt_ids=tokenizer(prompt)["input_ids"], max_tokens=max_tokens, temperature=0.0,
                  top_p=1.0, top_k=0, seed=i, stop=[])
        pieces, count = [], 0
        async for step in scheduler.run(row):
            pieces.append(step.text)
            count = step.completion_tokens
        return "".join(pieces), count

    return await clients_through(post, clients, requests, short, long)


def grammar_overhead(folder: Path, tokens: int) -> dict:
    """Per-token cost of a JSON schema's grammar (mask the logits, take the token) beside the model's decoding
    step, in this process, on the bench's model decoding one row under the product-listing schema."""
    import torch

    from deployments.families.chat.constraints import json_grammar
    from deployments.families.chat.decoding import Batch, Row
    from deployments.families.chat.product import LISTING_SCHEMA

    chat_model = load_chat_model(folder, "cpu")
    tokenizer, model = chat_model.tokenizer, chat_model.model
    grammar = json_grammar(LISTING_SCHEMA, chat_model.grammar_tokenizer, "bench")
    matcher, logits = grammar.matcher(), torch.randn(model.config.vocab_size)
    masks, takes = [], []
    for _ in range(tokens):  # the grammar alone, on random logits, until the schema is complete
        started = time.perf_counter()
        scores = logits.clone()
        matcher.mask(scores)
        token = int(scores.argmax()) if torch.rand(()) < 0.05 else int(torch.multinomial(scores.softmax(-1), 1))
        masks.append(time.perf_counter() - started)
        started = time.perf_counter()
        matcher.take(token)
        takes.append(time.perf_counter() - started)
        if matcher.finished():
            matcher = grammar.matcher()
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": PROMPTS[0]}], add_generation_prompt=True,
                                           tokenize=False)
    row = Row(model="bench", prompt_ids=tokenizer(prompt)["input_ids"], max_tokens=tokens, temperature=0.0,
              top_p=1.0, top_k=0, seed=0, stop=[])
    batch = Batch(chat_model, "cpu")
    batch.join([row])
    steps = []
    for _ in range(min(tokens, 64)):
        started = time.perf_counter()
        batch.step()
        steps.append(time.perf_counter() - started)
    per_token_us = (np.median(masks) + np.median(takes)) * 1e6
    step_ms = float(np.median(steps)) * 1000
    return {"vocabulary": model.config.vocab_size, "mask_us_p50": round(float(np.median(masks)) * 1e6, 1),
            "take_us_p50": round(float(np.median(takes)) * 1e6, 1), "per_token_us": round(per_token_us, 1),
            "decoding_step_ms_p50": round(step_ms, 2),
            "overhead_percent_of_a_step": round(per_token_us / 1000 / step_ms * 100, 2)}


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
    serving_arguments(parser, "chat_batching", requests=64, concurrency=8,
                      gpu_help="Give the chat replica the GPU (bf16).")
    parser.add_argument("--size", choices=["tiny", "0.5b"], default="tiny", help="Random Qwen2's layer sizes.")
    parser.add_argument("--workload", choices=["mixed", "uniform"], default="mixed")
    parser.add_argument("--max-tokens", type=int, default=48, help="uniform: max_tokens of every request.")
    parser.add_argument("--clients", type=int, default=16, help="mixed: clients, half short, half long.")
    parser.add_argument("--short", type=int, default=8, help="mixed: tokens a short request asks.")
    parser.add_argument("--long", type=int, default=256, help="mixed: tokens a long request asks.")
    parser.add_argument("--in-process", action="store_true", help="mixed: call the deployment's scheduler "
                        "directly, without Ray or HTTP (a device with no Ray).")
    args = parser.parse_args()
    if args.workload == "mixed":
        mixed(args)
        return

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


def mixed(args) -> None:
    holder: dict[str, Path] = {}
    if args.in_process:
        mixed_in_process(args)
        return

    def repos(model: Path) -> dict[str, str | Path]:
        holder["model"] = model
        return {REPO: model}

    with random_model_service(["tests.tiny_chat", "--size", args.size], repos, f"a random-weight Qwen2 ({args.size})",
                              num_cpus=args.num_cpus, num_gpus=int(args.gpu)) as base_url:
        results, answers = {}, {}
        for scheduling in ("continuous", "static"):
            deploy(args.clients, args.gpu, scheduling)
            print(f"{scheduling}: {args.requests} requests from {args.clients} clients, half {args.short} tokens, "
                  f"half {args.long}...", flush=True)
            results[scheduling], answers[scheduling] = asyncio.run(
                run_mixed(base_url, args.clients, args.requests, args.short, args.long))
        print("constrained decoding: the listing schema's grammar per token...", flush=True)
        grammar = inference_executor().submit(grammar_overhead, holder["model"], 300).result()

    report_mixed(args, results, answers, grammar, "http")


def report_mixed(args, results: dict, answers: dict, grammar: dict | None, path: str) -> None:
    continuous, static = results["continuous"], results["static"]
    mismatches = sum(answers["continuous"][i] != answers["static"][i] for i in answers["static"])
    ratios = {"tokens_per_second": round(continuous["tokens_per_second"] / static["tokens_per_second"], 2),
              "short_p50": round(static["short_p50_ms"] / continuous["short_p50_ms"], 2),
              "short_mean": round(static["short_mean_ms"] / continuous["short_mean_ms"], 2)}
    print_table(results, {"tok/s": "tokens_per_second", "short p50 ms": "short_p50_ms",
                          "short mean ms": "short_mean_ms", "short p99 ms": "short_p99_ms",
                          "long p50 ms": "long_p50_ms", "wall s": "wall_s"}, width=14)
    print(f"continuous / static: {ratios['tokens_per_second']}x tokens/s, short requests' p50 "
          f"{ratios['short_p50']}x sooner (mean {ratios['short_mean']}x); answers differing between the runs: "
          f"{mismatches}/{args.requests}")
    if grammar:
        print(f"constrained decoding: {grammar['per_token_us']} us per token (mask {grammar['mask_us_p50']}, take "
              f"{grammar['take_us_p50']}) = {grammar['overhead_percent_of_a_step']}% of a "
              f"{grammar['decoding_step_ms_p50']} ms decoding step (vocabulary {grammar['vocabulary']})")
    write_result(args.out, {"workload": "mixed", "path": path, "size": args.size, "dtype": dtype_name(args.gpu),
                            "clients": args.clients,
                            "requests": args.requests, "short_tokens": args.short, "long_tokens": args.long,
                            "machine": machine("cuda" if args.gpu else "cpu"), "serve": results, "ratios": ratios,
                            "answers_differing_between_runs": mismatches, "constrained_decoding": grammar})


def mixed_in_process(args) -> None:
    import subprocess
    import tempfile

    device = "cuda" if args.gpu else "cpu"
    with tempfile.TemporaryDirectory(prefix="bench-") as temp:
        folder = Path(temp) / "model"
        subprocess.run([sys.executable, "-m", "tests.tiny_chat", str(folder), "--size", args.size], cwd=REPO_ROOT,
                       check=True, capture_output=True)
        # loaded on a thread that exits, decoded on the replica's inference thread, as the deployment does
        chat_model = asyncio.run(run_once(load_chat_model, folder, device))
        results, answers = {}, {}
        for scheduling in ("continuous", "static"):
            print(f"{scheduling} (in process, {device}): {args.requests} requests from {args.clients} clients, "
                  f"half {args.short} tokens, half {args.long}...", flush=True)
            results[scheduling], answers[scheduling] = asyncio.run(run_mixed_in_process(
                chat_model, device, scheduling, args.clients, args.requests, args.short, args.long))
        grammar = None
        try:
            grammar = inference_executor().submit(grammar_overhead, folder, 300).result()
        except ImportError as missing:  # a device without llguidance
            print(f"constrained decoding not measured: {missing}")
    report_mixed(args, results, answers, grammar, "in-process")


if __name__ == "__main__":
    main()
