"""What the ingress may know of vision: the classify and describe job inputs, their limits and replies."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from deployments.media.images import ImageInfo

CLASSIFY, DESCRIBE = "image-classification", "image-to-text"


MAX_NEW_TOKENS = 512


class ClassifyInput(BaseModel):
    """A classification job's stored input (seed 004's /api/v1/run): an upload plus the options."""

    model_config = ConfigDict(extra="forbid")

    file_id: str | None = Field(None, description="The upload; an image_url is fetched and stored as one.")
    image_url: str | None = Field(None, description="Where the image was fetched from, if it was.")
    top_k: int = Field(5, ge=1, description="Labels to return, best first; at most the model's label count.")


class DescribeInput(BaseModel):
    """A description job's stored input: an upload plus the options."""

    model_config = ConfigDict(extra="forbid")

    file_id: str | None = None
    image_url: str | None = None
    prompt: str | None = Field(None, max_length=2000)
    max_tokens: int | None = Field(None, ge=1, le=MAX_NEW_TOKENS)


class Prediction(BaseModel):
    label: str
    score: float


class Classification(BaseModel):
    model: str
    predictions: list[Prediction] = Field(description="top_k labels, highest softmax score first.")
    top_k: int
    image: ImageInfo
    batch_size: int = Field(description="Images that shared the forward pass with this one.")


class Description(BaseModel):
    model: str
    description: str
    prompt: str | None = Field(description="The prompt the model was given (BLIP: the caption's prefix).")
    generated_tokens: int
    truncated: bool = Field(description="max_tokens (default_max_tokens when the request set none) cut the "
                            "description before the model ended it; ask again with more for the rest.")
    image: ImageInfo
    batch_size: int = Field(description="Images that shared the generate call with this one.")
