"""The fields seed 001's clients read about models, all from catalog data: whether a model speaks and its
TTS features, the speech/other split of each listing, the download recommendations, the speech share of
the cache, and a starting download's estimated time.
"""

from __future__ import annotations

from typing import Any

from registry import ModelEntry
from registry.runtime import CatalogView

TTS_TASK = "text-to-speech"
MB = 2**20
RECOMMENDATION_KEYS = ("beginners", "advanced", "fast_setup", "highest_quality")
# seed 001's specialized_models keys beside the catalog's task names
SEED_001_SPECIALIZED = {"tts_models": TTS_TASK, "stt_models": "speech-to-text",
                        "image_classification": "image-classification"}


def mb(size: int | None) -> float | None:
    """Bytes as MB with 3 decimals, as every listing shows sizes (None stays None)."""
    return None if size is None else round(size / MB, 3)


def is_tts(catalog: CatalogView, model_id: str | None) -> bool:
    entry = catalog.models.get(model_id) if model_id else None
    return entry is not None and catalog.task_of(entry) == TTS_TASK


def tts_features(catalog: CatalogView, entry: ModelEntry) -> dict[str, Any]:
    """Seed 001's tts_features of a model (only supports_tts, false, for one that does not speak)."""
    if catalog.task_of(entry) != TTS_TASK:
        return {"supports_tts": False}
    return {
        "supports_tts": True,
        "quality": entry.quality,
        "speed": entry.speed,
        "vocoder_required": any(repo.role == "vocoder" for repo in entry.companions),
        "supports_voice_cloning": "voice-cloning" in entry.capabilities,
        "supports_emotions": "emotions" in entry.capabilities,
        "voices": len(entry.specs.voices or []),
        "sample_rate": entry.specs.sample_rate,
    }


def specialized_models(catalog: CatalogView) -> dict[str, list[str]]:
    """Model ids by task, under the task names and under seed 001's keys (tts_models, stt_models...)."""
    by_task = {task: [m.id for m in catalog.models_for_task(task)] for task in catalog.tasks}
    return {**by_task, **{key: by_task.get(task, []) for key, task in SEED_001_SPECIALIZED.items()}}


def audio_models(catalog: CatalogView, loaded: list[str]) -> dict[str, Any]:
    """Seed 001's audio_models of GET /models: each speech model's source, and the audio models loaded now."""
    speakers = catalog.models_for_task(TTS_TASK)
    audio = {m.id for m in catalog.models.values() if catalog.tasks[catalog.task_of(m)].category == "audio"}
    return {
        "tts_detailed": {m.id: {"type": "s3" if m.hub.is_s3 else "huggingface", "model_name": m.hub.repo_id,
                                "description": m.description or catalog.families[m.family].description}
                         for m in speakers},
        "loaded_audio_models": [name for name in loaded if name in audio],
    }


def split_by_speech(catalog: CatalogView, names: list[str], other_key: str) -> dict[str, list[str]]:
    """`names` as {'tts_models': [...], other_key: [...]} (seed 001's categories)."""
    split: dict[str, list[str]] = {"tts_models": [], other_key: []}
    for name in names:
        split["tts_models" if is_tts(catalog, name) else other_key].append(name)
    return split


def recommendations(catalog: CatalogView) -> dict[str, list[str]]:
    """Seed 001's download_recommendations: the catalog models that name each list in recommended_for."""
    return {key: [m.id for m in catalog.models.values() if key in m.recommended_for] for key in RECOMMENDATION_KEYS}


def popular_tts_models(catalog: CatalogView) -> list[str]:
    """Speech models recommended for anything first, then the rest, in catalog order."""
    speakers = catalog.models_for_task(TTS_TASK)
    return [m.id for m in speakers if m.recommended_for] + [m.id for m in speakers if not m.recommended_for]


def tts_share(catalog: CatalogView, entries: list[dict[str, Any]], total_bytes: int) -> dict[str, Any]:
    """Seed 001's tts_specific of the cache: its speech models, their size and share of the whole."""
    speech = [e for e in entries if any(is_tts(catalog, m) for m in e["models"])]
    size = sum(e["size_bytes"] for e in speech)
    return {
        "tts_models_count": len({m for e in speech for m in e["models"] if is_tts(catalog, m)}),
        "tts_models": [{"name": e["name"], "size_mb": e["size_mb"], "source": e["source"], "task": TTS_TASK,
                        "tags": sorted({tag for m in e["models"] if m in catalog.models
                                        for tag in catalog.models[m].capabilities})}
                       for e in speech],
        "tts_total_size_mb": mb(size),
        "tts_percentage": round(100 * size / total_bytes, 1) if total_bytes else 0.0,
    }


def measured_speed(downloads: list[dict[str, Any]]) -> float | None:
    """Bytes per second over the downloads that finished here, or None before the first."""
    done = [d for d in downloads if d["status"] == "completed" and d.get("started_at") and d.get("finished_at")
            and d.get("bytes_done")]
    seconds = sum(d["finished_at"] - d["started_at"] for d in done)
    return sum(d["bytes_done"] for d in done) / seconds if seconds > 0 else None


def estimated_time(size_bytes: int | None, bytes_per_s: float) -> str | None:
    """A starting download's time in words, as seed 001 shows it ('about 3 minutes'); None if the size is unknown."""
    if size_bytes is None:
        return None
    seconds = size_bytes / bytes_per_s
    if seconds < 60:
        return "under a minute"
    minutes = round(seconds / 60)
    return f"about {minutes} minute{'s' if minutes != 1 else ''}"
