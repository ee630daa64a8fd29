"""What the ingress may know of text-to-speech and voice cloning: the request, the whole reply and the
streamed pieces, the voice and speed checks against the catalog, and the voice-sample check (header first)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from deployments.errors import InvalidRequest
from deployments.media.audio import AudioLimits, BadAudio, audio_header, check_audio_limits, decode_audio
from registry import ModelEntry
from registry.runtime import CatalogView

TASK = "text-to-speech"


@dataclass(frozen=True)
class SpeechRequest:
    """One text to speak, as the ingress (or a Python caller) hands it over."""

    text: str
    model: str | None = None  # None: the deployment's own model (a pool needs it)
    voice: str | None = None
    speed: float = 1.0
    format: str = "wav"
    voice_sample: bytes | None = None  # audio to clone the voice of (models with 'voice-cloning')
    voice_sample_text: str | None = None  # what the sample says, for models that read it as context
    seed: int | None = None  # models that sample: the same seed gives the same audio


@dataclass(frozen=True)
class Speech:
    """Encoded audio and what a client wants to know about it."""

    model: str
    voice: str
    format: str
    media_type: str
    sample_rate: int
    duration: float
    audio: bytes
    batch_size: int = 1  # texts synthesized in the same model call as this one


@dataclass(frozen=True)
class SpeechStart:
    """What a stream of speech says before its first audio bytes."""

    model: str
    voice: str
    format: str
    media_type: str
    sample_rate: int
    input_tokens: int


@dataclass(frozen=True)
class SpeechPiece:
    """One sentence's audio in a stream, in the stream's format (the first piece of a wav carries the header)."""

    audio: bytes
    seconds: float
    batch_size: int


def resolve_voice(entry: ModelEntry, voice: str | None) -> str:
    """The catalog's spelling of `voice` (case-insensitive), the model's first voice when None, or a 400."""
    voices = entry.specs.voices or []
    if not voices:
        raise InvalidRequest(f"Model '{entry.id}' lists no voices in the catalog")
    if voice is None or not voice.strip():
        return voices[0]
    for known in voices:
        if known.lower() == voice.strip().lower():
            return known
    raise InvalidRequest(f"Unknown voice '{voice}' for model '{entry.id}'. Its voices: {', '.join(voices)}")


def check_speed(catalog: CatalogView, entry: ModelEntry, speed: float) -> None:
    """Only models with the `speed` capability change their speaking rate; say which ones do."""
    if speed != 1.0 and "speed" not in entry.capabilities:
        able = [m.id for m in catalog.models_for_task(TASK) if "speed" in m.capabilities]
        raise InvalidRequest(f"Model '{entry.id}' cannot change the speaking speed (speed={speed}); "
                             f"models that can: {', '.join(able) or 'none'}")


def sample_limits(entry: ModelEntry, limits: AudioLimits | None = None) -> AudioLimits:
    """`limits` (the service's) with the model's longest voice sample as the duration cap."""
    limits = limits or AudioLimits()
    high = entry.specs.max_voice_sample_seconds
    if high is None or (limits.max_seconds is not None and limits.max_seconds < high):
        return limits
    return dataclasses.replace(limits, max_seconds=high, seconds_rule=f"model '{entry.id}'s max_voice_sample_seconds")


def check_voice_sample(entry: ModelEntry, data: bytes, source: str, limits: AudioLimits | None = None) -> float:
    """The sample's duration in seconds, or a 4xx saying what is wrong with it: its header is read first,
    so a sample that claims to be too long, too wide or too fast is refused before it is decoded."""
    if not data:
        raise InvalidRequest(f"The voice sample ({source}) is empty")
    low, high = entry.specs.min_voice_sample_seconds or 0, entry.specs.max_voice_sample_seconds or float("inf")
    try:
        header = audio_header(data)
        if header.duration > high:
            raise InvalidRequest(f"The voice sample ({source}) is {header.duration:.1f}s long; model '{entry.id}' "
                                 f"takes samples of {low:g}-{high:g}s")
        check_audio_limits(header, sample_limits(entry, limits), f"The voice sample ({source})")
        audio = decode_audio(data, entry.specs.sample_rate or 24000, sample_limits(entry, limits))
    except BadAudio as bad:
        raise InvalidRequest(f"The voice sample ({source}) is not audio this service can decode: {bad}") from None
    seconds = len(audio) / (entry.specs.sample_rate or 24000)
    if not low <= seconds <= high:
        raise InvalidRequest(f"The voice sample ({source}) is {seconds:.1f}s long; model '{entry.id}' takes "
                             f"samples of {low:g}-{high:g}s")
    return seconds
