"""What chat requests may hold: messages (text, image parts, tool calls and results), sampling options,
tools and response formats, as /api/llm, /v1/chat/completions and chat jobs take them."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from deployments.families.chat.protocol import (
    MAX_SEED,
    NamedToolChoice,
    ProductRequest,
    ResponseFormat,
    Tool,
    ToolCall,
    check_tool_choice,
)

ROLES = ("system", "user", "assistant", "tool")
MAX_STOPS = 4


def _stop_schema(schema: dict[str, Any]) -> None:
    """json_schema_extra of `stop`: what _stops takes (one text or up to MAX_STOPS, none empty)."""
    for branch in schema["anyOf"]:
        if branch.get("type") == "string":
            branch["minLength"] = 1
        elif branch.get("type") == "array":
            branch.update(maxItems=MAX_STOPS)
            branch["items"]["minLength"] = 1


class TextPart(BaseModel):
    type: Literal["text"]
    text: str


class ImageURL(BaseModel):
    url: str = Field(description="A data: URL (base64 image) or an http(s) URL, fetched with the SSRF checks.")
    detail: Literal["auto", "low", "high"] | None = Field(None, description="Accepted and ignored.")


class ImagePart(BaseModel):
    type: Literal["image_url"]
    image_url: ImageURL


class Message(BaseModel):
    """A chat turn; OpenAI's `developer` role reads as `system`. Content is text or a list of parts (text;
    image_url for vision-language models). Fields the openai client writes back with an earlier answer
    (refusal, audio: null) are ignored."""

    model_config = ConfigDict(extra="ignore")

    # an enum in the spec, checked by _known_role so that a refusal names the roles
    role: str = Field(json_schema_extra={"enum": [*ROLES, "developer"]},
                      description="system, user, assistant or tool (developer reads as system).")
    content: str | list[TextPart | ImagePart] | None = Field(
        None, description="Text, or a list of {'type': 'text', 'text'} and {'type': 'image_url', 'image_url': "
        "{'url'}} parts; null for an assistant turn of tool calls.")
    name: str | None = Field(None, description="Accepted and ignored.")
    tool_calls: list[ToolCall] | None = Field(None, description="An assistant turn's tool calls, as answered.")
    tool_call_id: str | None = Field(None, max_length=64, description="A tool turn: the id of the call it answers.")

    @field_validator("role")
    @classmethod
    def _known_role(cls, value: str) -> str:
        if value == "developer":
            return "system"
        if value not in ROLES:
            raise ValueError(f"role '{value}' is not supported; use system, user, assistant or tool")
        return value

    @model_validator(mode="after")
    def _tool_turns_answer_a_call(self) -> Message:
        if self.role == "tool" and not self.tool_call_id:
            raise ValueError("a tool message needs the tool_call_id of the call it answers")
        return self

    def images(self) -> list[str]:
        """The URLs of its image parts."""
        parts = self.content if isinstance(self.content, list) else []
        return [part.image_url.url for part in parts if isinstance(part, ImagePart)]

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(part.text for part in self.content if isinstance(part, TextPart))
        return self.content or ""

    def plain(self) -> dict[str, Any]:
        """The turn as the chat family takes it (image parts are taken out by the route first)."""
        return {"role": self.role, "content": self.text(), "tool_calls": self.tool_calls,
                "tool_call_id": self.tool_call_id}


class ChatFields(BaseModel):
    """What /api/llm, /v1/chat/completions and chat jobs share."""

    model_config = ConfigDict(extra="forbid")

    messages: list[Message] = Field(json_schema_extra={"minItems": 1},  # checked by _some_messages
                                    description="The conversation so far, oldest first; at least one message.")
    temperature: float | None = Field(None, ge=0, le=2, description="0 = greedy; default the model's own.")
    top_p: float | None = Field(None, gt=0, le=1)
    seed: int | None = Field(None, ge=0, le=MAX_SEED, description="Same seed and request: same answer.")
    stop: str | list[str] | None = Field(None, json_schema_extra=_stop_schema,  # checked by _stops
                                         description=f"Up to {MAX_STOPS} non-empty texts that end the answer "
                                         "(cut off).")
    tools: list[Tool] | None = Field(None, max_length=128, description="Functions the model may call; their "
                                     "arguments are held to each function's `parameters` schema while decoding.")
    tool_choice: Literal["auto", "none", "required"] | NamedToolChoice | None = Field(
        None, description="auto (default with tools), none, required, or {'type': 'function', 'function': "
        "{'name'}}.")
    parallel_tool_calls: bool | None = Field(None, description="Several calls in one answer (default true).")
    response_format: ResponseFormat | None = Field(
        None, description="{'type': 'text'}, {'type': 'json_object'}, or {'type': 'json_schema', 'json_schema': "
        "{'name', 'schema', 'strict'}}: JSON enforced while decoding.")

    @field_validator("messages")
    @classmethod
    def _some_messages(cls, value: list[Message]) -> list[Message]:
        if not value:
            raise ValueError("messages must hold at least one message")
        return value

    @model_validator(mode="after")
    def _tools_to_choose(self) -> ChatFields:
        check_tool_choice(self.tool_choice, self.tools)
        return self

    @field_validator("stop")
    @classmethod
    def _stops(cls, value: str | list[str] | None) -> list[str]:
        stops = [value] if isinstance(value, str) else list(value or [])
        if len(stops) > MAX_STOPS or any(not s for s in stops):
            raise ValueError(f"stop must be up to {MAX_STOPS} non-empty strings")
        return stops

    def plain_messages(self) -> list[dict[str, Any]]:
        return [m.plain() for m in self.messages]

    def images(self) -> list[str]:
        return [url for m in self.messages for url in m.images()]

    def options(self, max_tokens: int | None) -> dict[str, Any]:
        shaped = self.model_dump(include={"tools", "tool_choice", "parallel_tool_calls", "response_format"},
                                 exclude_none=True)
        return {"max_tokens": max_tokens, "temperature": self.temperature, "top_p": self.top_p,
                "seed": self.seed, "stop": self.stop or []} | shaped


class LLMRequest(ChatFields):
    model: str | None = Field(None, description="Catalog id, alias or hub repo id; default the task's current "
                                 "model (GET /models/current).")
    max_tokens: int | None = Field(None, gt=0, description="Most tokens to generate.")


class StreamOptions(BaseModel):
    include_usage: bool = False


# OpenAI parameters this service does not implement: accepted only at their no-op value.
UNSUPPORTED = {"functions": None, "function_call": None, "logprobs": False, "top_logprobs": None,
               "logit_bias": None, "audio": None, "prediction": None, "frequency_penalty": 0,
               "presence_penalty": 0, "web_search_options": None}


class OpenAIChatRequest(ChatFields):
    model: str
    max_tokens: int | None = Field(None, gt=0)
    max_completion_tokens: int | None = Field(None, gt=0, description="Takes precedence over max_tokens.")
    n: int = Field(1, ge=1, json_schema_extra={"maximum": 1}, description="Only 1.")  # checked by _one_choice
    stream: bool = False
    stream_options: StreamOptions | None = None
    modalities: list[Literal["text"]] | None = Field(None, min_length=1, max_length=1, description="Only ['text'].")
    user: str | None = None
    store: bool | None = None
    metadata: dict[str, str] | None = None
    service_tier: str | None = None
    reasoning_effort: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _unsupported(cls, data: Any) -> Any:
        if isinstance(data, dict):
            used = [key for key, idle in UNSUPPORTED.items() if data.get(key) not in (None, idle)]
            if used:
                legacy = " (use tools and tool_choice)" if {"functions", "function_call"} & set(used) else ""
                raise ValueError(f"{', '.join(used)} {'is' if len(used) == 1 else 'are'} not supported by this "
                                 f"service{legacy}")
            data = {key: value for key, value in data.items() if key not in UNSUPPORTED}
        return data

    @field_validator("n")
    @classmethod
    def _one_choice(cls, value: int) -> int:
        if value != 1:
            raise ValueError(f"n={value} is not supported; this service returns one choice (n=1)")
        return value


class ProductDescriptionRequest(ProductRequest):
    model: str | None = Field(None, description="Catalog id or alias of a chat model; default the chat default.")


class ChatJob(ChatFields):
    max_tokens: int | None = Field(None, gt=0)
