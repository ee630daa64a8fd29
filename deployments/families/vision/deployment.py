"""Vision: image classification (ResNet, ViT) and image description (BLIP captions, Qwen2-VL).

Images are decoded here in the replica with Pillow, before a request joins a batch, so an unreadable
image fails only its own request. Requests that arrive together share a model call (`@serve.batch`):
classification is one forward pass per model; description is one `generate` per model (per prompt
for BLIP, whose prompt is a text prefix that every row of a call shares). Vision-language chat turns
that arrive while one decodes share the next `generate` (chat_turn.TurnBatcher).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import partial
from typing import Any, cast

from pydantic import Field, ValidationError
from ray import serve

from deployments.errors import InvalidRequest
from deployments.families.chat.constraints import json_grammar
from deployments.families.chat.decoding import Row, RowState
from deployments.families.chat.protocol import ChatOptions, Completion, Started, Step, tool_models
from deployments.families.protocol import new_seed, validation_problems
from deployments.families.vision import protocol
from deployments.families.vision.chat_turn import TurnBatcher, turn_steps
from deployments.families.vision.engines import load_engine
from deployments.families.vision.protocol import (
    CLASSIFY,
    DESCRIBE,
    Classification,
    Description,
    Prediction,
)
from deployments.media.images import open_image
from deployments.serving.batching import BatchConfig, raise_failed, run_in_groups
from deployments.serving.model_loading import FamilyDeployment, generation_dtype
from deployments.serving.torch_threads import run_inference
from deployments.settings import ServiceSettings
from deployments.state.runner import JobContext
from registry import Catalog, ModelEntry

logger = logging.getLogger(__name__)

MAX_BATCH_SIZE = 32  # upper bound of user_config's max_batch_size; max_ongoing_requests is twice this


class VisionConfig(BatchConfig):
    """`user_config` of the deployment: images per model call, and the descriptions' default length."""

    default_batch, default_wait_s, largest_batch = 8, 0.01, MAX_BATCH_SIZE
    default_max_tokens: int = Field(256, ge=1, le=protocol.MAX_NEW_TOKENS, description="Tokens a description may "
                                    "generate when the request sets no max_tokens.")


@dataclass
class _Item:
    """One request's image as queued for batching."""

    model: str
    image: Any
    prompt: str | None = None
    max_tokens: int = 0


# max_ongoing_requests must be at least the batch size, or @serve.batch never fills a batch.
@serve.deployment(max_ongoing_requests=2 * MAX_BATCH_SIZE, health_check_period_s=5)
class VisionDeployment(FamilyDeployment):
    config_class, batched_methods = VisionConfig, ("_classify_batch", "_describe_batch")

    def __init__(self, catalog: Catalog, settings: ServiceSettings, model_id: str | None = None):
        super().__init__(catalog, settings, model_id)
        self._turns = TurnBatcher()  # vision-language chat turns waiting for a generate

    async def classify(self, image: bytes, top_k: int = 5, name: str = "image", *,
                       model: str | None = None) -> Classification:
        """The `top_k` most likely labels (fewer if the model has fewer) with softmax scores."""
        entry = self._entry(model, CLASSIFY)
        if top_k < 1:
            raise InvalidRequest(f"top_k must be at least 1; got {top_k}")
        decoded, info = await asyncio.to_thread(open_image, image, name)
        classifier = await self._models.get(entry)  # loaded before joining a batch: a failed load fails only its own
        probabilities, batch_size = raise_failed(await self._classify_batch(_Item(entry.id, decoded)))
        k = min(top_k, len(probabilities))
        best = sorted(range(len(probabilities)), key=lambda i: -probabilities[i])[:k]
        predictions = [Prediction(label=classifier.labels[i], score=probabilities[i]) for i in best]
        return Classification(model=entry.id, predictions=predictions, top_k=k, image=info, batch_size=batch_size)

    async def describe(self, image: bytes, prompt: str | None = None, max_tokens: int | None = None,
                       name: str = "image", *, model: str | None = None) -> Description:
        """A description of the image, guided by `prompt` (BLIP: the caption starts with it)."""
        entry = self._entry(model, DESCRIBE)
        if max_tokens is not None and not 1 <= max_tokens <= protocol.MAX_NEW_TOKENS:
            raise InvalidRequest(f"max_tokens must be between 1 and {protocol.MAX_NEW_TOKENS}; got {max_tokens}")
        prompt = prompt.strip() if prompt and prompt.strip() else None
        decoded, info = await asyncio.to_thread(open_image, image, name)
        engine = await self._models.get(entry)
        prompt = prompt or engine.default_prompt
        item = _Item(entry.id, decoded, prompt, max_tokens or self._config.default_max_tokens)
        text, tokens, truncated, batch_size = raise_failed(await self._describe_batch(item))
        return Description(model=entry.id, description=text, prompt=prompt, generated_tokens=tokens,
                           truncated=truncated, image=info, batch_size=batch_size)

    async def chat(self, messages: list[dict], images: list[bytes], options: dict[str, Any], *,
                   model: str | None = None) -> Completion:
        """A chat completion from a vision-language model: `messages` whose content is a list of text and
        {'type': 'image'} parts, `images` in the order of those parts; `options` as the chat family's
        (sampling, stop, response_format; tools are the chat models')."""
        stream = self.chat_stream(messages, images, options, model=model)
        started = await anext(stream)
        assert isinstance(started, Started)
        return await Completion.collected(started, cast(AsyncIterator[Step], stream))

    async def chat_stream(self, messages: list[dict], images: list[bytes], options: dict[str, Any], *,
                          model: str | None = None) -> AsyncIterator[Started | Step]:
        """`Started`, then the answer's Steps as they are decoded; a bad request raises before anything is
        yielded (the caller can still answer with a 4xx)."""
        entry = self._entry(model, DESCRIBE)
        try:
            params = ChatOptions.model_validate(options)
        except ValidationError as bad:
            raise InvalidRequest(f"Invalid request: {validation_problems(bad, 'request')}") from None
        if params.tools:
            raise InvalidRequest(f"Model '{entry.id}' takes no tools; chat models that do: "
                                 f"{tool_models(self._catalog)}")
        decoded = [(await asyncio.to_thread(open_image, image, f"image {i + 1}"))[0] for i, image in enumerate(images)]
        engine = await self._models.get(entry)
        if not hasattr(engine, "chat_inputs"):
            raise InvalidRequest(f"Model '{entry.id}' describes images but does not chat")
        inputs = await run_inference(engine.chat_inputs, [messages], decoded)  # alone: its own length
        prompt_tokens = int(inputs["input_ids"].shape[1])
        room = engine.chat_model.context_length - prompt_tokens
        if room <= 0 or (params.max_tokens or 0) > room:
            raise InvalidRequest(f"The prompt is {prompt_tokens} tokens (images included); model '{entry.id}' reads "
                                 f"at most {engine.chat_model.context_length} tokens including the answer")
        grammar = None
        if params.response_format is not None and params.response_format.type != "text":
            form = params.response_format.json_schema
            grammar = await asyncio.to_thread(json_grammar, form.schema_ if form is not None else None,
                                              engine.chat_model.grammar_tokenizer, "response_format's schema")
        seed = new_seed() if params.seed is None else params.seed
        row = Row(model=entry.id, prompt_ids=inputs["input_ids"][0].tolist(), seed=seed, stop=params.stop,
                  max_tokens=min(params.max_tokens or self._config.default_max_tokens, room),
                  temperature=params.temperature or 0.0, top_p=params.top_p or 1.0, top_k=0, grammar=grammar)
        yield Started(entry.id, prompt_tokens, seed)
        submit = partial(self._turns.submit, engine, max_batch=self._config.max_batch_size)
        async for step in turn_steps(messages, decoded, RowState(row, engine.chat_model), submit):
            yield step

    async def run_job(self, job_id: str) -> str:
        """Classification or description as a queued job (seed 004's /api/v1/run): the result is its output."""
        return await self._jobs.run(job_id, self._vision_job)

    async def _vision_job(self, context: JobContext) -> dict[str, Any]:
        job = context.job
        schema = protocol.ClassifyInput if job.task == CLASSIFY else protocol.DescribeInput
        params = schema.model_validate(job.input)
        upload = await asyncio.to_thread(self._store.get_upload, params.file_id) if params.file_id else None
        if upload is None:
            raise InvalidRequest(f"Upload '{params.file_id}' no longer exists")
        data = await asyncio.to_thread(self._store.read_upload, upload)
        context.report(0.0, "classifying" if job.task == CLASSIFY else "describing")
        if job.task == CLASSIFY:
            result = await self.classify(data, params.top_k, upload.filename, model=job.model)
        else:
            result = await self.describe(data, params.prompt, params.max_tokens, upload.filename, model=job.model)
        context.report(1.0, "done")
        return result.model_dump(exclude={"batch_size"})

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.01)
    async def _classify_batch(self, items: list[_Item]) -> list[tuple[list[float], int] | Exception]:
        """(softmax over the labels, images in the call) per item; one forward pass per model."""
        async def classify(group: list[_Item]) -> list[tuple[list[float], int]]:
            classifier = await self._models.get(self._catalog.models[group[0].model])
            rows = await run_inference(classifier.probabilities, [item.image for item in group])
            return [(row, len(group)) for row in rows]

        return await run_in_groups(items, lambda item: item.model, classify, "image classification")

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.01)
    async def _describe_batch(self, items: list[_Item]) -> list[tuple[str, int, bool, int] | Exception]:
        """(text, generated tokens, cut by max_tokens, images in the call) per item; one generate per model
        (and BLIP prompt). Each row is cut to its own max_tokens; greedy decoding makes that equal to stopping there."""
        engines = {}
        for item in items:
            engines[item.model] = await self._models.get(self._catalog.models[item.model])

        async def describe(group: list[_Item]) -> list[tuple[str, int, bool, int]]:
            rows = await run_inference(engines[group[0].model].describe, [it.image for it in group],
                                       [it.prompt for it in group], [it.max_tokens for it in group])
            return [(*row, len(group)) for row in rows]

        return await run_in_groups(items, lambda item: (item.model, engines[item.model].batch_key(item.prompt)),
                                   describe, "image description")

    def _load(self, entry: ModelEntry, paths: dict[str, str]):
        return load_engine(entry, self._catalog.task_of(entry) == CLASSIFY, paths["weights"], self._device,
                           generation_dtype(self._device, self._settings))
