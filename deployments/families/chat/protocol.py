"""What the ingress may know of chat: messages, sampling options, the job input, the streamed steps and the
finished completion, and seed 004's product request. Pydantic and dataclasses only (no engine)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from deployments.families.chat.product import ProductListing
from deployments.families.chat.product import ProductRequest as ProductRequest
from deployments.families.protocol import MAX_SEED

TASK = "chat"
Role = Literal["system", "user", "assistant", "tool"]
FUNCTION_NAME = r"^[a-zA-Z0-9_-]{1,64}$"


class FunctionCall(BaseModel):
    name: str
    arguments: str = Field(description="The arguments as a JSON object in a string, as OpenAI sends them.")


class ToolCall(BaseModel):
    """A call the assistant made (in a reply, or sent back in the history)."""

    id: str = Field(max_length=64)
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Role
    content: str = ""
    tool_calls: list[ToolCall] | None = Field(None, description="An assistant turn's calls.")
    tool_call_id: str | None = Field(None, max_length=64, description="A tool turn: the call it answers.")


class Function(BaseModel):
    name: str = Field(pattern=FUNCTION_NAME)
    description: str | None = None
    parameters: dict[str, Any] | None = Field(None, description="JSON schema of the arguments object.")
    strict: bool | None = None


class Tool(BaseModel):
    type: Literal["function"]
    function: Function


class FunctionName(BaseModel):
    name: str = Field(pattern=FUNCTION_NAME)


class NamedToolChoice(BaseModel):
    type: Literal["function"]
    function: FunctionName


class JsonSchemaFormat(BaseModel):
    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)

    name: str = Field(pattern=FUNCTION_NAME)
    description: str | None = None
    schema_: dict[str, Any] = Field(default_factory=dict, alias="schema", description="The answer's JSON schema.")
    strict: bool | None = None


class ResponseFormat(BaseModel):
    """OpenAI's response_format: plain text, any JSON object, or JSON valid against a schema, enforced
    while decoding."""

    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None

    @model_validator(mode="after")
    def _schema_given(self) -> ResponseFormat:
        if self.type == "json_schema" and self.json_schema is None:
            raise ValueError("type json_schema needs a json_schema: {name, schema, strict}")
        return self


class SamplingOptions(BaseModel):
    """What a request may set besides the messages; None = the model's generation_config default."""

    model_config = ConfigDict(extra="forbid")

    max_tokens: int | None = Field(None, gt=0, description="Tokens to generate at most; default fills the "
                                   "context up to the deployment's default_max_tokens.")
    temperature: float | None = Field(None, ge=0, le=2, description="0 = greedy.")
    top_p: float | None = Field(None, gt=0, le=1)
    seed: int | None = Field(None, ge=0, le=MAX_SEED, description="Same seed and request: same answer.")
    stop: list[str] = Field(default_factory=list, max_length=4, description="Text that ends the answer (cut off).")

    @field_validator("stop", mode="before")
    @classmethod
    def _nonempty_stops(cls, value: list[str] | str | None) -> list[str]:
        value = [value] if isinstance(value, str) else value or []
        if any(not s for s in value):
            raise ValueError("stop sequences must not be empty")
        return value


class ChatOptions(SamplingOptions):
    """Sampling, plus what shapes the answer: tools the model may call, a format it must follow."""

    tools: list[Tool] = Field(default_factory=list, max_length=128)
    tool_choice: Literal["auto", "none", "required"] | NamedToolChoice | None = Field(
        None, description="auto (the default with tools), none, required, or one named function.")
    parallel_tool_calls: bool = Field(True, description="Several calls in one answer.")
    response_format: ResponseFormat | None = None

    @model_validator(mode="after")
    def _tools_to_choose(self) -> ChatOptions:
        check_tool_choice(self.tool_choice, self.tools)
        return self


def check_tool_choice(choice: Any, tools: list[Tool] | None) -> None:
    """ValueError when tool_choice asks for a call (required, or a named function) but there are no tools."""
    if choice not in (None, "none", "auto") and not tools:
        raise ValueError("tool_choice needs tools to choose from")


def tool_models(catalog: Any) -> str:
    """The catalog's models that write tool calls (a `specs.tool_calls` style), for a refusal to name them."""
    return ", ".join(sorted(entry.id for entry in catalog.models.values() if entry.specs.tool_calls))


class ChatJobInput(ChatOptions):
    messages: list[ChatMessage] = Field(min_length=1)


class TokenUsage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ProductDescription(BaseModel):
    """What ChatDeployment.describe_product returns: seed 004's listing and how it was made."""

    model: str
    mode: Literal["guided", "json"]
    product: ProductListing
    attempts: int = Field(description="Answers it took (json mode retries one that does not validate).")
    seed: int = Field(description="The seed of the answer used.")
    usage: TokenUsage = Field(description="Over every attempt.")


@dataclass
class Step:
    """A row's new text after one decoding step; `finish_reason` is set on its last step."""

    text: str
    finish_reason: str | None
    completion_tokens: int
    batch_size: int
    tool_calls: list[dict[str, Any]] | None = None  # on the last step when the answer is tool calls


@dataclass
class Started:
    """What a stream sends before its first piece: the request as the model reads it."""

    model: str
    prompt_tokens: int
    seed: int


@dataclass
class Completion:
    model: str
    content: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    seed: int
    batch_size: int
    tool_calls: list[dict[str, Any]] | None = None

    @classmethod
    async def collected(cls, started: Started, steps: AsyncIterator[Step]) -> Completion:
        """The whole answer of a stream's Steps (its text, its calls, the last step's finish and counts)."""
        pieces, calls, last = [], [], None
        async for last in steps:
            pieces.append(last.text)
            calls += last.tool_calls or []
        assert last is not None and last.finish_reason is not None  # a row's last Step says why it ended
        return cls(started.model, "".join(pieces), last.finish_reason, started.prompt_tokens,
                   last.completion_tokens, started.seed, last.batch_size, calls or None)

    def output(self) -> dict[str, Any]:
        """The JSON-able form jobs store."""
        usage = {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                 "total_tokens": self.prompt_tokens + self.completion_tokens}
        return {"model": self.model, "content": self.content, "finish_reason": self.finish_reason,
                "truncated": self.finish_reason == "length", "usage": usage, "seed": self.seed} | (
                    {"tool_calls": self.tool_calls} if self.tool_calls else {})
