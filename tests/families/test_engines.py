"""The converted engines through the service: Whisper on CTranslate2 (whisper-base here, as the CPU profile
runs it) beside Whisper on transformers (whisper-tiny, the same tiny weights), converted once by the model
manager into the cache, checked there; a conversion that fails leaves no folder behind and says why.
(Embeddings on ONNX Runtime: tests/model_cache/test_model_downloads.py, after bge-small-en-v1.5's first
download, which converts it.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.families.test_transcription import clip


def transcribe(client, model: str, **fields) -> dict:
    reply = client.post("/v1/audio/transcriptions", files={"file": ("clip.wav", clip(7.0))},
                        data={"model": model, "response_format": "verbose_json", **fields})
    assert reply.status_code == 200, reply.text
    return reply.json()


def conversion(model_cache: Path, model: str, prefix: str) -> tuple[Path, dict]:
    folders = sorted((model_cache / "converted" / model).glob(f"{prefix}-*"))
    assert len(folders) == 1, folders  # converted once, whole: no .incomplete left beside it
    return folders[0], json.loads((folders[0] / "conversion.json").read_text())


def test_whisper_on_ctranslate2_answers_every_field_the_transformers_engine_does(client, model_cache):
    engines = {m["id"]: m["engine"] for m in client.get("/models").json()["models"] if m["task"] == "speech-to-text"}
    assert engines["whisper-base"] == "ctranslate2" and engines["whisper-tiny"] == "transformers"
    fast, reference = (transcribe(client, m, **{"timestamp_granularities[]": ["word", "segment"]})
                       for m in ("whisper-base", "whisper-tiny"))
    for body in (fast, reference):
        assert body["duration"] == 7.0 and body["segments"][-1]["end"] == 7.0
        assert body["language"] == reference["language"]
        assert all(s["tokens"] and -30 < s["avg_logprob"] <= 0 and 0 <= s["no_speech_prob"] <= 1
                   for s in body["segments"])
        assert body["words"] and all(0 <= w["start"] <= w["end"] <= 7.0 for w in body["words"])
    folder, report = conversion(model_cache, "whisper-base", "ctranslate2-int8")
    assert (folder / "model.bin").stat().st_size > 0 and report["quantization"] == "int8"
    german = transcribe(client, "whisper-base", language="de")
    assert german["language"] == "german" and german["segments"][-1]["end"] == 7.0
    unknown = client.post("/v1/audio/transcriptions", files={"file": ("clip.wav", clip(1.0))},
                          data={"model": "whisper-base", "language": "ja"})
    assert unknown.status_code == 400 and "does not know language 'ja'" in unknown.text


def test_a_failed_conversion_leaves_no_folder_and_says_why(tmp_path):
    from deployments.model_cache.conversions import ConversionFailed, convert_once

    not_a_model = tmp_path / "snapshot" / "0123abc"
    not_a_model.mkdir(parents=True)
    (not_a_model / "config.json").write_text("{}")
    for name in ("ctranslate2-int8", "onnx-fp32"):
        with pytest.raises(ConversionFailed, match=f"Converting 'broken' for {name} failed: .+"):
            convert_once(tmp_path / "cache", "broken", str(not_a_model), name)
    assert list((tmp_path / "cache" / "converted" / "broken").iterdir()) == []
