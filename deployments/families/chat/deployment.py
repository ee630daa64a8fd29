"""Chat completion with a causal LM and its tokenizer's chat template, batched across requests.

Every request, streamed or not, becomes one `Row` in a `@serve.batch` async generator: the rows of a
batch are left-padded into one prefill, then decoded one token per row per step with a shared KV
cache, and each step yields every row's new text (Ray hands each caller its own slot; a finished
row's slot is `StopIteration`). Each row samples with its own seeded `torch.Generator`, so its
tokens do not depend on its batch neighbours, and a plain reply is exactly the concatenation of
the pieces a stream with the same seed sends.

The product-description service (seed 004, deployments/families/chat/product.py) runs on the same rows; see
`describe_product`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from pydantic import Field, ValidationError
from ray import serve

from deployments.errors import BadModelOutput, InvalidRequest
from deployments.families.chat.product import (
    FIELDS,
    JSON_INSTRUCTION,
    ProductListing,
    ProductRequest,
    parse_listing,
    product_messages,
    split_list,
)
from deployments.families.chat.protocol import (
    TASK,
    ChatJobInput,
    ChatMessage,
    Completion,
    SamplingOptions,
    Started,
    Step,
)
from deployments.families.protocol import new_seed
from deployments.serving.batching import BatchConfig
from deployments.serving.model_loading import FamilyDeployment
from deployments.state.runner import JobContext
from registry import ModelEntry

MAX_BATCH_SIZE = 32  # upper bound of user_config's max_batch_size; max_ongoing_requests is twice this








class ChatConfig(BatchConfig):
    """`user_config` of the deployment: requests decoded together, and the chat's own defaults."""

    default_batch, default_wait_s, largest_batch = 8, 0.02, MAX_BATCH_SIZE
    default_max_tokens: int = Field(512, gt=0, description="max_tokens when a request gives none.")
    product_attempts: int = Field(3, gt=0, le=10, description="Tries (new seed each) for a usable product answer.")


@dataclass
class ChatModel:
    tokenizer: Any
    model: Any
    eos_ids: set[int]
    pad_id: int
    context_length: int
    _wordy_tokens: Any = None  # ids of tokens whose text (before a newline) has a letter or digit

    def wordy_tokens(self):
        import torch

        if self._wordy_tokens is None:
            texts = self.tokenizer.batch_decode([[i] for i in range(len(self.tokenizer))])
            self._wordy_tokens = torch.tensor([i for i, t in enumerate(texts)
                                               if i not in self.tokenizer.all_special_ids
                                               and any(c.isalnum() for c in t.split("\n")[0])])
        return self._wordy_tokens


@dataclass
class Row:
    """One request as it joins a batch."""

    model: str
    prompt_ids: list[int]
    max_tokens: int
    temperature: float
    top_p: float
    top_k: int
    seed: int
    stop: list[str]
    first_tokens: Any = None  # a tensor of ids the first token must be one of (guided product fields)
    abandoned: bool = False  # its caller went away (a closed stream): the batch stops decoding it








# ---------------------------------------------------------------- the deployment

# max_ongoing_requests must be at least the batch size, or @serve.batch never fills a batch.
@serve.deployment(max_ongoing_requests=2 * MAX_BATCH_SIZE, health_check_period_s=5)
class ChatDeployment(FamilyDeployment):
    config_class, batched_methods = ChatConfig, ("_decode_batch",)

    async def chat(self, messages: list[dict], options: SamplingOptions | dict | None = None, *,
                   model: str | None = None) -> Completion:
        """The whole answer to `messages` (a list of {role, content})."""
        started, row = await self._prepare(model, messages, options)
        return await self._complete(started, row)

    async def chat_stream(self, messages: list[dict], options: SamplingOptions | dict | None = None, *,
                          model: str | None = None) -> AsyncIterator[Started | Step]:
        """`Started`, then the answer's `Step`s as they are decoded; errors in the request raise before
        anything is yielded, so the caller can still answer with a 4xx."""
        started, row = await self._prepare(model, messages, options)
        yield started
        async for step in self._rows_steps(row):
            yield step

    async def check(self, messages: list[dict], options: SamplingOptions | dict | None = None, *,
                    model: str | None = None) -> int:
        """Raise what `chat` would for a bad request (template, context) without decoding; the prompt's tokens."""
        started, _ = await self._prepare(model, messages, options)
        return started.prompt_tokens

    async def describe_product(self, request: ProductRequest | dict, *, model: str | None = None) -> dict[str, Any]:
        """Seed 004: a product listing (title, description, keywords, categories) from an image description.

        guided: four rows (one per field) decoded together, each field's first token forced to hold a
        letter or digit and each ending at its stop text; the service assembles the JSON, so the
        result always validates. json: the model writes the whole object; an answer that does not
        parse or validate is retried with the next seed, `product_attempts` times, then a 502."""
        request = ProductRequest.model_validate(request)
        seed = new_seed() if request.seed is None else request.seed
        options = {"temperature": request.temperature}
        reason, answer, usage = "", "", [0, 0]
        for attempt in range(self._config.product_attempts):
            try:
                if request.mode == "guided":
                    listing, answer = await self._guided_listing(model, request, options | {"seed": seed + attempt},
                                                                 usage)
                else:
                    done = await self.chat(product_messages(request, JSON_INSTRUCTION),
                                           options | {"seed": seed + attempt, "max_tokens": 256}, model=model)
                    usage[0], usage[1] = usage[0] + done.prompt_tokens, usage[1] + done.completion_tokens
                    answer = done.content
                    listing = parse_listing(answer)
            except ValueError as bad:
                reason = str(bad)
                continue
            entry = self._entry(model, TASK)
            return {"model": entry.id, "mode": request.mode, "product": listing.model_dump(),
                    "attempts": attempt + 1, "seed": seed + attempt,
                    "usage": {"prompt_tokens": usage[0], "completion_tokens": usage[1],
                              "total_tokens": sum(usage)}}
        excerpt = answer if len(answer) <= 300 else answer[:300] + "..."
        raise BadModelOutput(f"Model '{self._entry(model, TASK).id}' gave no usable product description in "
                             f"{self._config.product_attempts} attempts (seeds {seed}..."
                             f"{seed + self._config.product_attempts - 1}): {reason}. Last answer: {excerpt!r}")

    async def _guided_listing(self, model: str | None, request: ProductRequest, options: dict,
                              usage: list[int]) -> tuple[ProductListing, str]:
        chat_model = await self._models.get(self._entry(model, TASK))
        first = await asyncio.to_thread(chat_model.wordy_tokens)
        rows = []
        for instruction, max_tokens, stop in FIELDS.values():
            started, row = await self._prepare(model, product_messages(request, instruction),
                                               options | {"max_tokens": max_tokens, "stop": stop})
            row.first_tokens = first
            rows.append((started, row))
        done = await asyncio.gather(*(self._complete(started, row) for started, row in rows))
        usage[0] += sum(d.prompt_tokens for d in done)
        usage[1] += sum(d.completion_tokens for d in done)
        texts = dict(zip(FIELDS, (d.content for d in done)))
        data = {**texts, "keywords": split_list(texts["keywords"])[:12],
                "suggested_categories": split_list(texts["suggested_categories"])[:5]}
        answer = json.dumps(data)
        try:
            return ProductListing.model_validate(data), answer
        except ValidationError as bad:
            raise ValueError(f"a guided field came out empty ({bad.errors()[0]['loc'][0]})") from None

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

    async def _prepare(self, model: str | None, messages: list[dict], options) -> tuple[Started, Row]:
        """Check the request against the loaded model (template, context) and make its row."""
        entry = self._entry(model, TASK)
        options = SamplingOptions.model_validate(options or {})
        messages = [ChatMessage.model_validate(m).model_dump() for m in messages]
        if not messages:
            raise InvalidRequest("messages must hold at least one message")
        # Loaded before joining a batch: a failed load fails only its own requests.
        chat_model = await self._models.get(entry)
        prompt_ids = _render(entry, chat_model.tokenizer, messages)
        room = chat_model.context_length - len(prompt_ids)
        if room <= 0:
            raise InvalidRequest(f"The prompt is {len(prompt_ids)} tokens; model '{entry.id}' reads at most "
                                 f"{chat_model.context_length} tokens including the answer")
        if options.max_tokens is not None and options.max_tokens > room:
            raise InvalidRequest(f"max_tokens {options.max_tokens} is too large: the prompt is {len(prompt_ids)} "
                                 f"tokens and model '{entry.id}' has a context of {chat_model.context_length} "
                                 f"tokens, so at most {room} can be generated")
        defaults = chat_model.model.generation_config
        sampled = getattr(defaults, "do_sample", False)
        temperature = options.temperature
        if temperature is None:
            temperature = (getattr(defaults, "temperature", None) or 1.0) if sampled else 0.0
        seed = new_seed() if options.seed is None else options.seed
        row = Row(model=entry.id, prompt_ids=prompt_ids,
                  max_tokens=options.max_tokens or min(room, self._config.default_max_tokens),
                  temperature=temperature,
                  top_p=options.top_p or (getattr(defaults, "top_p", None) or 1.0 if sampled else 1.0),
                  top_k=(getattr(defaults, "top_k", None) or 0) if sampled else 0,
                  seed=seed, stop=options.stop)
        return Started(entry.id, len(prompt_ids), seed), row

    async def _complete(self, started: Started, row: Row) -> Completion:
        pieces, last = [], None
        async for last in self._rows_steps(row):
            pieces.append(last.text)
        return Completion(started.model, "".join(pieces), last.finish_reason, started.prompt_tokens,
                          last.completion_tokens, started.seed, last.batch_size)

    # ------------------------------------------------------------ the batched decoding loop

    async def _rows_steps(self, row: Row) -> AsyncIterator[Step]:
        """The row's steps from the batch; when the caller stops listening (a client closed its
        stream, Serve cancelled the request), the row is marked so the batch stops decoding it."""
        try:
            async for step in self._decode_batch(row):
                yield step
        finally:
            row.abandoned = True

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.02)
    async def _decode_batch(self, rows: list[Row]):
        """One step of every row per iteration; rows of different models decode as separate groups."""
        groups: dict[str, list[int]] = {}
        for i, row in enumerate(rows):
            groups.setdefault(row.model, []).append(i)
        decoders = []
        for model_id, indices in groups.items():
            chat_model = await self._models.get(self._catalog.models[model_id])
            decoders.append((indices, Decoder(chat_model, [rows[i] for i in indices], len(rows), self._device)))
        finished = [False] * len(rows)
        while not all(finished):
            out: list[Any] = [StopIteration] * len(rows)
            for indices, decoder in decoders:
                for i in indices:  # a row whose caller went away is finished; a group of only those stops
                    finished[i] = finished[i] or rows[i].abandoned
                if all(finished[i] for i in indices):
                    continue
                for i, step in zip(indices, await asyncio.to_thread(decoder.step)):
                    if not finished[i]:
                        out[i], finished[i] = step, step.finish_reason is not None
            yield out

    def _load(self, entry: ModelEntry, paths: dict[str, str]) -> ChatModel:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        dtype = torch.bfloat16 if self._device == "cuda" else torch.float32
        tokenizer = AutoTokenizer.from_pretrained(paths["weights"], local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(paths["weights"], dtype=dtype, local_files_only=True)
        model = model.to(self._device).eval()
        eos = model.generation_config.eos_token_id
        eos_ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        if tokenizer.eos_token_id is not None:
            eos_ids.add(tokenizer.eos_token_id)
        limits = [n for n in (entry.specs.context_length, getattr(model.config, "max_position_embeddings", None)) if n]
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(eos_ids, default=0)
        return ChatModel(tokenizer, model, eos_ids, pad, min(limits) if limits else 4096)


def _render(entry: ModelEntry, tokenizer, messages: list[dict]) -> list[int]:
    """The prompt's token ids, as the model's own chat template writes the conversation."""
    from jinja2 import TemplateError

    if getattr(tokenizer, "chat_template", None) is None:
        raise InvalidRequest(f"Model '{entry.id}' has no chat template")
    try:
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    except TemplateError as bad:
        raise InvalidRequest(f"The chat template of model '{entry.id}' rejected the messages: {bad}") from None
    return tokenizer(text, add_special_tokens=False)["input_ids"]


@dataclass
class RowText:
    """A row's answer as text: what was sent so far, and what to send after each new token.

    Text that may still change (an incomplete UTF-8 character) or may be the start of a stop
    sequence is held back; a stop sequence ends the answer and is cut from it."""

    tokenizer: Any
    stop: list[str]
    ids: list[int] = field(default_factory=list)
    sent: str = ""

    def add(self, token: int) -> tuple[str, bool]:
        """(new text to send, whether a stop sequence was reached)"""
        self.ids.append(token)
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)
        hits = [i for i in (text.find(s) for s in self.stop) if i >= 0]
        if hits:
            return self._send(text[:min(hits)]), True
        safe = text.rstrip("\ufffd")
        held = max((k for s in self.stop for k in range(1, len(s)) if safe.endswith(s[:k])), default=0)
        return self._send(safe[:len(safe) - held]), False

    def flush(self) -> str:
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)
        return self._send(text)

    def _send(self, text: str) -> str:
        if not text.startswith(self.sent) or len(text) <= len(self.sent):
            return ""
        delta, self.sent = text[len(self.sent):], text
        return delta


class Decoder:
    """One model's rows of a batch: a left-padded prefill, then one token per row per `step()`."""

    def __init__(self, chat_model: ChatModel, rows: list[Row], batch_size: int, device: str):
        import torch

        self.chat_model, self.rows, self.batch_size, self.device = chat_model, rows, batch_size, device
        width = max(len(r.prompt_ids) for r in rows)
        pad = chat_model.pad_id
        self.input_ids = torch.tensor([[pad] * (width - len(r.prompt_ids)) + r.prompt_ids for r in rows], device=device)
        self.attention = torch.tensor([[0] * (width - len(r.prompt_ids)) + [1] * len(r.prompt_ids) for r in rows],
                                      device=device)
        self.positions = (self.attention.cumsum(-1) - 1).clamp(min=0)
        self.cache = None
        self.generators = [torch.Generator().manual_seed(r.seed) for r in rows]
        self.texts = [RowText(chat_model.tokenizer, r.stop) for r in rows]
        self.counts = [0] * len(rows)
        self.done = [False] * len(rows)

    def step(self) -> list[Step]:
        import torch

        with torch.inference_mode():
            out = self.chat_model.model(input_ids=self.input_ids, attention_mask=self.attention,
                                        position_ids=self.positions, past_key_values=self.cache, use_cache=True)
        self.cache = out.past_key_values
        logits = out.logits[:, -1].float().cpu()
        steps, tokens = [], []
        for i, row in enumerate(self.rows):
            if self.done[i] or row.abandoned:
                self.done[i] = True
                tokens.append(self.chat_model.pad_id)
                steps.append(Step("", "abandoned" if row.abandoned else "done", self.counts[i], self.batch_size))
                continue
            token = _pick(logits[i], row, self.generators[i], first=self.counts[i] == 0)
            tokens.append(token)
            self.counts[i] += 1
            steps.append(self._advance(i, token))
        self.input_ids = torch.tensor(tokens, device=self.device)[:, None]
        self.attention = torch.cat([self.attention, torch.ones_like(self.attention[:, :1])], dim=-1)
        self.positions = self.positions[:, -1:] + 1
        return steps

    def _advance(self, i: int, token: int) -> Step:
        row, text = self.rows[i], self.texts[i]
        finish = None
        if token in self.chat_model.eos_ids:
            delta, finish = text.flush(), "stop"
        else:
            delta, stopped = text.add(token)
            if stopped:
                finish = "stop"
            elif self.counts[i] >= row.max_tokens:
                delta, finish = delta + text.flush(), "length"
        self.done[i] = finish is not None
        return Step(delta, finish, self.counts[i], self.batch_size)


# A temperature this small samples the top token anyway; a smaller one (1e-197, say) makes logits / temperature
# overflow to inf, and softmax to NaN, which torch.multinomial refuses.
GREEDY_BELOW = 1e-4


def _pick(logits, row: Row, generator, first: bool) -> int:
    """The row's next token: greedy at temperature 0 (or below GREEDY_BELOW), else sampled from its own
    generator among the model's top-k (all tokens when it has none), cut to the request's top-p."""
    import torch

    if first and row.first_tokens is not None:
        allowed = torch.full_like(logits, float("-inf"))
        allowed[row.first_tokens] = 0
        logits = logits + allowed
    if row.temperature < GREEDY_BELOW:
        return int(logits.argmax())
    k = min(row.top_k or logits.numel(), logits.numel())
    values, ids = (logits / row.temperature).topk(k)  # sorted, highest first
    probs = values.softmax(-1)
    if row.top_p < 1:
        probs = probs * ((probs.cumsum(-1) - probs) < row.top_p)  # the smallest head holding top_p; never empty
    return int(ids[torch.multinomial(probs, 1, generator=generator)])
