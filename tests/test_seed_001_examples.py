"""Seed 001's model management examples (its curl lines and request bodies), run as written against the real
service with the tiny models: each asserts the status and the response fields the seed's sample responses
show, or the deliberate difference docs/seed-examples.md documents.
"""

from __future__ import annotations

import pytest

from tests.model_cache.test_model_management import add_encoder_repo, wait_for

STARTED = {"pending", "downloading", "completed", "already_exists"}


def speak(client) -> None:
    """A request to SpeechT5, so that it is loaded, as on a service that has been in use."""
    reply = client.post("/api/tts", json={"text": "Hello.", "model": "speecht5-tts"})
    assert reply.status_code == 200, reply.text


def test_list_models(client):
    speak(client)
    # curl http://localhost:8000/models
    body = client.get("/models").json()
    assert body["success"] is True and body["total_models"] == len(body["available_models"])
    speecht5 = body["models_info"]["speecht5-tts"]
    assert {"display_name": "SpeechT5 TTS", "task": "text-to-speech", "category": "audio", "enabled": True,
            "tts_enabled": True}.items() <= speecht5.items()
    assert body["models_info"]["whisper-base"]["tts_enabled"] is False
    specialized = body["specialized_models"]
    assert specialized["tts_models"] == ["speecht5-tts", "bark-small", "bark", "csm-1b"]
    assert "whisper-base" in specialized["stt_models"] and "resnet-50" in specialized["image_classification"]
    detailed = body["audio_models"]["tts_detailed"]["speecht5-tts"]
    assert detailed == {"type": "huggingface", "model_name": "microsoft/speecht5_tts",
                        "description": "Microsoft SpeechT5 with the HiFi-GAN vocoder; voices are CMU ARCTIC "
                                       "speakers' x-vectors."}
    assert "speecht5-tts" in body["audio_models"]["loaded_audio_models"]  # the task default is kept warm
    assert "all-minilm-l6-v2" not in body["audio_models"]["loaded_audio_models"]


def test_download_speecht5_with_its_vocoder(client):
    # the seed's "Download SpeechT5 TTS Model" body
    reply = client.post("/models/download", json={"source": "huggingface", "model_id": "microsoft/speecht5_tts",
                                                   "name": "speecht5_tts", "task": "text-to-speech",
                                                   "include_vocoder": True})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["success"] is True and body["model_name"] == "speecht5-tts" and body["status"] in STARTED
    info = body["download_info"]
    assert (info["model_type"], info["vocoder_included"], info["supports_voice_cloning"]) == ("tts", True, False)
    assert info["vocoder_models"] == ["microsoft/speecht5_hifigan"]
    assert info["description"].startswith("Microsoft SpeechT5")
    assert wait_for(client, body["download_id"])["status"] == "completed"
    # "Model Already Exists": the same request again
    again = client.post("/models/download", json={"source": "huggingface", "model_id": "microsoft/speecht5_tts",
                                                   "name": "speecht5_tts", "task": "text-to-speech"}).json()
    assert (again["success"], again["status"]) == (True, "already_exists")
    assert again["message"] == "Model 'speecht5-tts' already exists and is ready to use"


def test_download_bark(client):
    client.delete("/models/download/bark")  # so that this request starts a download, as in the seed
    reply = client.post("/models/download", json={"source": "huggingface", "model_id": "suno/bark",
                                                   "name": "bark_tts", "task": "text-to-speech"})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["status"] in ("pending", "downloading"), body
    assert body["message"] == "Started downloading TTS model 'bark'"
    assert body["estimated_time"] in ("under a minute",) or body["estimated_time"].startswith("about ")
    assert body["download_info"]["estimated_size_mb"] > 0
    # curl http://localhost:8000/models/download/status/abc12345
    status = wait_for(client, body["download_id"])
    assert {"download_id", "status", "progress", "eta", "message"} <= set(status)
    assert (status["status"], status["progress"], status["eta"]) == ("completed", 100.0, None)
    assert status["message"] == "Download completed successfully"


def test_download_bart_for_tts_with_text_generation_task(client, hub, tmp_path):
    # the seed's "Download BART Model for TTS": task text-generation (its default) and auto_convert_tts
    from transformers import BartConfig, BartForCausalLM

    config = BartConfig(vocab_size=64, d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
                        decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, max_position_embeddings=64)
    BartForCausalLM(config).save_pretrained(tmp_path / "bart")
    hub.add_repo("facebook/bart-large", tmp_path / "bart")
    reply = client.post("/models/download", json={"source": "huggingface", "model_id": "facebook/bart-large",
                                                   "name": "bart_large_tts", "task": "text-generation",
                                                   "auto_convert_tts": True})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["model_name"] == "bart_large_tts" and body["download_info"]["task"] == "chat"
    assert body["download_info"]["tts_conversion"].startswith(
        "not applied: 'facebook/bart-large' is downloaded as a chat model; this service converts no model to speech")
    assert "speecht5-tts" in body["download_info"]["tts_conversion"]
    assert wait_for(client, body["download_id"])["status"] == "completed"
    # curl -X DELETE http://localhost:8000/models/download/old_model (here: the model just fetched)
    removed = client.delete("/models/download/bart_large_tts")
    assert removed.status_code == 200 and removed.json()["message"] == (
        "Successfully removed model from cache: bart_large_tts")


def test_large_and_experimental_models_need_their_flags(client):
    large = client.post("/models/download", json={"model_id": "facebook/musicgen-large"})
    assert large.status_code == 400
    assert large.json()["message"] == ("Model 'musicgen-large' is a large model: it needs 16 GB of GPU memory, over "
                                       "this service's 10 GB; send enable_large_model: true to download it")
    allowed = client.post("/models/download", json={"model_id": "facebook/musicgen-large", "enable_large_model": True})
    assert allowed.status_code == 200 and allowed.json()["status"] in STARTED
    experimental = client.post("/models/download", json={"model_id": "ltx-video", "enable_large_model": True})
    assert experimental.status_code == 400 and "ltx-video' is experimental" in experimental.json()["message"]
    both = client.post("/models/download", json={"model_id": "ltx-video", "enable_large_model": True,
                                                 "experimental": True})
    assert both.status_code == 200 and both.json()["status"] in STARTED


@pytest.mark.parametrize("source, model_id", [("torchvision", "resnet50"),
                                              ("pytorch_hub", "pytorch/vision:v0.10.0/resnet50")])
def test_torch_sources_are_served_by_the_hub_hosted_model(client, source, model_id):
    reply = client.post("/models/download", json={"source": source, "model_id": model_id, "name": "resnet50",
                                                   "task": "image-classification"})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["model_name"] == "resnet-50" and "(served by 'resnet-50', microsoft/resnet-50 on the hub)" in (
        body["message"])
    missing = client.post("/models/download", json={"source": source, "model_id": "efficientnet_b0", "name": "e"})
    assert missing.status_code == 404 and "resnet-50, resnet50" in missing.json()["message"]


def test_available_downloads(client):
    # curl http://localhost:8000/models/available
    body = client.get("/models/available").json()
    speecht5 = body["available_models"]["speecht5-tts"]
    assert {"name": "speecht5-tts", "source": "huggingface", "model_id": "microsoft/speecht5_tts",
            "task": "text-to-speech"}.items() <= speecht5.items()
    assert speecht5["size_mb"] > 0 and "text-to-speech" in speecht5["tags"]
    assert {"supports_tts": True, "quality": "very-high", "speed": "medium", "vocoder_required": True,
            "supports_voice_cloning": False}.items() <= speecht5["tts_features"].items()
    assert body["available_models"]["bark"]["tts_features"]["supports_emotions"] is True
    assert body["available_models"]["csm-1b"]["tts_features"]["supports_voice_cloning"] is True
    assert body["available_models"]["whisper-base"]["tts_features"] == {"supports_tts": False}
    assert body["total_available"] == len(body["available_models"])
    assert body["categories"]["tts_models"] == ["speecht5-tts", "bark-small", "bark", "csm-1b"]
    assert "resnet-50" in body["categories"]["general_models"]
    assert body["popular_tts_models"][:2] == ["speecht5-tts", "bark-small"]
    recommended = body["download_recommendations"]
    assert "speecht5-tts" in recommended["beginners"] and "bark" in recommended["advanced"]
    assert "whisper-tiny" in recommended["fast_setup"] and "csm-1b" in recommended["highest_quality"]


def test_managed_models(client):
    speak(client)
    # curl http://localhost:8000/models/managed
    body = client.get("/models/managed").json()
    speech = next(m for m in body["downloaded_models"] if m["name"] == "speecht5-tts")
    assert speech["loaded"] is True and speech["is_tts"] is True and speech["device"] == "cpu"
    assert {"allocated_mb", "reserved_mb"} <= set(speech["memory_usage"]) and speech["parameters"] > 0
    categories = body["categories"]
    assert {"name": "speecht5-tts", "loaded": True, "is_tts": True} in categories["tts_models"]
    assert all(not m["is_tts"] for m in categories["other_models"]) and categories["other_models"]
    summary = body["summary"]
    assert summary["tts_models_count"] == len(categories["tts_models"]) >= 1
    assert summary["total_loaded"] == body["total_models"] and summary["total_parameters"] > 0


def test_cache_info(client):
    # curl http://localhost:8000/models/cache/info
    body = client.get("/models/cache/info").json()
    assert body["total_size_mb"] > 0 and "speecht5-tts" in body["models"]
    tts = body["tts_specific"]
    names = [m["name"] for m in tts["tts_models"]]
    assert "speecht5-tts" in names and tts["tts_models_count"] >= 1
    assert 0 < tts["tts_total_size_mb"] <= body["total_size_mb"]
    # both sizes are rounded to kB, the share to 0.1 %
    assert abs(tts["tts_percentage"] - 100 * tts["tts_total_size_mb"] / body["total_size_mb"]) < 0.2
    optimization = body["cache_optimization"]
    assert 0 < optimization["cache_hit_rate"] <= 1  # the repeated SpeechT5 request above was a hit
    assert (optimization["optimization_enabled"], optimization["auto_cleanup"]) == (True, False)


def test_manage_retry_of_a_download_never_started_is_404(client):
    # curl -X POST ".../models/manage?action=retry_download&model_name=failed_model&force_redownload=true"
    reply = client.post("/models/manage", params={"action": "retry_download", "model_name": "failed_model",
                                                   "force_redownload": "true"})
    assert reply.status_code == 404
    assert reply.json()["message"] == ("No download of 'failed_model' to retry download; start one with "
                                       "POST /models/download")


def test_seed_errors(client, hub):
    # "Invalid Source"
    invalid = client.post("/models/download", json={"source": "invalid_source", "model_id": "x", "name": "x"})
    assert invalid.status_code == 400 and invalid.json()["success"] is False
    assert invalid.json()["message"].startswith("Invalid source. Must be one of: [huggingface, url, s3, torchvision, "
                                                "pytorch_hub]")
    assert invalid.json()["error"] == "Invalid source: invalid_source"
    # "Model Not Found": DELETE of a model the cache does not hold
    gone = client.delete("/models/download/unknown_model")
    assert gone.status_code == 404
    assert (gone.json()["message"], gone.json()["error"]) == ("Model not found in cache: unknown_model",
                                                              "Model does not exist")
    # "Download Failed": the status of a failed download says success false
    repo = add_encoder_repo(hub, "tests/seed-001-failing")
    hub.fail_next(repo.repo_id, "config.json", times=10, status=404)
    started = client.post("/models/download", json={"model_id": repo.repo_id, "name": "failed_model",
                                                     "task": "text-embedding"}).json()
    failed = wait_for(client, started["download_id"])
    assert (failed["success"], failed["status"]) == (False, "failed") and failed["error"]
    assert failed["message"].startswith("Download of 'failed_model' failed")
    assert client.delete("/models/download/failed_model").status_code == 200  # its run-time registration too


def test_manage_optimize_then_remove(client):
    # curl -X POST "http://localhost:8000/models/manage?action=optimize&model_name=speecht5_tts"
    reply = client.post("/models/manage", params={"action": "optimize", "model_name": "speecht5_tts"})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert (body["success"], body["action"], body["model_name"]) == (True, "optimize", "speecht5-tts")
    assert body["message"].startswith("Model 'speecht5-tts' optimized successfully (dynamic-int8)")
    # curl -X DELETE http://localhost:8000/models/download/old_model: the files go and the optimized copy is
    # unloaded, so the suite's later speech tests load SpeechT5 afresh at full precision
    removed = client.delete("/models/download/speecht5_tts")
    assert removed.status_code == 200, removed.text
    assert removed.json()["message"] == "Successfully removed model from cache: speecht5-tts"
    assert removed.json()["unloaded"] is True
    speech = client.post("/api/tts", json={"text": "Back again.", "model": "speecht5-tts"})
    assert speech.status_code == 200 and speech.headers["content-type"].startswith("audio/")
