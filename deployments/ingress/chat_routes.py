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
from pydantic import BaseModel, Field

from deployments.errors import InvalidRequest, ServiceError
from deployments.families.chat.protocol import (
    TASK,
    ChatJobInput,
    Completion,
    ProductDescription,
    ProductRequest,
    Started,
    Step,
    TokenUsage,
    ToolCall,
)
from deployments.families.protocol import new_seed
from deployments.ingress.chat_images import chat_entry, takes_images, vision_request
from deployments.ingress.chat_requests import (
    ChatFields,
    ChatJob,
    LLMRequest,
    OpenAIChatRequest,
    ProductDescriptionRequest,
)
from deployments.ingress.http_errors import ERROR_RESPONSES
from deployments.ingress.replies import json_reply
from deployments.ingress.request_checks import JobInput, parse
from deployments.ingress.services import Services, get_services
from deployments.ingress.sse import error_event, sse
from registry import ModelEntry

router = APIRouter(tags=["chat"], responses=ERROR_RESPONSES)
BATCH_HEADER = "X-Batch-Size"  # requests decoded together with this one


class LLMReply(BaseModel):
    success: bool
    response: str = Field(description="The answer.")
    tool_calls: list[ToolCall] | None = Field(None, description="The calls, when the model answered with tools.")
    model: str
    finish_reason: str = Field(description="stop (the model ended it or a stop text did), length (max_tokens) "
                               "or tool_calls.")
    truncated: bool = Field(description="Cut by max_tokens: raise it for the rest.")
    usage: TokenUsage
    seed: int = Field(description="The seed it was sampled with: send it again for the same answer.")
    processing_time: float = Field(description="Seconds.")


class AssistantMessage(BaseModel):
    role: Literal["assistant"]
    content: str | None = Field(description="The answer's text; null when it is only tool calls.")
    refusal: None
    tool_calls: list[ToolCall] | None = Field(None, description="Present when the model called tools.")


class ChatChoice(BaseModel):
    index: int
    message: AssistantMessage
    finish_reason: str = Field(description="stop, length or tool_calls.")
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
    return await services.call(entry, "chat", *await _arguments(services, entry, body, max_tokens), model=entry.id)


async def _arguments(services: Services, entry: ModelEntry, body: ChatFields, max_tokens: int | None) -> tuple:
    """What `chat` and `chat_stream` take: (messages, options), or (messages, images, options) for a
    vision-language model."""
    if takes_images(entry):
        return await vision_request(services, entry, body, max_tokens)
    return body.plain_messages(), body.options(max_tokens)


@router.post("/api/llm", responses=json_reply(LLMReply, "The answer.", headers={
    BATCH_HEADER: "Requests decoded together with this one."}))
async def llm(body: LLMRequest, services: Services = Depends(get_services)) -> JSONResponse:
    started = time.perf_counter()
    entry = chat_entry(services, body, body.model)
    done = await _complete(services, entry, body, body.max_tokens)
    return JSONResponse({
        "success": True,
        "response": done.content,
        **({"tool_calls": done.tool_calls} if done.tool_calls else {}),
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
    entry = chat_entry(services, body, body.model)
    max_tokens = body.max_completion_tokens or body.max_tokens
    reply = {"id": f"chatcmpl-{uuid.uuid4().hex}", "created": int(time.time()), "model": entry.id,
             "system_fingerprint": None}
    if not body.stream:
        done = await _complete(services, entry, body, max_tokens)
        message = {"role": "assistant", "content": done.content or (None if done.tool_calls else ""),
                   "refusal": None} | ({"tool_calls": done.tool_calls} if done.tool_calls else {})
        choice = {"index": 0, "message": message, "finish_reason": done.finish_reason, "logprobs": None}
        return JSONResponse({**reply, "object": "chat.completion", "choices": [choice],
                             "usage": _usage(done.prompt_tokens, done.completion_tokens)},
                            headers={BATCH_HEADER: str(done.batch_size)})
    # a bad request raises on the first item, while a 4xx can still be sent
    first, stream = await services.stream(entry, "chat_stream", *await _arguments(services, entry, body, max_tokens),
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
    last, calls = None, 0
    try:
        async for last in steps:
            if last.text:
                yield event({"content": last.text})
            for call in last.tool_calls or ():  # each call whole, as soon as the model closes it
                yield event({"tool_calls": [{"index": calls, **call}]})
                calls += 1
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
    if body.images():
        raise InvalidRequest("A chat job takes text only; send images to /v1/chat/completions")
    options = body.options(body.max_tokens) | {"seed": new_seed() if seed is None else body.seed}
    await services.call(entry, "check", body.plain_messages(), options, model=entry.id)
    stored = ChatJobInput.model_validate({"messages": body.plain_messages(), **options})
    return stored.model_dump() | {"messages": [m.model_dump(exclude_none=True) for m in stored.messages]}


JOBS = {TASK: JobInput(chat_job_input, (ChatJob, ProductRequest))}
TEXT_UPLOADS = (TASK,)  # an uploaded .txt file is the user's turn
