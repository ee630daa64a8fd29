"""Vision-language chat turns that arrive together: one `generate` per turn, one after another (how the vision
replica ran them before turns were batched), against one shared `generate` (chat_turn.TurnBatcher), in
process on the replica's inference thread (on the GPU when there is one), at Qwen2-VL-2B's real sizes with
random weights.

    .venv/bin/python bench/vision_chat_batching.py                       # 4 turns of 32 tokens, float32
    INFERENCE_CPU_DTYPE=bfloat16 .venv/bin/python bench/vision_chat_batching.py --turns 8

Each turn has its own 224x224 picture (64 image tokens once merged) and a short question, and decodes exactly
--tokens tokens: sampled at temperature 1 with its end tokens banned, so both ways do the same work. The
weights are written once (4.4 GB in bfloat16) to --model-dir. Results, with the machine, go to
bench/results/vision_chat_batching.json.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # for `deployments`, `tests` and bench/, when run as bench/vision_chat_batching.py
from bench.embedding_latency import machine  # noqa: E402
from bench.results import print_table, write_result  # noqa: E402
from deployments.families.chat.decoding import Row, RowState  # noqa: E402
from deployments.families.vision.chat_turn import Turn, decode_turns  # noqa: E402
from deployments.families.vision.engines import ChatDescriber  # noqa: E402
from deployments.serving.model_loading import generation_dtype, pick_device  # noqa: E402
from deployments.serving.torch_threads import inference_executor, run_once  # noqa: E402
from deployments.settings import ServiceSettings  # noqa: E402

IMPORT_BUILDER = "from tests.tiny_vision import build_qwen2_vl"


def turns(engine: ChatDescriber, count: int, tokens: int, outboxes: list[list]) -> list[Turn]:
    rng = np.random.default_rng(0)
    made = []
    for i, outbox in zip(range(count), outboxes):
        picture = Image.fromarray(rng.integers(0, 256, (224, 224, 3), dtype=np.uint8))
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": f"What is in {i}?"}]}]
        prompt = engine.chat_inputs([messages], [picture])["input_ids"][0].tolist()
        row = Row(model="qwen2-vl-2b", prompt_ids=prompt, max_tokens=tokens, temperature=1.0, top_p=1.0, top_k=0,
                  seed=i, stop=[], banned=sorted(engine.chat_model.eos_ids))
        made.append(Turn(messages, [picture], RowState(row, engine.chat_model), outbox.append))
    return made


def measure(engine: ChatDescriber, count: int, tokens: int, shared: bool) -> dict:
    """Seconds until every turn has its answer, and each turn's wait for its whole answer."""
    outboxes: list[list] = [[] for _ in range(count)]
    batch = turns(engine, count, tokens, outboxes)
    started, done = time.perf_counter(), []
    for group in [batch] if shared else [[turn] for turn in batch]:
        inference_executor().submit(decode_turns, engine, group).result()
        done += [time.perf_counter() - started] * len(group)
    decoded = sum(len(steps) for steps in outboxes)
    assert decoded == count * tokens, f"{decoded} tokens decoded; {count * tokens} asked"
    return {"seconds": round(done[-1], 2), "tokens_per_second": round(decoded / done[-1], 2),
            "mean_turn_s": round(sum(done) / count, 2), "first_turn_s": round(done[0], 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=4, help="Turns that arrive together.")
    parser.add_argument("--tokens", type=int, default=32, help="Tokens each turn decodes.")
    parser.add_argument("--model-dir", type=Path, default=Path("/tmp/bench-qwen2-vl-2b"))
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "bench/results/vision_chat_batching.json")
    args = parser.parse_args()

    settings = ServiceSettings()
    device = pick_device(settings)  # and, on a CPU, the replica's torch threads
    if not (args.model_dir / "config.json").exists():  # in a process of its own, which frees its 13 GB peak
        print(f"writing Qwen2-VL-2B sizes with random weights to {args.model_dir}...", flush=True)
        build = f"build_qwen2_vl(Path({str(args.model_dir)!r}), full=True)"
        subprocess.run([sys.executable, "-c", f"from pathlib import Path; {IMPORT_BUILDER}; {build}"], cwd=REPO_ROOT,
                       check=True)
    dtype = generation_dtype(device, settings)
    engine = asyncio.run(run_once(ChatDescriber, str(args.model_dir), device, dtype))  # as the replica loads
    measure(engine, 1, 2, shared=True)  # warm-up
    results = {}
    for name, shared in (("one generate per turn", False), ("one shared generate", True)):
        print(f"{name}: {args.turns} turns of {args.tokens} tokens ({device}, {dtype})...", flush=True)
        results[name] = measure(engine, args.turns, args.tokens, shared)
    print_table(results, {"seconds": "seconds", "tok/s": "tokens_per_second", "mean turn s": "mean_turn_s",
                          "first turn s": "first_turn_s"})
    apart, together = results["one generate per turn"], results["one shared generate"]
    ratios = {"tokens_per_second": round(together["tokens_per_second"] / apart["tokens_per_second"], 2),
              "mean_turn": round(apart["mean_turn_s"] / together["mean_turn_s"], 2)}
    print(f"shared vs one per turn: {ratios['tokens_per_second']}x tokens/s, each turn done "
          f"{ratios['mean_turn']}x sooner on average")
    write_result(args.out, {"turns": args.turns, "tokens": args.tokens, "dtype": str(dtype).removeprefix("torch."),
                            "machine": machine(device), "results": results, "ratios": ratios})


if __name__ == "__main__":
    main()
