"""Separation speed: demucs' apply_model (one segment per model call) against our batched `separate`.

Runs both on the same random-weight HTDemucs and the same stereo 44.1 kHz noise, random.seed(0)
before each (so both draw the same shift), shifts=1, and reports wall time, peak memory, their
ratios and the relative error between the outputs. Random weights cost what trained ones cost.
Results, with the machine they ran on, go to bench/results/separation_speed.json.

    .venv/bin/python bench/separation_speed.py [--seconds 30 120] [--device auto|cpu|cuda]
        [--batch-size N] [--autocast none|bf16|fp16] [--tiny] [--repeat N]

Peak memory: on CUDA, torch.cuda.max_memory_allocated after reset_peak_memory_stats, minus what was
allocated before the run (model, input). On CPU, the growth of the process RSS (VmRSS in
/proc/self/status, sampled every 2 ms by a background thread) over its value just before the run,
after returning freed heap to the OS with malloc_trim; short spikes between samples can be missed.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import os
import platform
import random
import re
import sys
import threading
import time
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path

import torch
from demucs.apply import apply_model
from demucs.htdemucs import HTDemucs

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # for `deployments`, when run as bench/separation_speed.py
from bench.results import write_result  # noqa: E402
from deployments.families.separation.batched import separate  # noqa: E402

SAMPLERATE = 44100
SOURCES = ["drums", "bass", "other", "vocals"]
AUTOCAST = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def build_model(tiny: bool) -> HTDemucs:
    """The released htdemucs architecture (default arguments, 7.8 s segment), or a tiny one."""
    torch.manual_seed(0)
    if tiny:
        return HTDemucs(SOURCES, channels=8, depth=4, t_layers=2, segment=Fraction(39, 5)).eval()
    return HTDemucs(SOURCES, segment=Fraction(39, 5)).eval()


def rss_bytes() -> int:
    match = re.search(r"^VmRSS:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.MULTILINE)
    return int(match.group(1)) * 1024


class PeakMemory:
    """Peak memory growth during a `with` block: CUDA allocator peak, or sampled RSS on CPU."""

    def __init__(self, device: torch.device):
        self.device, self.peak = device, 0

    def __enter__(self):
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
            return self
        try:  # give freed heap back to the OS so the baseline is not inflated by the previous run
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except OSError:
            pass
        self.base, self.stop = rss_bytes(), threading.Event()
        self.peak_rss = self.base

        def sample():
            while not self.stop.wait(0.002):
                self.peak_rss = max(self.peak_rss, rss_bytes())
        self.thread = threading.Thread(target=sample, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated() - self.base
        else:
            self.stop.set()
            self.thread.join()
            self.peak = max(self.peak_rss, rss_bytes()) - self.base
        return False


def measure(run, device: torch.device, repeat: int) -> tuple[torch.Tensor, float, int]:
    """Output, fastest wall seconds and largest peak memory growth over `repeat` runs."""
    walls, peaks = [], []
    for _ in range(repeat):
        out = None  # free the previous output before measuring again
        random.seed(0)
        with PeakMemory(device) as memory:
            started = time.perf_counter()
            out = run()
            if device.type == "cuda":
                torch.cuda.synchronize()
            walls.append(time.perf_counter() - started)
        peaks.append(memory.peak)
    return out, min(walls), max(peaks)


def machine(device: torch.device) -> dict:
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    cpu_names = re.findall(r"^model name\s*:\s*(.+)$", cpuinfo, re.MULTILINE) or [platform.processor()]
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_names[0]
    return {"device": device.type, "device_name": device_name, "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "torch": torch.__version__}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, nargs="+", default=[30, 120], help="Track lengths to separate.")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--batch-size", type=int, help="Segments per model call (default: 16 on cuda, 4 on cpu).")
    parser.add_argument("--autocast", choices=list(AUTOCAST), default="none", help="For `separate` only.")
    parser.add_argument("--tiny", action="store_true", help="A tiny HTDemucs instead of the real architecture.")
    parser.add_argument("--repeat", type=int, default=1, help="Runs of each; report the fastest (noisy machines).")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "bench/results/separation_speed.json")
    args = parser.parse_args()
    device = torch.device("cuda" if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
                          else "cpu")
    batch_size = args.batch_size or (16 if device.type == "cuda" else 4)
    autocast = AUTOCAST[args.autocast]

    model = build_model(args.tiny).to(device)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():  # warm-up: first calls pay for kernel selection, FFT plans, allocator growth
        model(torch.randn(2, 2, int(model.segment * SAMPLERATE), generator=generator).to(device))

    rows = []
    for seconds in args.seconds:
        mix = (0.3 * torch.randn(1, 2, int(seconds * SAMPLERATE), generator=generator)).to(device)
        print(f"{seconds:g} s: apply_model...", flush=True)
        ref, ref_s, ref_mem = measure(lambda mix=mix: apply_model(model, mix, shifts=1, split=True), device,
                                     args.repeat)
        print(f"{seconds:g} s: separate (batch {batch_size})...", flush=True)
        out, ours_s, ours_mem = measure(lambda mix=mix: separate(model, mix, shifts=1, batch_size=batch_size,
                                                         autocast_dtype=autocast), device, args.repeat)
        error = ((out - ref).norm() / ref.norm()).item()
        if autocast is None:
            assert error < 1e-4, f"separate differs from apply_model: relative error {error:.2e}"
        rows.append({"seconds": seconds, "apply_model_s": round(ref_s, 3), "separate_s": round(ours_s, 3),
                     "speedup": round(ref_s / ours_s, 2), "apply_model_peak_mb": round(ref_mem / 2**20, 1),
                     "separate_peak_mb": round(ours_mem / 2**20, 1), "relative_error": float(f"{error:.3g}")})
        del ref, out, mix

    print(f"\n{'seconds':>8}{'apply_model s':>15}{'separate s':>12}{'speedup':>9}"
          f"{'apply peak MB':>15}{'separate peak MB':>18}{'rel. error':>12}")
    for row in rows:
        print(f"{row['seconds']:>8g}{row['apply_model_s']:>15}{row['separate_s']:>12}{row['speedup']:>8}x"
              f"{row['apply_model_peak_mb']:>15}{row['separate_peak_mb']:>18}{row['relative_error']:>12.2e}")
    memory = "cuda max_memory_allocated growth" if device.type == "cuda" else "sampled VmRSS growth"
    print(f"(model: {'tiny' if args.tiny else 'htdemucs'} HTDemucs, random weights; shifts=1; batch size "
          f"{batch_size}; autocast {args.autocast}; peak = {memory})")

    result = {"timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
              "model": "tiny HTDemucs" if args.tiny else "htdemucs (HTDemucs default args, segment 39/5)",
              "parameters": sum(p.numel() for p in model.parameters()), "machine": machine(device),
              "arguments": {"seconds": args.seconds, "device": device.type, "batch_size": batch_size,
                            "autocast": args.autocast, "tiny": args.tiny, "repeat": args.repeat, "shifts": 1,
                            "overlap": 0.25},
              "peak_memory": memory, "results": rows}
    write_result(args.out, result)


if __name__ == "__main__":
    main()
