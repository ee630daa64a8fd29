"""The ingress replica imports no ML engine: it only validates and routes, so it should not carry
torch's (or transformers') memory. What it knows of a family is that family's `protocol.py` (request and
response types, limits, checks) and what the protocols share (families/protocol.py); the deployment and its
engines stay in the model replicas."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ENGINES = ("torch", "transformers", "demucs", "sentence_transformers", "peft")
ROOT = Path(__file__).resolve().parents[2]
FAMILIES = ROOT / "deployments" / "families"


def test_importing_the_ingress_loads_no_engine_and_no_family_deployment():
    probe = ("import sys, deployments.ingress; "
             f"print(sorted(m for m in {ENGINES!r} if m in sys.modules)); "
             "print(sorted(m for m in sys.modules if m.startswith('deployments.families.') "
             "and m.rsplit('.', 1)[1] in ('deployment', 'engines')))")
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert loaded.split("\n")[:2] == ["[]", "[]"], loaded


def test_the_ingress_imports_only_protocol_modules_of_the_families():
    kinds = sorted(p.name for p in FAMILIES.iterdir() if (p / "deployment.py").exists())
    assert len(kinds) == 9 and all((FAMILIES / kind / "protocol.py").exists() for kind in kinds), kinds
    imported = set()
    for source in (ROOT / "deployments" / "ingress").rglob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("deployments.families."):
                imported.add((source.name, node.module))
    protocols = {"deployments.families.protocol", *(f"deployments.families.{kind}.protocol" for kind in kinds)}
    assert imported and {module for _, module in imported} <= protocols, sorted(imported)
