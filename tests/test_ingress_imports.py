"""The ingress replica imports no ML engine: it only validates and routes, so it should not carry
torch's (or transformers') memory. Request models live apart from the engines (e.g. music_params)."""

from __future__ import annotations

import subprocess
import sys

ENGINES = ("torch", "transformers", "demucs", "sentence_transformers", "peft")


def test_importing_the_ingress_loads_no_engine():
    probe = ("import sys, deployments.ingress; "
             f"print(sorted(m for m in {ENGINES!r} if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"
