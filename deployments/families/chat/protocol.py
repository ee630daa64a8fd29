"""What the ingress may know of chat: messages, sampling options, the job input, the streamed steps and the
finished completion, and seed 004's product request. Pydantic and dataclasses only (no engine)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from deployments.families.chat.product import ProductListing
from deployments.families.chat.product import ProductRequest as ProductRequest
from deployments.families.protocol import MAX_SEED

TASK = "chat"
Role = Literal["system", "user", "assistant"]


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Role
    content: str


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


class ChatJobInput(SamplingOptions):
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

    def output(self) -> dict[str, Any]:
        """The JSON-able form jobs store."""
        usage = {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                 "total_tokens": self.prompt_tokens + self.completion_tokens}
        return {"model": self.model, "content": self.content, "finish_reason": self.finish_reason,
                "truncated": self.finish_reason == "length", "usage": usage, "seed": self.seed}
