"""One answer in a conversation: the chat model's streamed text, cut into sentences, each spoken by the
text-to-speech deployment while the next is still being written, and sent as the protocol's response
events. Cancelled (barge-in, response.cancel) or failed (a model lost), it still ends with response.done."""

from __future__ import annotations

import asyncio
import base64
import re
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from deployments.errors import ServiceError
from deployments.families.chat.protocol import Step
from deployments.families.speech.protocol import SpeechRequest
from deployments.ingress.realtime import function_calls
from deployments.ingress.realtime.audio import from_samples
from deployments.ingress.realtime.events import RealtimeError, event, message_item, new_id, public_item, usage

if TYPE_CHECKING:
    from deployments.ingress.realtime.session import Session

SENTENCE_END = re.compile(r"[.!?。！？]+[\"')\]]*\s+|\n+")
CLAUSE_END = re.compile(r"[,;:]\s+")
LONGEST_SENTENCE = 160  # characters spoken at once when the text has no sentence end
FIRST_PIECE_MIN, FIRST_PIECE_MAX = 20, 60  # the first piece's clause and word cuts
AUDIO_DELTA_SECONDS = 0.5


class Response:
    def __init__(self, session: Session, overrides: dict[str, Any], transcribed: asyncio.Task | None):
        self.session, self.transcribed = session, transcribed
        config = session.config
        self.id, self.item_id = new_id("resp"), new_id("item")
        self.instructions = overrides.get("instructions", config.instructions)
        self.modalities = overrides.get("output_modalities") or config.output_modalities or ["audio"]
        self.max_tokens = overrides.get("max_output_tokens", config.max_output_tokens)
        if not isinstance(self.instructions, str | None) or self.modalities not in (["audio"], ["text"]) or not (
                self.max_tokens in (None, "inf") or isinstance(self.max_tokens, int) and self.max_tokens > 0):
            raise RealtimeError("response.create takes instructions (text), output_modalities (['audio'] or "
                                "['text']) and max_output_tokens (a positive integer or 'inf')", "invalid_value",
                                param="response")
        if self.modalities == ["audio"] and session.speaker is None:
            session.speaker = session.speaker_for(config)
        self.done = False
        self._cancelled: str | None = None
        self._text = ""
        self._spoken: list[tuple[int, int, str]] = []  # (start_ms, end_ms, sentence) of the audio sent
        self._audio_ms = 0
        self._tokens = (0, 0)
        self._task: asyncio.Task | None = None
        self._message: dict[str, Any] | None = None  # the answer's message item, once it has words
        self._calls: list[dict[str, Any]] = []  # the tool calls the model made (the chat family's shape)
        self._output: list[dict[str, Any]] = []  # the response's items in order: its message, its calls

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def cancel(self, reason: str, quiet: bool = False) -> None:
        """Stop the answer; unless `quiet` (the socket is closing), the client hears of it in response.done."""
        if self.done or self._task is None:
            return
        self._cancelled = "quiet" if quiet else reason
        self._task.cancel()
        await asyncio.wait([self._task])

    async def _run(self) -> None:
        status, details = "completed", cast(dict[str, Any] | None, None)
        try:
            await self._send("response.created", response=self._shape("in_progress", None, []))
            if self.transcribed is not None:
                await asyncio.wait([self.transcribed])  # the turn's transcript is part of the conversation
            messages = self.session.messages(self.instructions)
            chat = self.session.chat
            assert chat is not None  # a conversation's (response.create refuses in a transcription session)
            options = {"max_tokens": None if self.max_tokens in (None, "inf") else self.max_tokens,
                       **self.session.config.chat_tools()}
            for name in ("temperature", "seed"):
                if getattr(self.session.config, name) is not None:
                    options[name] = getattr(self.session.config, name)
            if options.get("tool_choice", "none") == "none":
                await self._open()  # an answer in words: its item from the start (one that may call waits)
            first, steps = await self.session.services.stream(chat, "chat_stream", messages, options, model=chat.id)
            self._tokens = (first.prompt_tokens, 0)
            await (self._speak(steps) if self.modalities == ["audio"] else self._write(steps))
        except asyncio.CancelledError:
            if self._cancelled == "quiet":
                raise
            status, details = "cancelled", {"type": "cancelled", "reason": self._cancelled or "client_cancelled"}
        except ServiceError as failed:
            status = "failed"
            kind = "invalid_request_error" if failed.status_code < 500 else "server_error"
            details = {"type": "failed", "error": {"type": kind, "code": failed.error_code.lower()}}
            await self.session.send(RealtimeError(failed.message, failed.error_code.lower(), kind=kind).event(None))
        finally:
            self.done = True
        if self._message is None and not self._calls and status == "completed":
            await self._open()  # an empty answer is still an answer
        if self._message is not None:
            await self._close_message(status)
        if status == "completed":  # calls cut by a cancel or a failure are not made
            for call in self._calls:
                await self._call(call)
        output = [public_item(item) for item in self._output if item["id"] in self.session.items]
        await self._send("response.done", response=self._shape(status, details, output))

    async def _open(self) -> None:
        """The answer's message item, added when its first words (or audio) are ready to send."""
        if self._message is not None:
            return
        item = self._message = message_item(self.item_id, "assistant", [], "in_progress")
        if self.modalities == ["audio"]:
            item["_spoken"] = self._spoken
        self._output.append(item)
        await self.session.add_item(item)
        await self._send("response.output_item.added", response_id=self.id, output_index=0, item=public_item(item))
        await self._send("response.content_part.added", **self._part_at(), part=self._part())

    async def _close_message(self, status: str) -> None:
        item = cast(dict[str, Any], self._message)
        item["status"] = "completed" if status == "completed" else "incomplete"
        item["content"] = [self._part(in_item=True)]
        if self._text or status == "completed":
            if self.modalities == ["audio"]:
                await self._send("response.output_audio.done", **self._part_at())
                await self._send("response.output_audio_transcript.done", **self._part_at(), transcript=self._text)
            else:
                await self._send("response.output_text.done", **self._part_at(), text=self._text)
            await self._send("response.content_part.done", **self._part_at(), part=self._part())
        if item["id"] in self.session.items:
            await self._send("response.output_item.done", response_id=self.id, output_index=0, item=public_item(item))
            await self.session.send(event("conversation.item.done", item=public_item(item),
                                          previous_item_id=self.session.previous_id(item)))

    async def _call(self, call: dict[str, Any]) -> None:
        """One tool call as a function_call item, with its arguments' events (whole: the grammar made them)."""
        item = function_calls.call_item(new_id("item"), call, status="in_progress")
        index, arguments = len(self._output), call["function"]["arguments"]
        at = {"response_id": self.id, "item_id": item["id"], "output_index": index}
        self._output.append(item)
        await self.session.add_item(item)
        await self._send("response.output_item.added", response_id=self.id, output_index=index, item=public_item(item))
        await self._send("response.function_call_arguments.delta", **at, call_id=item["call_id"], delta=arguments)
        await self._send("response.function_call_arguments.done", **at, call_id=item["call_id"], name=item["name"],
                         arguments=arguments)
        item.update(status="completed", arguments=arguments)
        await self._send("response.output_item.done", response_id=self.id, output_index=index, item=public_item(item))
        await self.session.send(event("conversation.item.done", item=public_item(item),
                                      previous_item_id=self.session.previous_id(item)))

    async def _write(self, steps: AsyncIterator[Step]) -> None:
        async for step in steps:
            self._tokens = (self._tokens[0], step.completion_tokens)
            self._calls += step.tool_calls or []
            if step.text:
                await self._open()
                self._text += step.text
                await self._send("response.output_text.delta", **self._part_at(), delta=step.text)

    async def _speak(self, steps: AsyncIterator[Step]) -> None:
        """Sentences are spoken as they complete, while the chat model writes the next."""
        sentences: asyncio.Queue[str | Exception | None] = asyncio.Queue()
        writer = asyncio.create_task(self._sentences(steps, sentences))
        try:
            while (sentence := await sentences.get()) is not None:
                if isinstance(sentence, Exception):
                    raise sentence
                await self._say(sentence)
        finally:
            writer.cancel()

    async def _sentences(self, steps: AsyncIterator[Step], out: asyncio.Queue) -> None:
        pending, first = "", True
        try:
            async for step in steps:
                self._tokens = (self._tokens[0], step.completion_tokens)
                self._calls += step.tool_calls or []
                pending += step.text
                while (cut := _sentence_end(pending, first)) is not None:
                    await out.put(pending[:cut])
                    pending, first = pending[cut:], False
            if pending:
                await out.put(pending)
            await out.put(None)
        except Exception as failed:  # noqa: BLE001 - handed to the speaking side, which raises it
            await out.put(failed)

    async def _say(self, sentence: str) -> None:
        assert self.session.speaker is not None  # set when the response was created
        entry, voice, speed = self.session.speaker
        fmt = self.session.config.output.format.audio
        audio = b""
        if any(character.isalnum() for character in sentence):
            speech = await self.session.services.call(entry, "synthesize", SpeechRequest(
                text=sentence.strip(), model=entry.id, voice=voice, speed=speed, format="pcm"))
            samples = np.frombuffer(speech.audio, dtype="<i2").astype(np.float32) / 32768
            audio = from_samples(samples, speech.sample_rate, fmt)
        await self._open()
        start_ms = self._audio_ms
        self._audio_ms += len(audio) // fmt.bytes_per_sample * 1000 // fmt.rate
        self._text += sentence
        await self._send("response.output_audio_transcript.delta", **self._part_at(), delta=sentence)
        step = int(fmt.rate * AUDIO_DELTA_SECONDS) * fmt.bytes_per_sample
        for at in range(0, len(audio), step):
            await self._send("response.output_audio.delta", **self._part_at(),
                             delta=base64.b64encode(audio[at:at + step]).decode())
        self._spoken.append((start_ms, self._audio_ms, sentence))

    def _part(self, in_item: bool = False) -> dict[str, Any]:
        """The answer's content: the item's part ('output_audio') or as part events show it ('audio')."""
        prefix = "output_" if in_item else ""
        if self.modalities == ["audio"]:
            return {"type": f"{prefix}audio", "transcript": self._text}
        return {"type": f"{prefix}text", "text": self._text}

    def _part_at(self) -> dict[str, Any]:
        return {"response_id": self.id, "item_id": self.item_id, "output_index": 0, "content_index": 0}

    def _shape(self, status: str, details: dict | None, output: list[dict[str, Any]]) -> dict[str, Any]:
        output_config = self.session.config.output
        return {"id": self.id, "object": "realtime.response", "status": status, "status_details": details,
                "output": output, "output_modalities": self.modalities,
                "conversation_id": self.session.conversation_id, "metadata": None,
                "max_output_tokens": self.max_tokens if self.max_tokens is not None else "inf",
                "audio": {"output": {"format": output_config.format.model_dump(), "voice": output_config.voice}},
                "usage": usage(*self._tokens) if status != "in_progress" else None}

    async def _send(self, type_: str, **fields: Any) -> None:
        await self.session.send(event(type_, **fields))


def _sentence_end(text: str, first: bool) -> int | None:
    """Where the next piece to speak ends: a sentence, or a cut at a word before LONGEST_SENTENCE characters.
    The answer's first piece may end at a clause (a comma after FIRST_PIECE_MIN characters) or a word past
    FIRST_PIECE_MAX: the sooner the first words are spoken, the sooner the user hears an answer."""
    found = SENTENCE_END.search(text)
    if found:
        return found.end()
    if first:
        clause = CLAUSE_END.search(text, FIRST_PIECE_MIN)
        if clause:
            return clause.end()
    longest = FIRST_PIECE_MAX if first else LONGEST_SENTENCE
    if len(text) > longest:
        space = text.rfind(" ", 0, longest)
        return space + 1 if space > 0 else longest
    return None
