"""Whisper batching: throughput of POST /api/stt at 1 and N concurrent clients, with @serve.batch
(max_batch_size 16) and without (max_batch_size 1), switched live through the deployment's user_config.

    .venv/bin/python bench/whisper_batching.py                    # tiny random Whisper, 10 s clips
    .venv/bin/python bench/whisper_batching.py --dims base --requests 16 --max-new-tokens 64

The model is a random-weight Whisper written by `python -m tests.tiny_whisper` (`--dims base`:
whisper-base's real sizes and vocabulary), served by a local test hub subprocess, so no network is
needed. Random weights never stop early, so every 30 s window generates exactly --max-new-tokens
tokens: the work per request is fixed. Results, with the machine, go to
bench/results/whisper_batching.json.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import sys
from pathlib import Path

import httpx
import numpy as np
import soundfile as sf

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # for `deployments` and bench/, when run as bench/whisper_batching.py
from bench.embedding_latency import batched_load, machine  # noqa: E402
from bench.local_service import deploy_models, random_model_service  # noqa: E402
from bench.results import print_table, serving_arguments, write_result  # noqa: E402

REPO = "openai/whisper-base"


def speech_like_clip(seconds: float, rate: int = 16000) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    tone = 0.3 * np.sin(2 * np.pi * (300 + 100 * np.sin(2 * np.pi * 0.5 * t)) * t)
    out = io.BytesIO()
    sf.write(out, tone.astype("float32"), rate, format="WAV")
    return out.getvalue()


def deploy(max_batch_size: int, max_new_tokens: int, gpu: bool) -> None:
    """(Re)deploy the ingress and whisper-base; a second call only reconfigures the replica."""
    config = {"max_batch_size": max_batch_size, "max_new_tokens": max_new_tokens, "batch_wait_timeout_s": 0.02}
    deploy_models(["whisper-base"], {"transcription": config}, {"num_gpus": 1} if gpu else None)


async def run_clients(base_url: str, audio: bytes, requests: int, clients: int, seconds: float) -> dict:
    """`clients` concurrent clients posting the clip to /api/stt until `requests` are done."""
    async with httpx.AsyncClient(base_url=base_url, timeout=600) as http:
        async def post(_i: int) -> int:
            reply = await http.post("/api/stt", files={"audio": ("clip.wav", audio)}, data={"model": REPO})
            reply.raise_for_status()
            return reply.json()["batch_size"]

        result = await batched_load(post, requests, clients)
    return {**result, "audio_seconds_per_second": round(requests * seconds / result.pop("wall_s"), 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    serving_arguments(parser, "whisper_batching", requests=48, concurrency=16,
                      gpu_help="Give the Whisper replica the GPU (fp16).")
    parser.add_argument("--dims", choices=["tiny", "base"], default="tiny", help="Random Whisper's sizes.")
    parser.add_argument("--seconds", type=float, default=10.0, help="Clip length (one 30 s window up to 30).")
    parser.add_argument("--max-new-tokens", type=int, default=32, help="Tokens generated per window.")
    args = parser.parse_args()
    audio = speech_like_clip(args.seconds)

    with random_model_service(["tests.tiny_whisper", "--dims", args.dims], lambda model: {REPO: model},
                              f"a random-weight Whisper ({args.dims})", num_cpus=args.num_cpus,
                              num_gpus=int(args.gpu)) as base_url:
        results = {}
        for batch in (16, 1):
            deploy(batch, args.max_new_tokens, args.gpu)
            for clients in (1, args.concurrency):
                name = f"max_batch_size {batch}, {clients} client{'s' * (clients > 1)}"
                print(f"{name}: {args.requests} requests of {args.seconds:g} s...", flush=True)
                results[name] = asyncio.run(run_clients(base_url, audio, args.requests, clients, args.seconds))

    batched, unbatched = (results[f"max_batch_size {b}, {args.concurrency} clients"] for b in (16, 1))
    ratios = {"batching_gain_at_concurrency": round(batched["throughput_rps"] / unbatched["throughput_rps"], 2),
              "concurrency_gain_batched": round(batched["throughput_rps"]
                                                / results["max_batch_size 16, 1 client"]["throughput_rps"], 2)}
    print_table(results, {"p50 ms": "p50_ms", "p99 ms": "p99_ms", "req/s": "throughput_rps",
                          "audio s/s": "audio_seconds_per_second", "batch": "mean_batch_size"})
    print(f"batched / unbatched req/s at {args.concurrency} clients: {ratios['batching_gain_at_concurrency']}x\n"
          f"batched req/s, {args.concurrency} clients / 1 client:      {ratios['concurrency_gain_batched']}x")

    result = {"dims": args.dims,
              "clip_seconds": args.seconds, "max_new_tokens": args.max_new_tokens, "requests": args.requests,
              "machine": machine("cuda" if args.gpu else "cpu"), "serve": results, "ratios": ratios}
    write_result(args.out, result)


if __name__ == "__main__":
    main()
