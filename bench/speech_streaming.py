"""Streamed speech: time to the first audio byte of POST /v1/audio/speech with stream_format 'audio' and
'sse' (sentence by sentence) against the whole-file response, and against the library's reference
call that a hand-rolled server would make (SpeechT5's `generate_speech` over the whole text).

    .venv/bin/python bench/speech_streaming.py                     # tiny random SpeechT5, 4 sentences
    .venv/bin/python bench/speech_streaming.py --dims base --repeats 3

The model is a random-weight SpeechT5 with HiFi-GAN written by `python -m tests.tiny_speech`
(`--dims base`: microsoft/speecht5_tts's real sizes), served by a local test hub subprocess. Random
weights never predict the end of speech, so every text yields exactly 20 mel frames per token: the
work per request is fixed. Results, with the machine, go to bench/results/speech_streaming.json.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # for `deployments` and bench/, when run as bench/speech_streaming.py
from bench.embedding_latency import machine  # noqa: E402
from bench.local_service import deploy_models, local_service  # noqa: E402
from bench.results import write_result  # noqa: E402

TEXT = ("The service starts on one box. It grows into a cluster later. "
        "Every model has its own deployment. Nobody waits for the whole file.")


def timed(http: httpx.Client, body: dict) -> tuple[float, float, int]:
    """(seconds to the first body byte, seconds to the last, bytes) of one POST /v1/audio/speech."""
    started = time.perf_counter()
    first, size = None, 0
    with http.stream("POST", "/v1/audio/speech", json=body) as reply:
        reply.raise_for_status()
        for chunk in reply.iter_raw():
            if chunk and first is None:
                first = time.perf_counter() - started
            size += len(chunk)
    return first or 0.0, time.perf_counter() - started, size


def reference_call(folders: list[str], text: str, repeats: int) -> float:
    """Median seconds of the library's own whole-text call, in this process, as a hand-rolled server runs it."""
    import numpy as np
    import torch
    from transformers import SpeechT5ForTextToSpeech, SpeechT5HifiGan, SpeechT5Processor

    processor = SpeechT5Processor.from_pretrained(folders[0])
    model = SpeechT5ForTextToSpeech.from_pretrained(folders[0]).eval()
    vocoder = SpeechT5HifiGan.from_pretrained(folders[1]).eval()
    speaker = torch.from_numpy(np.random.default_rng(0).standard_normal(512).astype("float32"))[None]
    speaker = torch.nn.functional.normalize(speaker, dim=-1)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        with torch.inference_mode():
            ids = processor(text=text, return_tensors="pt").input_ids
            model.generate_speech(ids, speaker, vocoder=vocoder)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dims", choices=["tiny", "base"], default="tiny", help="Random SpeechT5's sizes.")
    parser.add_argument("--repeats", type=int, default=5, help="Requests per measurement (median reported).")
    parser.add_argument("--num-cpus", type=int, default=8, help="CPUs the local Ray instance advertises.")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "bench/results/speech_streaming.json")
    args = parser.parse_args()

    with contextlib.ExitStack() as cleanup:
        work = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="bench-speech-")))
        print(f"writing a random-weight SpeechT5 ({args.dims})...", flush=True)
        built = subprocess.run([sys.executable, "-m", "tests.tiny_speech", str(work / "models"), "--dims", args.dims],
                               cwd=REPO_ROOT, check=True, capture_output=True, text=True).stdout.split()
        repos = {"microsoft/speecht5_tts": built[0], "microsoft/speecht5_hifigan": built[1],
                 "datasets/Matthijs/cmu-arctic-xvectors": built[2]}
        print("the library's reference call, whole text...", flush=True)
        reference = reference_call(built[:2], TEXT, args.repeats)
        with local_service(repos, work, num_cpus=args.num_cpus) as base_url:
            deploy_models(["speecht5-tts"], {"speech": {"max_batch_size": 8, "batch_wait_timeout_s": 0.01}})
            body = {"model": "speecht5-tts", "input": TEXT, "voice": "slt", "response_format": "wav"}
            ways = {"whole file": body, "stream_format audio": body | {"stream_format": "audio"},
                    "stream_format sse": body | {"stream_format": "sse", "response_format": "pcm"}}
            results = {}
            with httpx.Client(base_url=base_url, timeout=600) as http:
                timed(http, body)  # warm: the replica's first call
                for name, request in ways.items():
                    print(f"{name}: {args.repeats} requests...", flush=True)
                    runs = [timed(http, request) for _ in range(args.repeats)]
                    results[name] = {"first_byte_s": round(statistics.median(r[0] for r in runs), 4),
                                     "last_byte_s": round(statistics.median(r[1] for r in runs), 4),
                                     "bytes": runs[0][2]}

    whole = results["whole file"]
    ratios = {f"first_byte_whole_over_{key.split()[-1]}": round(whole["first_byte_s"] / row["first_byte_s"], 2)
              for key, row in results.items() if key != "whole file"}
    ratios["whole_file_over_reference_call"] = round(whole["last_byte_s"] / reference, 2)
    print(f"\n{'':24}{'first byte s':>14}{'last byte s':>13}")
    for name, row in results.items():
        print(f"{name:24}{row['first_byte_s']:>14}{row['last_byte_s']:>13}")
    print(f"{'reference call':24}{'':>14}{round(reference, 4):>13}")
    for name, value in ratios.items():
        print(f"{name}: {value}x")
    result = {"dims": args.dims, "text": TEXT,
              "sentences": 4, "repeats": args.repeats, "machine": machine("cpu"), "serve": results,
              "reference_call_s": round(reference, 4), "ratios": ratios}
    write_result(args.out, result)


if __name__ == "__main__":
    main()
