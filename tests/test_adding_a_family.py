"""docs/adding-a-family.md followed to the letter: each of its blocks written into a copy of this checkout
(new files where a block's first line names one, registration lines where it says, catalog entries merged),
then the copy's application, with that family alone, deployed on a Ray of its own. The family deploys, its
route answers, a bad request is a 4xx naming the catalog's limit, a job runs, and /models lists it."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest
import yaml

from tests.conftest import free_port
from tests.hub import TestHub
from tests.ray_nodes import _stop_nodes

pytestmark = pytest.mark.own_ray  # starts a Ray of its own: runs before the session's application

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "adding-a-family.md"
# a fenced block whose first line is a comment naming where it goes
BLOCK = re.compile(r"```(?:python|yaml)\n# (?P<where>[^\n]+)\n(?P<body>.*?)```", re.S)

DRIVER = textwrap.dedent("""
    import json, sys, httpx, ray
    from ray import serve
    import deployments
    from deployments.app import AppArgs, compose_app
    from deployments.settings import ServiceSettings
    from registry import load_catalog

    port, model = int(sys.argv[1]), sys.argv[2]
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(compose_app(load_catalog(), ServiceSettings(), AppArgs(models=[model], runtime_pools=False)),
              name="toy", route_prefix="/")
    result = {"code": deployments.__file__, "status": serve.status().applications["toy"].status.value}
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120) as http:
        result["reversed"] = http.post("/api/reverse", json={"text": "one two three"}).json()
        too_long = http.post("/api/reverse", json={"text": "word " * 65})
        result["too_long"] = [too_long.status_code, too_long.json().get("detail")]
        blank = http.post("/api/reverse", json={"text": "   "})
        result["blank"] = blank.status_code
        job = http.post("/api/v1/run", params={"wait": 60}, json={"model": model, "input": {"text": "a b"}})
        result["job"] = job.json()
        result["models"] = [m["id"] for m in http.get("/models").json()["models"]]
        result["spec"] = sorted(http.get("/openapi.json").json()["paths"])
    print("RESULT", json.dumps(result))
    serve.shutdown()
""")


def follow_the_doc(copy: Path) -> list[str]:
    """Apply every block of the doc to `copy`; what was done, one line each."""
    done = []
    for block in BLOCK.finditer(DOC.read_text()):
        where, body = block["where"], block["body"]
        if where.endswith(", merged:"):  # catalog entries, merged into the catalog's sections
            path = copy / where.removesuffix(", merged:")
            catalog, entries = yaml.safe_load(path.read_text()), yaml.safe_load(body)
            for section, value in entries.items():
                if isinstance(value, list):
                    catalog[section].extend(value)
                else:
                    catalog[section].update(value)
            path.write_text(yaml.safe_dump(catalog, sort_keys=False))
        elif ", in " in where:  # a registration: the lines go first in the named dict or tuple
            file_name, name = where.removesuffix(":").split(", in ")
            path = copy / file_name
            lines = path.read_text().splitlines(keepends=True)
            opening = next(i for i, line in enumerate(lines) if re.match(rf"{name}\b[^=]*= *[{{(\[]\s*$", line))
            lines.insert(opening + 1, body)
            path.write_text("".join(lines))
        else:  # a new file
            path = copy / where
            assert not path.exists(), f"the doc's {where} is not new"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(body)
        done.append(where)
    return done


def test_a_family_added_as_the_doc_says_deploys_routes_and_runs_a_job(tmp_path):
    copy = tmp_path / "checkout"
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.split("\n")
    for name in filter(None, files):
        if (ROOT / name).is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, copy / name)
    done = follow_the_doc(copy)
    new_files = [where for where in done if "," not in where]
    registrations = [where for where in done if ", in " in where]
    assert len(registrations) <= 2 and len(new_files) <= 5, done
    print(f"\nthe doc's steps: {len(new_files)} new files, {len(registrations)} one-line registrations, "
          f"{sum(', merged' in where for where in done)} catalog merge")

    spec = importlib.util.spec_from_file_location("tiny_toy", next(copy / w for w in new_files if "/tiny_" in w))
    tiny = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tiny)
    hub = TestHub()
    tiny.add_repos(hub, tmp_path / "models")
    hub.start()
    model = yaml.safe_load((copy / "registry" / "catalog.yaml").read_text())["models"][-1]["id"]
    temp = tempfile.mkdtemp(prefix="ra", dir="/tmp")  # a Ray of its own (short socket paths)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "INFERENCE_", "AWS_"))},
           "PYTHONPATH": str(copy), "RAY_TMPDIR": temp, "RAY_USAGE_STATS_ENABLED": "0", "HF_ENDPOINT": hub.url,
           "INFERENCE_CACHE_DIR": str(tmp_path / "cache"), "INFERENCE_DATA_DIR": str(tmp_path / "data")}
    try:
        run = subprocess.run([sys.executable, "-c", DRIVER, str(free_port()), model], cwd=copy, env=env,
                             capture_output=True, text=True, timeout=300)
    finally:
        _stop_nodes([temp])
        hub.stop()
        shutil.rmtree(temp, ignore_errors=True)
    assert run.returncode == 0, run.stderr[-4000:]
    result = json.loads(next(line for line in run.stdout.splitlines() if line.startswith("RESULT "))[7:])
    assert result["code"].startswith(str(copy)) and result["status"] == "RUNNING", result
    assert result["reversed"] == {"model": model, "text": "three two one", "words": 3}
    assert result["too_long"] == [400, f"The text has 65 words; model '{model}' takes at most 64"]
    assert result["blank"] == 400
    job = result["job"]
    assert job["status"] == "completed" and job["output"] == {"model": model, "text": "b a", "words": 2}, job
    assert model in result["models"] and "/api/reverse" in result["spec"]
