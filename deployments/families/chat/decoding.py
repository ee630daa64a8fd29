"""One model's running batch, decoded one token per row per step; rows join and leave between steps.

A joining row is prefilled with the other rows that arrive with it (left-padded), and its KV cache is
merged into the running one by left-padding the shorter of the two, so a row never waits for another
row's tokens. Each row samples with its own seeded `torch.Generator`, so its tokens do not depend on
its neighbours, and a plain reply is exactly the concatenation of the pieces a stream with the same
seed sends. A row may carry a grammar (constraints.py): its tokens are then masked to the grammar's
at every step.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from deployments.families.chat.constraints import Grammar, GrammarTokenizer
from deployments.families.chat.protocol import Step
from deployments.families.chat.tools import ToolStyle


@dataclass
class ChatModel:
    tokenizer: Any
    model: Any
    eos_ids: set[int]
    pad_id: int
    context_length: int
    tool_style: ToolStyle | None  # how the model writes tool calls (catalog specs.tool_calls); None: it does not
    grammar_tokenizer: GrammarTokenizer = field(init=False)

    def __post_init__(self) -> None:
        vocab = self.model.get_output_embeddings().weight.shape[0]  # the logits' size (a VL config nests it)
        self.grammar_tokenizer = GrammarTokenizer(self.tokenizer, vocab, self.eos_ids)

    def cache_merges(self, cache) -> bool:
        """Whether this model's KV cache is plain per-layer tensors, which rows can join; else a new row
        waits until the batch is empty (sliding-window or other caches)."""
        from transformers.cache_utils import DynamicLayer

        return all(type(layer) is DynamicLayer for layer in cache.layers)


@dataclass
class Row:
    """One request as it waits for, then decodes in, a batch."""

    model: str
    prompt_ids: list[int]
    max_tokens: int
    temperature: float
    top_p: float
    top_k: int
    seed: int
    stop: list[str]
    grammar: Grammar | None = None  # constrains the answer from its first token (structured output, tool calls)
    tools: Grammar | None = None  # tool_choice auto: the grammar that takes over once the model opens a tool call
    banned: list[int] = field(default_factory=list)  # never sampled (tool_choice none: the tool-call opener)
    abandoned: bool = False  # its caller went away (a closed stream): the batch stops decoding it
    outbox: asyncio.Queue = field(default_factory=asyncio.Queue)  # its Steps (or the error), as they come


@dataclass
class RowText:
    """A row's answer as text: what was sent so far, and what to send after each new token.

    Text that may still change (an incomplete UTF-8 character) or may be the start of a stop
    sequence is held back; a stop sequence ends the answer and is cut from it. Once the model opens
    a tool call (`calls_from` set), nothing more is sent as content: the rest is the calls' text."""

    tokenizer: Any
    stop: list[str]
    ids: list[int] = field(default_factory=list)
    sent: str = ""
    calls_from: int | None = None  # index in `ids` where tool calls start

    def add(self, token: int) -> tuple[str, bool]:
        """(new text to send, whether a stop sequence was reached)"""
        self.ids.append(token)
        if self.calls_from is not None:
            return "", False
        text = self.decode(self.ids)
        hits = [i for i in (text.find(s) for s in self.stop) if i >= 0]
        if hits:
            return self._send(text[:min(hits)]), True
        safe = text.rstrip("\ufffd")
        held = max((k for s in self.stop for k in range(1, len(s)) if safe.endswith(s[:k])), default=0)
        return self._send(safe[:len(safe) - held]), False

    def flush(self) -> str:
        return self._send(self.decode(self.ids[:self.calls_from]))

    def calls_text(self) -> str | None:
        return None if self.calls_from is None else self.decode(self.ids[self.calls_from:])

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)

    def _send(self, text: str) -> str:
        if not text.startswith(self.sent) or len(text) <= len(self.sent):
            return ""
        delta, self.sent = text[len(self.sent):], text
        return delta


class RowState:
    """What the batch keeps per row: its sampler, its text, its grammar's matcher, its token count."""

    def __init__(self, row: Row, chat_model: ChatModel):
        import torch

        self.row, self.chat_model = row, chat_model
        self.generator = torch.Generator().manual_seed(row.seed)
        self.text = RowText(chat_model.tokenizer, row.stop)
        self.matcher = row.grammar.matcher() if row.grammar is not None else None
        if row.grammar is not None and row.grammar.calls:
            self.text.calls_from = 0  # tool_choice required or named: the whole answer is calls
        self.count = 0
        self.calls_sent = 0  # tool calls already handed out in Steps
        self.done = False

    def pick(self, logits) -> int:
        """The next token: masked to the grammar (if any), then greedy or sampled; the grammar takes it."""
        if self.row.banned:
            logits[self.row.banned] = float("-inf")
        calls = self.row.tools  # tool_choice auto: the model may open a call where its answer may start one;
        # with a response_format as well, only as its first token (after it, the answer is the format's JSON)
        opener = calls.trigger if calls is not None and (self.matcher is None or not self.text.ids) else None
        if self.matcher is not None:
            kept = logits[opener].item() if opener is not None else None
            self.matcher.mask(logits)
            if kept is not None:
                logits[opener] = kept
        token = _pick(logits, self.row, self.generator)
        if calls is not None and token == opener:
            self.matcher = calls.matcher()  # the model opened a tool call: the rest follows the tools
            self.text.calls_from = len(self.text.ids)
        if self.matcher is not None:
            self.matcher.take(token)
        return token

    def advance(self, token: int, batch_size: int) -> Step:
        """The Step this token makes: its new text, and the finish reason if the row ends here."""
        self.count += 1
        text, finish, calls = self.text, None, None
        if token in self.chat_model.eos_ids:
            delta, finish = text.flush(), "stop"
        else:
            delta, stopped = text.add(token)
            if stopped:
                finish = "stop"  # the stop text and what follows it are cut
            elif self.matcher is not None and self.matcher.finished():
                delta, finish = delta + text.flush(), "stop"
            elif self.count >= self.row.max_tokens:
                delta, finish = delta + text.flush(), "length"
        style, calls = self.chat_model.tool_style, None
        if text.calls_from is not None and style is not None:
            # calls complete so far (hermes closes each with </tool_call>; mistral's list closes at the end)
            found = style.parse(text.calls_text() or "", finished=finish is not None) or []
            calls, self.calls_sent = found[self.calls_sent:] or None, max(self.calls_sent, len(found))
            if finish == "stop" and self.calls_sent:
                finish = "tool_calls"
            elif finish is not None:  # cut inside a call: its text is all there is to show
                delta += text.calls_text() or ""
        self.done = finish is not None
        return Step(delta, finish, self.count, batch_size, calls)


class Batch:
    """One model's rows decoding together: `join` prefills new rows and merges them in, `step` decodes one
    token of every row, `leave` drops the finished ones."""

    def __init__(self, chat_model: ChatModel, device: str):
        self.chat_model, self.device = chat_model, device
        self.states: list[RowState] = []
        self.cache: Any = None
        self.attention: Any = None  # [rows, cached tokens]: 1 where a row has a token, 0 for its left padding
        self.positions: Any = None  # [rows, 1]: the position of each row's next input token
        self.inputs: list[int] = []  # each row's last token, its next input

    @property
    def rows(self) -> list[Row]:
        return [state.row for state in self.states]

    def can_join(self) -> bool:
        return self.cache is None or self.chat_model.cache_merges(self.cache)

    def join(self, rows: list[Row]) -> list[Step]:
        """Prefill `rows` (left-padded together), pick their first tokens, and add them to the batch."""
        import torch

        width = max(len(r.prompt_ids) for r in rows)
        pad = self.chat_model.pad_id
        ids = torch.tensor([[pad] * (width - len(r.prompt_ids)) + r.prompt_ids for r in rows], device=self.device)
        attention = torch.tensor([[0] * (width - len(r.prompt_ids)) + [1] * len(r.prompt_ids) for r in rows],
                                 device=self.device)
        positions = (attention.cumsum(-1) - 1).clamp(min=0)
        with torch.inference_mode():
            out = self.chat_model.model(input_ids=ids, attention_mask=attention, position_ids=positions,
                                        use_cache=True)
        states = [RowState(row, self.chat_model) for row in rows]
        logits = out.logits[:, -1].float().cpu().clone()  # a normal tensor: grammars mask it in place
        tokens = [state.pick(logits[i]) for i, state in enumerate(states)]
        self._merge(out.past_key_values, attention, positions[:, -1:] + 1)
        self.states += states
        self.inputs += tokens
        return [state.advance(token, len(self.states)) for state, token in zip(states, tokens)]

    def step(self) -> list[Step]:
        """One token for every row (a row whose caller went away ends as `abandoned`)."""
        import torch

        ids = torch.tensor(self.inputs, device=self.device)[:, None]
        self.attention = torch.cat([self.attention, torch.ones_like(self.attention[:, :1])], dim=-1)
        with torch.inference_mode():
            out = self.chat_model.model(input_ids=ids, attention_mask=self.attention, position_ids=self.positions,
                                        past_key_values=self.cache, use_cache=True)
        self.cache, self.positions = out.past_key_values, self.positions + 1
        logits = out.logits[:, -1].float().cpu().clone()  # a normal tensor: grammars mask it in place
        steps, size = [], len(self.states)
        for i, state in enumerate(self.states):
            if state.done or state.row.abandoned:
                state.done = True
                steps.append(Step("", "abandoned", state.count, size))
                continue
            self.inputs[i] = state.pick(logits[i])
            steps.append(state.advance(self.inputs[i], size))
        return steps

    def leave(self) -> None:
        """Drop finished rows from the batch, and the left padding no remaining row needs."""
        keep = [i for i, state in enumerate(self.states) if not (state.done or state.row.abandoned)]
        if len(keep) == len(self.states):
            return
        self.states = [self.states[i] for i in keep]
        self.inputs = [self.inputs[i] for i in keep]
        if not keep:
            self.cache = self.attention = self.positions = None
            return
        import torch

        index = torch.tensor(keep, device=self.device)
        self.attention, self.positions = self.attention[index], self.positions[index]
        first = int(self.attention.any(0).nonzero()[0])  # columns before it are padding in every row
        self.attention = self.attention[:, first:]
        for layer in self.cache.layers:
            layer.keys, layer.values = layer.keys[index, :, first:], layer.values[index, :, first:]

    def _merge(self, cache, attention, positions) -> None:
        import torch
        import torch.nn.functional as F

        if self.cache is None:
            self.cache, self.attention, self.positions = cache, attention, positions
            return
        old, new = self.attention.shape[1], attention.shape[1]
        width = max(old, new)
        for mine, theirs in zip(self.cache.layers, cache.layers):
            for name in ("keys", "values"):
                a, b = getattr(mine, name), getattr(theirs, name)
                setattr(mine, name, torch.cat([F.pad(a, (0, 0, width - old, 0)), F.pad(b, (0, 0, width - new, 0))]))
        self.attention = torch.cat([F.pad(self.attention, (width - old, 0)), F.pad(attention, (width - new, 0))])
        self.positions = torch.cat([self.positions, positions])


# A temperature this small samples the top token anyway; a smaller one (1e-197, say) makes logits / temperature
# overflow to inf, and softmax to NaN, which torch.multinomial refuses.
GREEDY_BELOW = 1e-4


def _pick(logits, row: Row, generator) -> int:
    """The row's next token: greedy at temperature 0 (or below GREEDY_BELOW), else sampled from its own
    generator among the model's top-k (all tokens when it has none), cut to the request's top-p."""
    import torch

    if row.temperature < GREEDY_BELOW:
        return int(logits.argmax())
    k = min(row.top_k or logits.numel(), logits.numel())
    values, ids = (logits / row.temperature).topk(k)  # sorted, highest first
    probs = values.softmax(-1)
    if row.top_p < 1:
        probs = probs * ((probs.cumsum(-1) - probs) < row.top_p)  # the smallest head holding top_p; never empty
    return int(ids[torch.multinomial(probs, 1, generator=generator)])
