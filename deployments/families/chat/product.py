"""Seed 004's product-description service: what a listing must hold, the schema the model writes it under,
the prompt that asks for one, and the parsing of its answer. `ChatDeployment.describe_product` runs them."""

from __future__ import annotations

import json
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from deployments.families.protocol import validation_problems


class ProductListing(BaseModel):
    """What a product description must hold; the model's answer is only returned once it validates."""

    model_config = ConfigDict(extra="ignore")

    title: str = Field(min_length=1, max_length=300)
    description: str = Field(min_length=1)
    keywords: list[str] = Field(min_length=1, max_length=20)
    suggested_categories: list[str] = Field(min_length=1, max_length=10)

    @field_validator("title", "description")
    @classmethod
    def _one_line(cls, value: str) -> str:
        return " ".join(value.split())

    @field_validator("keywords", "suggested_categories")
    @classmethod
    def _names(cls, value: list[str]) -> list[str]:
        items = [" ".join(str(v).split()) for v in value]
        if any(not item for item in items):
            raise ValueError("items must not be empty")
        return list(dict.fromkeys(items))


class ProductRequest(BaseModel):
    """Seed 004's mistral-generate-description input, plus how the answer is produced."""

    model_config = ConfigDict(extra="forbid")

    image_description: str = Field(min_length=1, max_length=4000, description="What the product image shows.")
    prompt: str | None = Field(None, max_length=2000, description="Extra instruction for the writer.")
    mode: Literal["guided", "json"] = Field("guided", description="Kept for older clients: both write the JSON "
                                            "under the listing's schema, enforced while decoding.")
    temperature: float | None = Field(None, ge=0, le=2)
    seed: int | None = Field(None, ge=0, le=2**62)

    @field_validator("image_description")
    @classmethod
    def _nonblank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("image_description must not be empty")
        return value


SHOP_WRITER = "You write listings for an online shop: accurate, concise, no invented facts."
JSON_INSTRUCTION = ('Answer with one JSON object and nothing else: {"title": string, "description": string, '
                    '"keywords": [strings], "suggested_categories": [strings]}.')
# One line of text that starts and ends with a non-space (so it survives ProductListing's normalising).
_LINE = r"^\S([^\n]*\S)?$"
# What the model is held to while it writes (constraints.py): ProductListing's shape, with bounds that keep
# the whole answer within a few hundred tokens even when a model never closes a string on its own.
LISTING_SCHEMA = {
    "type": "object", "additionalProperties": False,
    "required": ["title", "description", "keywords", "suggested_categories"],
    "properties": {
        "title": {"type": "string", "maxLength": 60, "pattern": _LINE},
        "description": {"type": "string", "maxLength": 240, "pattern": _LINE},
        "keywords": {"type": "array", "minItems": 1, "maxItems": 6,
                     "items": {"type": "string", "maxLength": 24, "pattern": _LINE}},
        "suggested_categories": {"type": "array", "minItems": 1, "maxItems": 3,
                                 "items": {"type": "string", "maxLength": 24, "pattern": _LINE}},
    },
}


def product_messages(request: ProductRequest, instruction: str) -> list[dict[str, str]]:
    extra = f"\n{request.prompt.strip()}" if request.prompt and request.prompt.strip() else ""
    return [{"role": "system", "content": SHOP_WRITER},
            {"role": "user", "content": f"Product image: {request.image_description.strip()}{extra}\n\n{instruction}"}]


def parse_listing(answer: str) -> ProductListing:
    """The JSON object in a model's answer, validated; ValueError saying what is wrong otherwise."""
    start, end = answer.find("{"), answer.rfind("}")
    if start < 0 or end < start:
        raise ValueError("the answer holds no JSON object")
    try:
        data = json.loads(answer[start:end + 1])
    except json.JSONDecodeError as bad:
        raise ValueError(f"the answer's JSON is invalid ({bad})") from None
    try:
        return ProductListing.model_validate(data)
    except ValidationError as bad:
        problems = validation_problems(bad, "object")
        raise ValueError(f"the answer's JSON is not a product description ({problems})") from None


