"""The Python-handle example of docs/api.md, run exactly as written against the test application."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

API_DOC = Path(__file__).resolve().parents[1] / "docs" / "api.md"


def documented_example() -> str:
    text = API_DOC.read_text()
    block = re.search(r"<!-- python-handles:start -->\s*```python\n(.*?)```\s*<!-- python-handles:end -->", text, re.S)
    assert block, "docs/api.md lost its python-handles example"
    return block.group(1)


def test_the_documented_handle_example_runs_as_written(service, tmp_path, monkeypatch):
    from PIL import Image

    Image.new("RGB", (64, 48), (200, 120, 40)).save(tmp_path / "photo.png")  # the example reads photo.png
    monkeypatch.chdir(tmp_path)
    printed = io.StringIO()
    namespace: dict = {}
    with contextlib.redirect_stdout(printed):
        exec(compile(documented_example(), str(API_DOC), "exec"), namespace)
    # Ray forwards its own warnings (e.g. "(raylet) WARNING: 14 PYTHON worker processes have been started") to
    # this process' stdout: they are not the example's output
    lines = [line for line in printed.getvalue().splitlines() if "(raylet)" not in line]
    assert len(lines) == 10, lines
    assert lines[0] == "all-minilm-l6-v2 384 [8, 5]"  # as the example's comment says
    assert namespace["vectors"].dimensions == 384 and len(namespace["vectors"].vectors) == 2
    spoken = namespace["spoken"]
    assert (spoken.sample_rate, spoken.format) == (16000, "wav") and spoken.audio[:4] == b"RIFF"
    assert namespace["transcript"].duration == spoken.duration
    clip = namespace["clip"]
    assert (clip.sample_rate, clip.duration, clip.seed) == (32000, 1.0, 7)
    answer = namespace["answer"]
    assert answer.model == "qwen2.5-0.5b-instruct" and 1 <= answer.completion_tokens <= 16
    assert lines[4] == f"{answer.finish_reason} {answer.prompt_tokens} {answer.completion_tokens}"
    assert lines[5] == "True" and namespace["pieces"]
    labels = namespace["labels"]
    assert len(labels.predictions) == 3 and labels.image.width == 64
    assert [p.score for p in labels.predictions] == sorted((p.score for p in labels.predictions), reverse=True)
    assert lines[7].startswith("a photograph of")
    assert lines[8:] == ["completed 384", "completed"]
