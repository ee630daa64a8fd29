"""How every bench script records a run: one JSON file holding when it ran and what it measured (each
script puts the machine it ran on, `machine(device)`, among its figures)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


def write_result(out: Path, result: dict[str, Any]) -> None:
    """`result`, stamped with the time, as indented JSON at `out` (its folder made if need be)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"timestamp": datetime.now(UTC).isoformat(timespec="seconds"), **result},
                              indent=2) + "\n")
    print(f"wrote {out}")


def serving_arguments(parser: Any, name: str, requests: int, concurrency: int, gpu_help: str) -> None:
    """The options every batching bench takes: its load, the local Ray's CPUs, the GPU, where it writes."""
    parser.add_argument("--requests", type=int, default=requests, help="Requests per measurement.")
    parser.add_argument("--concurrency", type=int, default=concurrency, help="Concurrent clients.")
    parser.add_argument("--num-cpus", type=int, default=8, help="CPUs the local Ray instance advertises.")
    parser.add_argument("--gpu", action="store_true", help=gpu_help)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / f"{name}.json")


def print_table(results: dict[str, dict[str, Any]], columns: dict[str, str], width: int = 36) -> None:
    """One line per run (its name, then each column: header -> the row's key), under a header line."""
    widths = {header: max(len(header) + 2, 8) for header in columns}
    print("\n" + " " * width + "".join(f"{header:>{widths[header]}}" for header in columns))
    for name, row in results.items():
        cells = (f"{row.get(key, '-')!s:>{widths[header]}}" for header, key in columns.items())
        print(f"{name:{width}}" + "".join(cells))
