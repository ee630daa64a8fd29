"""Chat completion with a causal LM and its tokenizer's chat template, continuously batched across requests.

Every request, streamed or not, becomes one `Row` that the replica's `Scheduler` lets join its model's
running batch between two decoding steps (decoding.py); tools and response formats become a grammar the
row's tokens are held to (constraints.py, tools.py). The product-description service (seed 004,
product.py) is a chat request under the listing's JSON schema; see `describe_product`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, Literal

from pydantic import Field, ValidationError
from ray import serve

from deployments.errors import BadModelOutput, InvalidRequest
from deployments.families.chat.constraints import Grammar, json_grammar
from deployments.families.chat.decoding import ChatModel, Row
from deployments.families.chat.product import (
    JSON_INSTRUCTION,
    LISTING_SCHEMA,
    ProductRequest,
    parse_listing,
    product_messages,
)
from deployments.families.chat.protocol import (
    TASK,
    ChatJobInput,
    ChatMessage,
    ChatOptions,
    Completion,
    NamedToolChoice,
    Started,
    Step,
    tool_models,
)
from deployments.families.chat.scheduler import Scheduler
from deployments.families.chat.tools import STYLES, template_messages
from deployments.families.protocol import new_seed, validation_problems
from deployments.serving.batching import BatchConfig
from deployments.serving.model_loading import FamilyDeployment, generation_dtype
from deployments.state.runner import JobContext
from registry import ModelEntry

MAX_BATCH_SIZE = 32  # upper bound of user_config's max_batch_size; max_ongoing_requests is twice this
# A listing's tokens at most (within the model's context): LISTING_SCHEMA's bounds are ~600 characters of JSON,
# and a model that writes odd characters byte by byte may spend more than one token on each.
PRODUCT_MAX_TOKENS = 2048


class ChatConfig(BatchConfig):
    """`user_config` of the deployment: rows decoded together, how they join, and the chat's own defaults."""

    default_batch, default_wait_s, largest_batch = 8, 0.02, MAX_BATCH_SIZE
    scheduling: Literal["continuous", "static"] = Field(
        "continuous", description="continuous: a request joins the running batch at the next step and leaves "
        "when done; static: a batch admits nobody until all its requests are done (to compare against).")
    default_max_tokens: int = Field(512, gt=0, description="max_tokens when a request gives none.")


# max_ongoing_requests: rows decoding plus as many waiting to join.
@serve.deployment(max_ongoing_requests=2 * MAX_BATCH_SIZE, health_check_period_s=5)
class ChatDeployment(FamilyDeployment):
    config_class = ChatConfig

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._scheduler = Scheduler(self._loaded, self._device, lambda: self._config)

    async def chat(self, messages: list[dict], options: ChatOptions | dict | None = None, *,
                   model: str | None = None) -> Completion:
        """The whole answer to `messages` (a list of {role, content})."""
        started, row = await self._prepare(model, messages, options)
        return await self._complete(started, row)

    async def chat_stream(self, messages: list[dict], options: ChatOptions | dict | None = None, *,
                          model: str | None = None) -> AsyncIterator[Started | Step]:
        """`Started`, then the answer's `Step`s as they are decoded; errors in the request raise before
        anything is yielded, so the caller can still answer with a 4xx."""
        started, row = await self._prepare(model, messages, options)
        yield started
        async for step in self._scheduler.run(row):
            yield step

    async def check(self, messages: list[dict], options: ChatOptions | dict | None = None, *,
                    model: str | None = None) -> int:
        """Raise what `chat` would for a bad request (template, context) without decoding; the prompt's tokens."""
        started, _ = await self._prepare(model, messages, options)
        return started.prompt_tokens

    async def describe_product(self, request: ProductRequest | dict, *, model: str | None = None) -> dict[str, Any]:
        """Seed 004: a product listing (title, description, keywords, categories) from an image description,
        written under the listing's JSON schema, so it parses whatever the model's weights; a 502 only if the
        answer is cut by the model's context."""
        request = ProductRequest.model_validate(request)
        seed = new_seed() if request.seed is None else request.seed
        started, row = await self._prepare(model, product_messages(request, JSON_INSTRUCTION), {
            "seed": seed, "temperature": request.temperature, "response_format": {
                "type": "json_schema", "json_schema": {"name": "product_listing", "schema": LISTING_SCHEMA}}},
            default_max_tokens=PRODUCT_MAX_TOKENS)
        done = await self._complete(started, row)
        try:
            listing = parse_listing(done.content)
        except ValueError as bad:
            raise BadModelOutput(f"Model '{done.model}' gave no usable product description (seed {seed}, "
                                 f"{done.completion_tokens} tokens, finish {done.finish_reason}): {bad}") from None
        return {"model": done.model, "mode": request.mode, "product": listing.model_dump(), "attempts": 1,
                "seed": seed, "usage": {"prompt_tokens": done.prompt_tokens,
                                        "completion_tokens": done.completion_tokens,
                                        "total_tokens": done.prompt_tokens + done.completion_tokens}}

    async def run_job(self, job_id: str) -> str:
        """A chat completion or product description as a queued job (seed 004's /api/v1/run)."""
        return await self._jobs.run(job_id, self._job)

    async def _job(self, context: JobContext) -> dict[str, Any]:
        data = context.job.input
        context.report(0.0, "generating")
        if "image_description" in data:
            return await self.describe_product(data, model=context.job.model)
        params = ChatJobInput.model_validate(data)
        done = await self.chat([m.model_dump() for m in params.messages], params.model_dump(exclude={"messages"}),
                               model=context.job.model)
        return done.output()

    # ------------------------------------------------------------ requests -> rows

    async def _prepare(self, model: str | None, messages: list[dict], options,
                       default_max_tokens: int | None = None) -> tuple[Started, Row]:
        """Check the request against the loaded model (template, context, tools, format) and make its row."""
        entry = self._entry(model, TASK)
        try:  # callers through a Python handle skip the ingress' checks
            options = ChatOptions.model_validate(options or {})
            messages = [ChatMessage.model_validate(m).model_dump(exclude_none=True) for m in messages]
        except ValidationError as bad:
            raise InvalidRequest(f"Invalid request: {validation_problems(bad, 'request')}") from None
        if not messages:
            raise InvalidRequest("messages must hold at least one message")
        # Loaded before joining a batch: a failed load fails only its own requests.
        chat_model = await self._models.get(entry)
        if options.tools and chat_model.tool_style is None:
            raise InvalidRequest(f"Model '{entry.id}' does not take tools; models that do: "
                                 f"{tool_models(self._catalog)}")
        tools = [tool.model_dump(exclude_none=True) for tool in options.tools]
        prompt_ids = _render(entry, chat_model.tokenizer, messages, tools)
        room = chat_model.context_length - len(prompt_ids)
        if room <= 0:
            raise InvalidRequest(f"The prompt is {len(prompt_ids)} tokens; model '{entry.id}' reads at most "
                                 f"{chat_model.context_length} tokens including the answer")
        if options.max_tokens is not None and options.max_tokens > room:
            raise InvalidRequest(f"max_tokens {options.max_tokens} is too large: the prompt is {len(prompt_ids)} "
                                 f"tokens and model '{entry.id}' has a context of {chat_model.context_length} "
                                 f"tokens, so at most {room} can be generated")
        grammar, calls, banned = await asyncio.to_thread(_constraints, chat_model, options, tools)
        defaults = chat_model.model.generation_config
        sampled = getattr(defaults, "do_sample", False)
        temperature = options.temperature
        if temperature is None:
            temperature = (getattr(defaults, "temperature", None) or 1.0) if sampled else 0.0
        seed = new_seed() if options.seed is None else options.seed
        row = Row(model=entry.id, prompt_ids=prompt_ids,
                  max_tokens=options.max_tokens or min(room, default_max_tokens or self._config.default_max_tokens),
                  temperature=temperature,
                  top_p=options.top_p or (getattr(defaults, "top_p", None) or 1.0 if sampled else 1.0),
                  top_k=(getattr(defaults, "top_k", None) or 0) if sampled else 0,
                  seed=seed, stop=options.stop, grammar=grammar, tools=calls, banned=banned)
        return Started(entry.id, len(prompt_ids), seed), row

    async def _complete(self, started: Started, row: Row) -> Completion:
        return await Completion.collected(started, self._scheduler.run(row))

    async def _loaded(self, model_id: str) -> ChatModel:
        return await self._models.get(self._catalog.models[model_id])

    def _load(self, entry: ModelEntry, paths: dict[str, str]) -> ChatModel:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        dtype = generation_dtype(self._device, self._settings)
        tokenizer = AutoTokenizer.from_pretrained(paths["weights"], local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(paths["weights"], dtype=dtype, local_files_only=True)
        model = model.to(self._device).eval()
        eos = model.generation_config.eos_token_id
        eos_ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        if tokenizer.eos_token_id is not None:
            eos_ids.add(tokenizer.eos_token_id)
        limits = [n for n in (entry.specs.context_length, getattr(model.config, "max_position_embeddings", None)) if n]
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(eos_ids, default=0)
        style = STYLES[entry.specs.tool_calls] if entry.specs.tool_calls else None
        return ChatModel(tokenizer, model, eos_ids, pad, min(limits) if limits else 4096, style)


def _render(entry: ModelEntry, tokenizer, messages: list[dict], tools: list[dict]) -> list[int]:
    """The prompt's token ids, as the model's own chat template writes the conversation (and the tools)."""
    from jinja2 import TemplateError

    if getattr(tokenizer, "chat_template", None) is None:
        raise InvalidRequest(f"Model '{entry.id}' has no chat template")
    try:
        text = tokenizer.apply_chat_template(template_messages(messages), tools=tools or None, tokenize=False,
                                             add_generation_prompt=True)
    except TemplateError as bad:
        raise InvalidRequest(f"The chat template of model '{entry.id}' rejected the messages: {bad}") from None
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def _constraints(chat_model: ChatModel, options: ChatOptions,
                 tools: list[dict]) -> tuple[Grammar | None, Grammar | None, list[int]]:
    """(the grammar of the whole answer, the tool calls' grammar once the model opens one, banned tokens)
    for the request's response_format and tool_choice."""
    tokenizer, style, choice = chat_model.grammar_tokenizer, chat_model.tool_style, options.tool_choice
    answer = None
    if options.response_format is not None and options.response_format.type != "text":
        form = options.response_format.json_schema
        answer = json_grammar(form.schema_ if form is not None else None, tokenizer, "response_format's schema")
    if not tools or style is None:
        return answer, None, []
    if choice == "none":
        opener = tokenizer.token_id(style.opener)
        return answer, None, [] if opener is None else [opener]
    name = choice.function.name if isinstance(choice, NamedToolChoice) else None
    calls = style.grammar(tokenizer, tools, name, options.parallel_tool_calls)
    if choice == "required" or name is not None:
        return calls, None, []
    return answer, calls, []
