"""POST /api/embedding (seed 003) and POST /v1/embeddings (OpenAI shape)."""

from __future__ import annotations

import base64
import time
from typing import Any, Literal

import numpy as np
from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from deployments.errors import InvalidRequest
from deployments.families.embedding.protocol import Embeddings
from deployments.ingress.http_errors import ERROR_RESPONSES
from deployments.ingress.replies import Absent, json_reply
from deployments.ingress.request_checks import NONBLANK, JobInput, parse
from deployments.ingress.services import Services, get_services
from registry import ModelEntry

TASK = "text-embedding"
# What _texts lets through, for the spec: a text that is not blank, or a non-empty list of them.
TEXTS = {"anyOf": [{"type": "string", "pattern": NONBLANK},
                   {"type": "array", "items": {"type": "string", "pattern": NONBLANK}, "minItems": 1}]}
router = APIRouter(tags=["embeddings"], responses=ERROR_RESPONSES)


def _texts(value: Any, handler, field: str) -> str | list[str]:
    """Parse a string or a list of strings, with a message that says which item is wrong."""
    try:
        parsed = handler(value)
    except ValidationError:
        raise ValueError(f"{field} must be a string or a list of strings") from None
    items = [parsed] if isinstance(parsed, str) else parsed
    if not items:
        raise ValueError(f"{field} must not be an empty list")
    blank = [i for i, text in enumerate(items) if not text.strip()]
    if blank:
        where = field if isinstance(parsed, str) else f"{field}[{blank[0]}]"
        raise ValueError(f"{where} must not be empty")
    return parsed


class EmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str | list[str] = Field(json_schema_extra=TEXTS, description="One text, or a list of texts embedded "
                                  "in order (at most the model's max_inputs).")
    model: str | None = Field(None, description="Catalog id, alias or hub repo id; default the task's current "
                                 "model (GET /models/current).")

    @field_validator("text", mode="wrap")
    @classmethod
    def _check_text(cls, value, handler):
        return _texts(value, handler, "text")


class OpenAIEmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    input: str | list[str] = Field(json_schema_extra=TEXTS, description="Text or list of texts (token arrays "
                                   "are not accepted; at most the model's max_inputs).")
    model: str
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, gt=0, description="Must equal the model's own dimensions.")
    user: str | None = None

    @field_validator("input", mode="wrap")
    @classmethod
    def _check_input(cls, value, handler):
        return _texts(value, handler, "input")


class EmbeddingUsage(BaseModel):
    prompt_tokens: int = Field(description="Tokens the model read (after truncation to max_input_tokens).")
    total_tokens: int


class EmbeddingReply(BaseModel):
    """`text` as a string gives `embedding`; as a list, `embeddings` (in order)."""

    success: bool
    model: str
    dimensions: int
    embedding: list[float] | Absent = Field(None, description="The vector (L2-normalized), for one text.")
    embeddings: list[list[float]] | Absent = Field(None, description="One vector per text, for a list.")
    usage: EmbeddingUsage
    processing_time: float = Field(description="Seconds.")


class OpenAIEmbedding(BaseModel):
    object: Literal["embedding"]
    index: int
    embedding: list[float] | str = Field(description="The vector; base64 of little-endian float32 with "
                                         "encoding_format base64.")


class OpenAIEmbeddingList(BaseModel):
    object: Literal["list"]
    data: list[OpenAIEmbedding]
    model: str
    usage: EmbeddingUsage


async def _embed(services: Services, model: str | None, texts: list[str]) -> Embeddings:
    entry = services.model_for(TASK, model)
    limit = entry.specs.max_inputs
    if limit and len(texts) > limit:
        raise InvalidRequest(
            f"Too many inputs: {len(texts)}; model '{entry.id}' accepts at most {limit} per request"
        )
    return await services.call(entry, "embed", texts, model=entry.id)


@router.post("/api/embedding", response_model=Any, responses=json_reply(EmbeddingReply, "The vectors."))
async def create_embedding(body: EmbeddingRequest, services: Services = Depends(get_services)) -> dict[str, Any]:
    started = time.perf_counter()
    single = isinstance(body.text, str)
    result = await _embed(services, body.model, [body.text] if single else body.text)
    vectors = {"embedding": result.vectors[0]} if single else {"embeddings": result.vectors}
    return {
        "success": True,
        "model": result.model,
        "dimensions": result.dimensions,
        **vectors,
        "usage": {"prompt_tokens": sum(result.token_counts), "total_tokens": sum(result.token_counts)},
        "processing_time": round(time.perf_counter() - started, 4),
    }


@router.post("/v1/embeddings", response_model=Any,
             responses=json_reply(OpenAIEmbeddingList, "The vectors, in OpenAI's shape."))
async def create_openai_embeddings(
    body: OpenAIEmbeddingRequest, services: Services = Depends(get_services)
) -> dict[str, Any]:
    texts = [body.input] if isinstance(body.input, str) else body.input
    result = await _embed(services, body.model, texts)
    if body.dimensions is not None and body.dimensions != result.dimensions:
        raise InvalidRequest(
            f"dimensions={body.dimensions} is not supported by model '{result.model}', "
            f"which returns {result.dimensions}-dimensional vectors"
        )

    def encode(vector: list[float]) -> list[float] | str:
        if body.encoding_format == "float":
            return vector
        return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode()

    tokens = sum(result.token_counts)
    return {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": encode(v)} for i, v in enumerate(result.vectors)],
        "model": result.model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


async def _embedding_job_input(services: Services, entry: ModelEntry, data: dict[str, Any]) -> dict[str, Any]:
    request = parse(EmbeddingRequest, data)
    return {"texts": [request.text] if isinstance(request.text, str) else request.text}


JOBS = {TASK: JobInput(_embedding_job_input, (EmbeddingRequest,))}
TEXT_UPLOADS = (TASK,)  # an uploaded .txt file is the text to embed
