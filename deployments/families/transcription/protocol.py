"""What the ingress may know of speech-to-text: the request options, the transcript it gets back, the
duration and language checks, and the subtitle writers. Pydantic and the catalog only (no engine)."""

from __future__ import annotations

from functools import cache
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from deployments.errors import InvalidRequest
from deployments.families.transcription.transcripts import to_srt as to_srt
from deployments.families.transcription.transcripts import to_vtt as to_vtt
from registry import ModelEntry

TASK = "speech-to-text"


@cache
def _language_codes() -> dict[str, str]:
    """Every name Whisper knows a language by (code or English name, lower case) -> its code."""
    from transformers.models.whisper.tokenization_whisper import LANGUAGES, TO_LANGUAGE_CODE

    return {code: code for code in LANGUAGES} | dict(TO_LANGUAGE_CODE)


def language_name(code: str) -> str:
    """'en' -> 'english', as OpenAI's verbose_json names the language."""
    from transformers.models.whisper.tokenization_whisper import LANGUAGES

    return LANGUAGES.get(code, code)


def known_languages(schema: dict[str, Any]) -> None:
    """json_schema_extra of a `language` field: the names _known_language takes, as the spec's enum (lower
    case; the check also takes them in any case). Read when the spec is built, not at import."""
    names = sorted(_language_codes())
    strings = [branch for branch in schema.get("anyOf", []) if branch.get("type") == "string"]
    for branch in strings or [schema]:
        branch["enum"] = names


class TranscriptionOptions(BaseModel):
    """What a request may ask of Whisper besides the audio."""

    model_config = ConfigDict(extra="forbid")

    language: str | None = Field(None, json_schema_extra=known_languages, description="Spoken language, code or "
                                 "English name ('de', 'german'); detected per 30 s window when absent.")
    task: Literal["transcribe", "translate"] = Field("transcribe", description="translate = into English.")
    temperature: float = Field(0.0, ge=0, le=1, description="0 decodes greedily; above 0 samples.")
    word_timestamps: bool = Field(False, description="Also time every word (OpenAI's "
                                  "timestamp_granularities[]=word).")

    @field_validator("language")
    @classmethod
    def _known_language(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        code = _language_codes().get(value.strip().lower())
        if code is None:
            raise ValueError(f"unknown language '{value}'; use a code such as 'en', 'de', 'fr' or an English "
                             f"name such as 'german'")
        return code


class TranscriptionJobInput(TranscriptionOptions):
    """A transcription job's stored input: an upload plus the options."""

    file_id: str


class Segment(BaseModel):
    id: int
    seek: int = Field(description="Start of the segment's 30 s window, in 10 ms frames (as Whisper counts).")
    start: float
    end: float
    text: str
    tokens: list[int]
    temperature: float
    avg_logprob: float = Field(description="Mean log-probability of the segment's sampled tokens.")
    compression_ratio: float = Field(description="UTF-8 length of the text over its zlib-compressed length.")
    no_speech_prob: float = Field(description="Probability of <|nospeech|> at the start of the segment's window.")


class TranscribedWord(BaseModel):
    word: str
    start: float
    end: float


class Transcription(BaseModel):
    model: str
    task: str
    language: str = Field(description="Code of the language given, or detected in the first window.")
    duration: float
    text: str
    segments: list[Segment]
    words: list[TranscribedWord] | None = Field(None, description="With word_timestamps: every word, in order, "
                                                "each inside its segment.")
    batch_size: int = Field(description="Most windows that shared one generate call with this request's.")


def check_duration(entry: ModelEntry, seconds: float) -> None:
    """The catalog's max_duration_seconds, when one is set (e.g. CATALOG__WHISPER_BASE__MAX_DURATION_SECONDS)."""
    limit = entry.specs.max_duration_seconds
    if limit and seconds > limit:
        raise InvalidRequest(f"Duration {seconds:g}s exceeds model limit of {limit:g}s")
