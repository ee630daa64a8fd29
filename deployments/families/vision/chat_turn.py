"""One chat turn of a vision-language model, decoded the way the chat family decodes a row: each token
picked by the chat family's RowState (the request's seed, temperature, top-p, a response_format's grammar)
and each Step handed out as it is made, so an answer streams token by token, stops at its stop texts and
its JSON validates. Images make every prompt a different shape, so a turn is one `generate` of its own."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

from deployments.families.chat.decoding import RowState
from deployments.families.chat.protocol import Step
from deployments.serving.torch_threads import inference_executor


def decode_turn(model, inputs, state: RowState, emit: Callable[[Step], None]) -> None:
    """`generate` over `inputs` (the processor's tensors) with `state` picking every token; `emit` gets each
    Step; it ends when the state says (end token, stop text, grammar complete, max_tokens) or is abandoned."""
    import torch
    from transformers import LogitsProcessor, LogitsProcessorList, StoppingCriteria, StoppingCriteriaList

    class Pick(LogitsProcessor):
        def __call__(self, input_ids, scores):
            token = state.pick(scores[0].clone())
            chosen = torch.full_like(scores, float("-inf"))
            chosen[0, token] = 0.0  # greedy over this one-hot picks exactly the state's token
            return chosen

    class Advance(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            emit(state.advance(int(input_ids[0, -1]), 1))
            return torch.tensor([state.done or state.row.abandoned], device=input_ids.device)

    with torch.inference_mode():
        model.generate(**inputs, max_new_tokens=state.row.max_tokens, do_sample=False,
                       logits_processor=LogitsProcessorList([Pick()]),
                       stopping_criteria=StoppingCriteriaList([Advance()]))


async def turn_steps(run: Callable[[Callable[[Step], None]], None], state: RowState) -> AsyncIterator[Step]:
    """The Steps of `run(emit)` (a blocking decode, in a thread) as they come; closing the iterator (a
    client gone) abandons the turn, which then ends at its next token."""
    loop = asyncio.get_running_loop()
    items: asyncio.Queue[Any] = asyncio.Queue()
    end = object()

    def emit(step: Step) -> None:
        loop.call_soon_threadsafe(items.put_nowait, step)

    def work() -> None:
        try:
            run(emit)
        except Exception as failed:  # noqa: BLE001 (handed to the caller)
            loop.call_soon_threadsafe(items.put_nowait, failed)
        finally:
            loop.call_soon_threadsafe(items.put_nowait, end)

    loop.run_in_executor(inference_executor(), work)  # not awaited: abandoned, it ends at its next token
    try:
        while (item := await items.get()) is not end:
            if isinstance(item, Exception):
                raise item
            yield item
    finally:
        state.row.abandoned = True
