"""Whisper engines side by side at whisper-base's real size (random weights), equal work: ours through the
service (HTTP, the CPU profile's CTranslate2 engine) and in-process (both engines), against faster-whisper
used directly as a user would (WhisperModel.transcribe, and BatchedInferencePipeline).

    .venv/bin/python bench/whisper_engines.py                      # 120 s of audio, 100 tokens a window
    .venv/bin/python bench/whisper_engines.py --gpu                # float16 on the GPU, as gpu_suite.sh runs it

Equal work: the model's generation config suppresses <|endoftext|>, so every window decodes exactly --tokens
tokens on every path (faster-whisper is asked for twice as many, since CTranslate2 decodes at most half its
max_length); the CTranslate2 paths' windows and decoded tokens are counted at CTranslate2's generate.
Ours cuts windows with the profile's 5 s overlap, and faster-whisper's sequential transcribe seeks to each
window's last timestamp, so the paths decode different numbers of windows for the same audio: the table
gives seconds per audio minute (what a user waits) and per window (equal work). One thread per engine
on a CPU, as a CPU replica runs (INFERENCE_CPU_THREADS). Results, with the machine, go to
bench/results/whisper_engines.json.
"""

from __future__ import annotations

import argparse
import io
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import soundfile as sf

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # for `deployments` and bench/, when run as bench/whisper_engines.py
from bench.embedding_latency import machine  # noqa: E402
from bench.local_service import deploy_models, local_service  # noqa: E402
from bench.results import print_table, write_result  # noqa: E402

REPO = "openai/whisper-base"
RATE = 16000


def speech_like(seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (0.3 * np.sin(2 * np.pi * (300 + 100 * np.sin(2 * np.pi * 0.5 * t)) * t)).astype(np.float32)


class CountingWhisper:
    """A CTranslate2 Whisper that counts the windows and tokens its generate calls decode."""

    def __init__(self, model):
        self.model, self.windows, self.tokens = model, 0, 0

    def __getattr__(self, name):
        return getattr(self.model, name)

    def generate(self, features, prompts, **options):
        results = self.model.generate(features, prompts, **options)
        if options.get("max_length", 448) > 2:  # not a language-detection step
            self.windows += len(prompts)
            self.tokens += sum(len(r.sequences_ids[0]) for r in results)
        return results

    def counted(self) -> tuple[int, int]:
        windows, tokens, self.windows, self.tokens = self.windows, self.tokens, 0, 0
        return windows, tokens


def never_ending(model: Path) -> None:
    """Suppress <|endoftext|> in the checkpoint's generation config: every window decodes max_new_tokens."""
    import json

    path = model / "generation_config.json"
    config = json.loads(path.read_text())
    config["suppress_tokens"] = sorted({*config.get("suppress_tokens", []), config["eos_token_id"]})
    path.write_text(json.dumps(config))


def median_run(run, repeats: int) -> tuple[float, int, int]:
    """Median seconds of `run()` over `repeats` (after one warm-up), and the (windows, tokens) it decoded."""
    windows, tokens = run()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times), windows, tokens


def row(seconds: float, windows: int, tokens: int, audio_s: float) -> dict:
    import torch

    result = {"seconds": round(seconds, 3), "s_per_audio_minute": round(seconds * 60 / audio_s, 3),
              "windows": windows, "tokens": tokens, "ms_per_window": round(seconds * 1000 / max(1, windows), 1)}
    if torch.cuda.is_available():  # torch's own peak (the transformers engine); CTranslate2 allocates its own
        result["torch_peak_gpu_mb"] = round(torch.cuda.max_memory_allocated() / 2**20)
        torch.cuda.reset_peak_memory_stats()
    return result


def in_process(model: Path, audio: np.ndarray, args, device: str) -> dict[str, dict]:
    import torch
    from faster_whisper import BatchedInferencePipeline, WhisperModel

    from deployments.families.transcription.engines import CTranslate2Whisper, TransformersWhisper
    from deployments.families.transcription.protocol import TranscriptionOptions
    from deployments.families.transcription.transcripts import window_starts
    from deployments.model_cache.conversions import convert_once
    from registry import load_catalog

    torch.set_num_threads(args.threads)
    entry = load_catalog().models["whisper-base"]
    quantization = "float16" if device == "cuda" else "int8"
    converted = convert_once(model.parent / "cache", "whisper-base", str(model), f"ctranslate2-{quantization}")
    paths = {"weights": str(model), "converted": converted}
    options = TranscriptionOptions(language="en")
    starts = window_starts(len(audio), 30 * RATE, 5 * RATE)
    windows = [audio[s:s + 30 * RATE] for s in starts]
    audio_s = len(audio) / RATE
    results = {}

    def ours(engine, batch: int):
        counter = None
        if isinstance(engine, CTranslate2Whisper):
            counter = engine.model = CountingWhisper(engine.model)

        def run() -> tuple[int, int]:
            done = [r for i in range(0, len(windows), batch)
                    for r in engine.transcribe(windows[i:i + batch], options, args.tokens)]
            return counter.counted() if counter else (len(done), len(done) * args.tokens)
        return run

    for name, cls, batch in (("ours in-process, transformers, windows one by one", TransformersWhisper, 1),
                             (f"ours in-process, ctranslate2 {quantization}, batch {args.batch}",
                              CTranslate2Whisper, args.batch)):
        print(f"{name}...", flush=True)
        results[name] = row(*median_run(ours(cls(entry, paths, device), batch), args.repeats), audio_s)

    fast = WhisperModel(converted, device=device, compute_type=quantization, cpu_threads=args.threads)
    fast.model = counter = CountingWhisper(fast.model)
    chunks = [{"start": s, "end": min(s + 30.0, audio_s)} for s in np.arange(0, audio_s, 30.0)]

    def direct(batched: bool):
        def run() -> tuple[int, int]:
            common = {"language": "en", "beam_size": 1, "max_new_tokens": 2 * args.tokens, "temperature": 0.0,
                      "condition_on_previous_text": False, "without_timestamps": False}
            if batched:
                segments, _ = BatchedInferencePipeline(fast).transcribe(audio, batch_size=args.batch,
                                                                        clip_timestamps=chunks, **common)
            else:
                segments, _ = fast.transcribe(audio, vad_filter=False, **common)
            list(segments)
            return counter.counted()
        return run

    for name, batched in (("faster-whisper WhisperModel.transcribe", False),
                          (f"faster-whisper BatchedInferencePipeline, batch {args.batch}", True)):
        print(f"{name}...", flush=True)
        results[name] = row(*median_run(direct(batched), args.repeats), audio_s)
    return results


def through_service(model: Path, audio: np.ndarray, args) -> dict:
    """POST /v1/audio/transcriptions of the whole clip to whisper-base on CTranslate2, as the CPU profile runs it."""
    buffer = io.BytesIO()
    sf.write(buffer, audio, RATE, format="WAV")
    clip = buffer.getvalue()
    work = Path(tempfile.mkdtemp(prefix="bench-service-"))
    with local_service({REPO: model}, work, num_cpus=8, num_gpus=int(args.gpu)) as base_url:
        deploy_models(["whisper-base"], {"transcription": {"max_batch_size": args.batch, "batch_wait_timeout_s": 0.02,
                                                           "max_new_tokens": args.tokens}},
                      {"num_gpus": 1} if args.gpu else None, engines={"transcription": "ctranslate2"})
        with httpx.Client(base_url=base_url, timeout=900) as http:
            def run() -> tuple[int, int]:
                reply = http.post("/v1/audio/transcriptions", files={"file": ("clip.wav", clip)},
                                  data={"model": "whisper-base", "language": "en", "response_format": "verbose_json"})
                reply.raise_for_status()
                return 0, 0
            seconds, _, _ = median_run(run, args.repeats)
    from deployments.families.transcription.transcripts import window_starts

    windows = len(window_starts(len(audio), 30 * RATE, 5 * RATE))  # each decodes --tokens (never_ending)
    return row(seconds, windows, windows * args.tokens, len(audio) / RATE)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for flag, default, text in (("--seconds", 120.0, "Audio length."),
                                ("--tokens", 100, "Tokens decoded per 30 s window."),
                                ("--batch", 8, "Windows per model call (ours and the batched pipeline)."),
                                ("--threads", 1, "CPU threads per engine (a CPU replica's)."),
                                ("--repeats", 3, "Timed runs per path (the median is kept).")):
        parser.add_argument(flag, type=type(default), default=default, help=text)
    parser.add_argument("--gpu", action="store_true", help="float16 on the GPU.")
    parser.add_argument("--skip-service", action="store_true", help="In-process paths only.")
    parser.add_argument("--out", type=Path,
                        default=Path(__file__).resolve().parent / "results" / "whisper_engines.json")
    args = parser.parse_args()
    device = "cuda" if args.gpu else "cpu"
    audio = speech_like(args.seconds)
    with tempfile.TemporaryDirectory(prefix="bench-whisper-") as temp:
        model = Path(temp) / "model"
        print("writing a random-weight Whisper (whisper-base's sizes)...", flush=True)
        subprocess.run([sys.executable, "-m", "tests.tiny_whisper", str(model), "--dims", "base"], cwd=REPO_ROOT,
                       check=True, capture_output=True)
        never_ending(model)
        results = in_process(model, audio, args, device)
        if not args.skip_service:
            print("ours through the service (HTTP, ctranslate2)...", flush=True)
            results["ours through the service, ctranslate2 (HTTP)"] = through_service(model, audio, args)

    print_table(results, {"s": "seconds", "s/audio min": "s_per_audio_minute", "windows": "windows",
                          "tokens": "tokens", "ms/window": "ms_per_window"}, width=58)
    batched_direct = results[f"faster-whisper BatchedInferencePipeline, batch {args.batch}"]
    ratios = {name: round(batched_direct["s_per_audio_minute"] / r["s_per_audio_minute"], 2)
              for name, r in results.items() if name.startswith("ours")}
    ratios |= {f"{name} (per window)": round(batched_direct["ms_per_window"] / r["ms_per_window"], 2)
               for name, r in results.items() if name.startswith("ours")}
    for name, ratio in ratios.items():
        print(f"faster-whisper batched / {name}: {ratio}x")
    write_result(args.out, {"audio_seconds": args.seconds, "tokens_per_window": args.tokens, "batch": args.batch,
                            "threads": args.threads, "machine": machine(device), "results": results,
                            "speedup_vs_faster_whisper_batched": ratios})


if __name__ == "__main__":
    main()
