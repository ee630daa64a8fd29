"""A realtime session's configuration in the GA protocol's shape: what session.update may set, checked as a
whole after each update is merged in (a refused update changes nothing), and what this service supports."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from deployments.families.protocol import MAX_SEED
from deployments.ingress.realtime.audio import FORMATS, AudioFormat
from deployments.ingress.realtime.events import RealtimeError

# OpenAI's voice names: a client written for OpenAI sends one; each speaks as the speech model's first voice.
OPENAI_VOICES = frozenset({"alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer", "verse", "marin", "cedar"})
MAX_INSTRUCTIONS = 20_000  # characters
MAX_TOOLS = 128  # functions in one session, as /v1/chat/completions takes
WHOLE = {"format", "turn_detection"}  # what session.update replaces rather than merges into


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Format(_Strict):
    type: Literal["audio/pcm", "audio/pcmu", "audio/pcma"] = "audio/pcm"
    rate: int | None = None

    @model_validator(mode="after")
    def _rate(self) -> Format:
        rate = FORMATS[self.type].rate
        if self.rate not in (None, rate):
            raise ValueError(f"{self.type} audio is {rate} Hz, not {self.rate}")
        self.rate = rate if self.type == "audio/pcm" else None
        return self

    @property
    def audio(self) -> AudioFormat:
        return FORMATS[self.type]


class ServerVad(_Strict):
    type: Literal["server_vad"] = "server_vad"
    threshold: float = Field(0.5, ge=0.01, le=1)
    prefix_padding_ms: int = Field(300, ge=0, le=5000)
    silence_duration_ms: int = Field(500, ge=32, le=10_000)
    idle_timeout_ms: None = Field(None, description="Not supported: no timeout_triggered events are sent.")
    create_response: bool = True
    interrupt_response: bool = True

    @model_validator(mode="before")
    @classmethod
    def _semantic(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("type") == "semantic_vad":
            raise ValueError("semantic_vad is not supported here; use server_vad (Silero VAD) or null")
        return data


class Transcription(_Strict):
    model: str = "whisper-1"
    language: str | None = None
    prompt: str | None = None


class AudioInput(_Strict):
    format: Format = Field(default_factory=Format)
    transcription: Transcription | None = None
    turn_detection: ServerVad | None = Field(default_factory=ServerVad)
    noise_reduction: None = Field(None, description="Not supported.")


class AudioOutput(_Strict):
    format: Format = Field(default_factory=Format)
    voice: str = "alloy"
    speed: float = Field(1.0, ge=0.25, le=1.5)


class Audio(_Strict):
    input: AudioInput = Field(default_factory=AudioInput)
    output: AudioOutput | None = None


class FunctionTool(_Strict):
    """A function the chat model may call (the Realtime API's flat shape: name and parameters at the top)."""

    type: Literal["function"] = "function"
    name: str = Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")
    description: str | None = Field(None, max_length=MAX_INSTRUCTIONS)
    parameters: dict[str, Any] | None = Field(None, description="JSON schema of the arguments.")

    @model_validator(mode="before")
    @classmethod
    def _functions_only(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("type", "function") != "function":
            raise ValueError(f"{data.get('type')!r} tools are not supported here; function tools are")
        return data


class ToolChoiceFunction(_Strict):
    type: Literal["function"]
    name: str


class SessionConfig(_Strict):
    type: Literal["realtime", "transcription"]
    id: str
    object: str
    model: str | None = None
    instructions: str | None = Field(None, max_length=MAX_INSTRUCTIONS)
    output_modalities: list[Literal["audio", "text"]] | None = None
    audio: Audio = Field(default_factory=Audio)
    max_output_tokens: int | Literal["inf"] | None = None
    tools: list[FunctionTool] = Field(default_factory=list, max_length=MAX_TOOLS)
    tool_choice: Literal["auto", "none", "required"] | ToolChoiceFunction | None = None
    temperature: float | None = Field(None, ge=0, le=2)
    seed: int | None = Field(None, ge=0, le=MAX_SEED, description="Ours, not OpenAI's: the chat model's seed, so "
                             "the same conversation gets the same answers (as /v1/chat/completions' seed).")
    include: list[str] | None = None
    tracing: Any = None
    truncation: Any = None
    prompt: Any = None
    expires_at: int | None = None

    @property
    def output(self) -> AudioOutput:
        """The answer's audio settings, the defaults where the session set none."""
        return self.audio.output or AudioOutput()

    @model_validator(mode="after")
    def _choice_among_tools(self) -> SessionConfig:
        names = [tool.name for tool in self.tools]
        if isinstance(self.tool_choice, ToolChoiceFunction) and self.tool_choice.name not in names:
            raise ValueError(f"tool_choice names function {self.tool_choice.name!r}, which is not among the tools")
        if len(set(names)) != len(names):
            raise ValueError("two tools have the same name")
        return self

    def chat_tools(self) -> dict[str, Any]:
        """The session's tools and tool_choice as the chat family takes them (nothing when it has none)."""
        if not self.tools:
            return {}
        choice: Any = self.tool_choice or "auto"
        if isinstance(choice, ToolChoiceFunction):
            choice = {"type": "function", "function": {"name": choice.name}}
        return {"tools": [{"type": "function", "function": tool.model_dump(exclude={"type"}, exclude_none=True)}
                          for tool in self.tools], "tool_choice": choice}

    @field_validator("output_modalities")
    @classmethod
    def _one_modality(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and len(value) != 1:
            raise ValueError("output_modalities is ['audio'] (audio with its transcript) or ['text']")
        return value

    @property
    def speaks(self) -> bool:
        return self.type == "realtime" and self.output_modalities != ["text"]

    def wire(self) -> dict[str, Any]:
        """The session as session.created/updated show it (our extensions only when set)."""
        unset = {name for name in ("expires_at", "seed", "temperature") if getattr(self, name) is None}
        return self.model_dump(exclude_none=self.type == "transcription", exclude=unset)


def initial_session(kind: str, session_id: str, model: str | None, transcription: str, voice: str,
                    expires_at: int) -> SessionConfig:
    """A session as session.created shows it: server VAD on, PCM 24 kHz both ways."""
    if kind == "transcription":
        return SessionConfig(type="transcription", id=session_id, object="realtime.transcription_session",
                             audio=Audio(input=AudioInput(transcription=Transcription(model=transcription))))
    return SessionConfig(type="realtime", id=session_id, object="realtime.session", model=model, instructions="",
                         output_modalities=["audio"], max_output_tokens="inf", tool_choice="auto",
                         truncation="auto", expires_at=expires_at,
                         audio=Audio(input=AudioInput(transcription=Transcription(model=transcription)),
                                     output=AudioOutput(voice=voice)))


def updated(current: SessionConfig, update: Any) -> SessionConfig:
    """`current` with session.update's `session` merged in, checked whole; a RealtimeError names the field."""
    if not isinstance(update, dict):
        raise RealtimeError("session.update needs a 'session' object", "invalid_value", param="session")
    if update.get("type", current.type) != current.type:
        raise RealtimeError(f"This is a {current.type} session; its type cannot change to {update.get('type')!r} "
                            "(connect with ?intent=transcription or ?model=<chat model>)", "invalid_value",
                            param="session.type")
    try:
        return SessionConfig.model_validate(_merged(current.model_dump(), update))
    except ValidationError as invalid:
        first = invalid.errors()[0]
        where = ".".join(str(part) for part in ("session", *first["loc"]))
        code = "unknown_parameter" if first["type"] == "extra_forbidden" else "invalid_value"
        raise RealtimeError(f"{where}: {first['msg']}", code, param=where) from None


def _merged(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict) and key not in WHOLE:
            merged[key] = _merged(base[key], value)
        else:
            merged[key] = value
    return merged
