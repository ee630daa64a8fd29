"""Chat turns of a vision-language model, decoded the way the chat family decodes a row: each token picked by
the chat family's RowState (the request's seed, temperature, top-p, a response_format's grammar) and each
Step handed out as it is made, so an answer streams token by token, stops at its stop texts and its JSON
validates.

Images make every prompt a different shape, which rules out joining a running decode (the chat family's
continuous batching); instead the turns that arrive while a `generate` runs wait for it and then share the
next one, left-padded, each row with its own images (TurnBatcher). A row that ends is padded until the
others have, so a short answer shares a generate with long ones but never waits for a whole one alone."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from deployments.families.chat.decoding import RowState
from deployments.families.chat.protocol import Step
from deployments.serving.torch_threads import inference_executor

END = object()  # what a turn's `send` gets after its last Step (or its error)


@dataclass(eq=False)
class Turn:
    """One request's chat turn: its messages (content parts {'type': 'text'} and {'type': 'image'}), its
    decoded images in the order of their parts, the RowState that picks its tokens, and `send`, which takes
    its Steps, an error, then END."""

    messages: list[dict]
    images: list[Any]
    state: RowState
    send: Callable[[Any], object]


def decode_turns(engine, turns: list[Turn]) -> None:
    """One `generate` over `turns` (`engine`: a ChatDescriber); each row ends when its state says (end token,
    stop text, grammar complete, max_tokens) or is abandoned, and is padded until every row has."""
    import torch
    from transformers import LogitsProcessor, LogitsProcessorList, StoppingCriteria, StoppingCriteriaList

    inputs = engine.chat_inputs([turn.messages for turn in turns], [image for turn in turns for image in turn.images])
    pad, ended = engine.chat_model.pad_id, [False] * len(turns)

    class Pick(LogitsProcessor):
        def __call__(self, input_ids, scores):
            chosen = torch.full_like(scores, float("-inf"))
            for i, turn in enumerate(turns):  # greedy over this one-hot picks exactly each state's token
                chosen[i, pad if ended[i] else turn.state.pick(scores[i].clone())] = 0.0
            return chosen

    class Advance(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            for i, turn in enumerate(turns):
                if not ended[i]:
                    turn.send(turn.state.advance(int(input_ids[i, -1]), len(turns)))
                    ended[i] = turn.state.done or turn.state.row.abandoned
            return torch.tensor(ended, device=input_ids.device)

    with torch.inference_mode():
        engine.model.generate(**inputs, max_new_tokens=max(turn.state.row.max_tokens for turn in turns),
                              do_sample=False, pad_token_id=pad, logits_processor=LogitsProcessorList([Pick()]),
                              stopping_criteria=StoppingCriteriaList([Advance()]))


class TurnBatcher:
    """A replica's waiting turns: while a generate runs, turns that arrive wait for it, then the next generate
    takes up to `max_batch` of them (those of the first one's model). Each generate is one task on the
    replica's inference thread, so other calls queued there (captions, classifications) run between them."""

    def __init__(self) -> None:
        self._waiting: list[tuple[Any, Turn]] = []  # (engine, turn), in arrival order
        self._running = False
        self._lock = threading.Lock()

    def submit(self, engine, turn: Turn, max_batch: int) -> None:
        with self._lock:
            self._waiting.append((engine, turn))
            if self._running:
                return
            self._running = True
        inference_executor().submit(self._decode_next, max_batch)

    def _decode_next(self, max_batch: int) -> None:
        with self._lock:
            gone = [t for _, t in self._waiting if t.state.row.abandoned]  # callers that left before it started
            self._waiting = [(e, t) for e, t in self._waiting if t not in gone]
            engine = self._waiting[0][0] if self._waiting else None
            batch = [t for e, t in self._waiting if e is engine][:max_batch]
            self._waiting = [(e, t) for e, t in self._waiting if t not in batch]
        try:
            if batch:
                decode_turns(engine, batch)
        except Exception as failed:  # noqa: BLE001 (each turn's caller gets it)
            for turn in batch:
                turn.send(failed)
        finally:
            for turn in batch + gone:
                turn.send(END)
            with self._lock:
                self._running = bool(self._waiting)
                if self._running:
                    inference_executor().submit(self._decode_next, max_batch)


async def turn_steps(messages: list[dict], images: list[Any], state: RowState,
                     submit: Callable[[Turn], None]) -> AsyncIterator[Step]:
    """The Steps of a turn handed to `submit` (a TurnBatcher's), as they come; closing the iterator (a client
    gone) abandons the turn, which then ends at its next token, or before it starts."""
    loop = asyncio.get_running_loop()
    items: asyncio.Queue[Any] = asyncio.Queue()
    submit(Turn(messages, images, state, lambda item: loop.call_soon_threadsafe(items.put_nowait, item)))
    try:
        while (item := await items.get()) is not END:
            if isinstance(item, Exception):
                raise item
            yield item
    finally:
        state.row.abandoned = True
