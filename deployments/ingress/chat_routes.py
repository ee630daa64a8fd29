"""Chat: POST /api/llm (seed 003), POST /v1/chat/completions (OpenAI shape, with streaming),
POST /api/product-description (seed 004's product text from an image description), and the job
input of /api/v1/run. The chat deployment renders the template, batches and decodes; these routes
check the request's shape and turn the deployment's answer into each API's reply."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from typing import Any, Literal

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from deployments.errors import ServiceError
from deployments.families.chat.protocol import (
    MAX_SEED,
    TASK,
    ChatJobInput,
    Completion,
    ProductDescription,
    ProductRequest,
    Started,
    Step,
    TokenUsage,
)
from deployments.families.protocol import new_seed
from deployments.ingress.http_errors import ERROR_RESPONSES
from deployments.ingress.replies import json_reply
from deployments.ingress.request_checks import JobInput, parse
from deployments.ingress.services import Services, get_services
from deployments.ingress.sse import error_event, sse
from registry import ModelEntry

router = APIRouter(tags=["chat"], responses=ERROR_RESPONSES)
BATCH_HEADER = "X-Batch-Size"  # requests decoded together with this one
ROLES = ("system", "user", "assistant")
MAX_STOPS = 4


def _content_schema(schema: dict[str, Any]) -> None:
    """json_schema_extra of Message.content: beside text and null (read as ""), the list of text parts
    _text_parts joins."""
    schema["anyOf"].insert(1, {"type": "array", "items": {"type": "object", "required": ["type", "text"],
                                                          "properties": {"type": {"const": "text"},
                                                                         "text": {"type": "string"}}}})


def _stop_schema(schema: dict[str, Any]) -> None:
    """json_schema_extra of `stop`: what _stops takes (one text or up to MAX_STOPS, none empty)."""
    for branch in schema["anyOf"]:
        if branch.get("type") == "string":
            branch["minLength"] = 1
        elif branch.get("type") == "array":
            branch.update(maxItems=MAX_STOPS)
            branch["items"]["minLength"] = 1


class Message(BaseModel):
    """A chat turn; OpenAI's `developer` role reads as `system`, a list of text parts as their text.
    Fields the openai client writes back with an earlier answer (refusal, tool_calls: null) are ignored."""

    model_config = ConfigDict(extra="ignore")

    # an enum in the spec, checked by _known_role so that a refusal names the roles
    role: str = Field(json_schema_extra={"enum": [*ROLES, "developer"]},
                      description="system, user or assistant (developer reads as system).")
    content: str | None = Field(json_schema_extra=_content_schema,
                                description="Text, or a list of {'type': 'text', 'text': ...} parts.")
    name: str | None = Field(None, description="Accepted and ignored.")

    @field_validator("role")
    @classmethod
    def _known_role(cls, value: str) -> str:
        if value == "developer":
            return "system"
        if value not in ROLES:
            raise ValueError(f"role '{value}' is not supported; use system, user or assistant")
        return value

    @field_validator("content", mode="before")
    @classmethod
    def _text_parts(cls, value: Any) -> Any:
        if not isinstance(value, list):
            return value
        kinds = [part.get("type") if isinstance(part, dict) else type(part).__name__ for part in value]
        if any(kind != "text" or not isinstance(part.get("text"), str) for kind, part in zip(kinds, value)):
            raise ValueError(f"only text content parts ({{'type': 'text', 'text': ...}}) are supported; got {kinds}")
        return "".join(part["text"] for part in value)

    def plain(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content or ""}


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

    @field_validator("messages")
    @classmethod
    def _some_messages(cls, value: list[Message]) -> list[Message]:
        if not value:
            raise ValueError("messages must hold at least one message")
        return value

    @field_validator("stop")
    @classmethod
    def _stops(cls, value: str | list[str] | None) -> list[str]:
        stops = [value] if isinstance(value, str) else list(value or [])
        if len(stops) > MAX_STOPS or any(not s for s in stops):
            raise ValueError(f"stop must be up to {MAX_STOPS} non-empty strings")
        return stops

    def plain_messages(self) -> list[dict[str, str]]:
        return [m.plain() for m in self.messages]

    def options(self, max_tokens: int | None) -> dict[str, Any]:
        return {"max_tokens": max_tokens, "temperature": self.temperature, "top_p": self.top_p,
                "seed": self.seed, "stop": self.stop or []}


class LLMRequest(ChatFields):
    model: str | None = Field(None, description="Catalog id, alias or hub repo id; default the task's current "
                                 "model (GET /models/current).")
    max_tokens: int | None = Field(None, gt=0, description="Most tokens to generate.")


class StreamOptions(BaseModel):
    include_usage: bool = False


class TextFormat(BaseModel):
    """OpenAI's response_format, of the one type this service writes: plain text."""

    type: Literal["text"]


# OpenAI parameters this service does not implement: accepted only at their no-op value.
UNSUPPORTED = {"tools": None, "tool_choice": None, "functions": None, "function_call": None, "logprobs": False,
               "top_logprobs": None, "logit_bias": None, "audio": None, "prediction": None,
               "frequency_penalty": 0, "presence_penalty": 0, "web_search_options": None}


class OpenAIChatRequest(ChatFields):
    model: str
    max_tokens: int | None = Field(None, gt=0)
    max_completion_tokens: int | None = Field(None, gt=0, description="Takes precedence over max_tokens.")
    n: int = Field(1, ge=1, json_schema_extra={"maximum": 1}, description="Only 1.")  # checked by _one_choice
    stream: bool = False
    stream_options: StreamOptions | None = None
    response_format: TextFormat | None = Field(None, description="Only {'type': 'text'}.")
    modalities: list[Literal["text"]] | None = Field(None, min_length=1, max_length=1, description="Only ['text'].")
    user: str | None = None
    store: bool | None = None
    metadata: dict[str, str] | None = None
    service_tier: str | None = None
    parallel_tool_calls: bool | None = None
    reasoning_effort: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _unsupported(cls, data: Any) -> Any:
        if isinstance(data, dict):
            used = [key for key, idle in UNSUPPORTED.items() if data.get(key) not in (None, idle)]
            if used:
                raise ValueError(f"{', '.join(used)} {'is' if len(used) == 1 else 'are'} not supported by this service")
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


class LLMReply(BaseModel):
    success: bool
    response: str = Field(description="The answer.")
    model: str
    finish_reason: str = Field(description="stop (the model ended it or a stop text did) or length (max_tokens).")
    truncated: bool = Field(description="Cut by max_tokens: raise it for the rest.")
    usage: TokenUsage
    seed: int = Field(description="The seed it was sampled with: send it again for the same answer.")
    processing_time: float = Field(description="Seconds.")


class AssistantMessage(BaseModel):
    role: Literal["assistant"]
    content: str
    refusal: None


class ChatChoice(BaseModel):
    index: int
    message: AssistantMessage
    finish_reason: str = Field(description="stop or length.")
    logprobs: None


class ChatCompletion(BaseModel):
    """OpenAI's chat.completion (stream false)."""

    id: str
    created: int
    model: str = Field(description="Catalog id of the model that answered.")
    system_fingerprint: None
    object: Literal["chat.completion"]
    choices: list[ChatChoice] = Field(description="One (n=1).")
    usage: TokenUsage


class ProductDescriptionReply(ProductDescription):
    success: bool
    processing_time: float = Field(description="Seconds.")


CHAT_STREAM = ("stream true: OpenAI's chat.completion.chunk server-sent events (`data: {...}`), the last "
               "`data: [DONE]`; an error after the first event arrives as an event with `error` (sse.error_event).")


def _usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


async def _complete(services: Services, entry: ModelEntry, body: ChatFields, max_tokens: int | None) -> Completion:
    return await services.call(entry, "chat", body.plain_messages(), body.options(max_tokens), model=entry.id)


@router.post("/api/llm", responses=json_reply(LLMReply, "The answer.", headers={
    BATCH_HEADER: "Requests decoded together with this one."}))
async def llm(body: LLMRequest, services: Services = Depends(get_services)) -> JSONResponse:
    started = time.perf_counter()
    entry = services.model_for(TASK, body.model)
    done = await _complete(services, entry, body, body.max_tokens)
    return JSONResponse({
        "success": True,
        "response": done.content,
        "model": done.model,
        "finish_reason": done.finish_reason,
        "truncated": done.finish_reason == "length",  # cut by max_tokens: raise it for the rest
        "usage": _usage(done.prompt_tokens, done.completion_tokens),
        "seed": done.seed,
        "processing_time": round(time.perf_counter() - started, 4),
    }, headers={BATCH_HEADER: str(done.batch_size)})


@router.post("/v1/chat/completions", response_model=None, responses=json_reply(
    ChatCompletion, "The completion; with stream true, server-sent events instead.",
    headers={BATCH_HEADER: "Requests decoded together with this one (stream false)."},
    also={"text/event-stream": CHAT_STREAM}))
async def openai_chat(body: OpenAIChatRequest,
                      services: Services = Depends(get_services)) -> JSONResponse | StreamingResponse:
    entry = services.model_for(TASK, body.model)
    max_tokens = body.max_completion_tokens or body.max_tokens
    reply = {"id": f"chatcmpl-{uuid.uuid4().hex}", "created": int(time.time()), "model": entry.id,
             "system_fingerprint": None}
    if not body.stream:
        done = await _complete(services, entry, body, max_tokens)
        choice = {"index": 0, "message": {"role": "assistant", "content": done.content, "refusal": None},
                  "finish_reason": done.finish_reason, "logprobs": None}
        return JSONResponse({**reply, "object": "chat.completion", "choices": [choice],
                             "usage": _usage(done.prompt_tokens, done.completion_tokens)},
                            headers={BATCH_HEADER: str(done.batch_size)})
    # a bad request raises on the first item, while a 4xx can still be sent
    first, stream = await services.stream(entry, "chat_stream", body.plain_messages(), body.options(max_tokens),
                                          model=entry.id)
    usage = body.stream_options is not None and body.stream_options.include_usage
    return StreamingResponse(_events(reply, first, stream, usage), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache"})


async def _events(reply: dict, first: Started, steps: AsyncIterator[Step], include_usage: bool) -> AsyncIterator[str]:
    """OpenAI's server-sent events: the role, the content pieces, the finish reason, usage, [DONE]."""
    chunk = {**reply, "object": "chat.completion.chunk"} | ({"usage": None} if include_usage else {})

    def event(delta: dict, finish_reason: str | None = None) -> str:
        choice = {"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}
        return sse({**chunk, "choices": [choice]})

    yield event({"role": "assistant", "content": ""})
    last = None
    try:
        async for last in steps:
            if last.text:
                yield event({"content": last.text})
    except ServiceError as error:  # after the headers were sent, an error can only be an event
        yield error_event(error)
        yield sse("[DONE]")
        return
    yield event({}, last.finish_reason if last else "stop")
    if include_usage:
        tokens = last.completion_tokens if last else 0
        yield sse({**chunk, "choices": [], "usage": _usage(first.prompt_tokens, tokens)})
    yield sse("[DONE]")


@router.post("/api/product-description", response_model=Any,
             responses=json_reply(ProductDescriptionReply, "The product listing."))
async def product_description(body: ProductDescriptionRequest,
                              services: Services = Depends(get_services)) -> dict[str, Any]:
    """Seed 004's mistral-generate-description: title, description, keywords and suggested categories."""
    started = time.perf_counter()
    entry = services.model_for(TASK, body.model)
    result = await services.call(entry, "describe_product", body.model_dump(exclude={"model"}), model=entry.id)
    return {"success": True, **result, "processing_time": round(time.perf_counter() - started, 4)}


class ChatJob(ChatFields):
    max_tokens: int | None = Field(None, gt=0)


async def chat_job_input(services: Services, entry: ModelEntry, data: dict[str, Any]) -> dict[str, Any]:
    """A chat job's stored input (/api/v1/run): `messages` and sampling options, or a product description's
    `image_description`; checked against the model (template, context) now, with its seed fixed, so a
    re-run after a lost replica gives the same answer."""
    data = {key: value for key, value in data.items() if key != "model_variant"}
    seed = data.get("seed")
    if "image_description" in data:
        params = parse(ProductRequest, data)
        return params.model_dump() | {"seed": new_seed() if seed is None else params.seed}
    body = parse(ChatJob, data)
    options = body.options(body.max_tokens) | {"seed": new_seed() if seed is None else body.seed}
    await services.call(entry, "check", body.plain_messages(), options, model=entry.id)
    return ChatJobInput.model_validate({"messages": body.plain_messages(), **options}).model_dump()


JOBS = {TASK: JobInput(chat_job_input, (ChatJob, ProductRequest))}
TEXT_UPLOADS = (TASK,)  # an uploaded .txt file is the user's turn
