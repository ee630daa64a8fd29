"""One realtime session: the client's events in, server events out. It holds the session's configuration,
the input audio buffer with its voice detector, and the conversation's items; committed turns are
transcribed by the Whisper deployment, and in a conversation answered by responses.py."""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
import soundfile as sf

from deployments.errors import ServiceError
from deployments.families.chat.protocol import tool_models
from deployments.families.speech.protocol import TASK as SPEECH_TASK
from deployments.families.speech.protocol import check_speed, resolve_voice
from deployments.families.transcription.protocol import TASK as TRANSCRIPTION_TASK
from deployments.families.transcription.protocol import TranscriptionOptions
from deployments.ingress.realtime import config as session_config
from deployments.ingress.realtime import function_calls
from deployments.ingress.realtime.audio import MODEL_RATE, BadAudio, decode_base64, to_model_rate
from deployments.ingress.realtime.events import (
    RealtimeError,
    event,
    message_item,
    new_id,
    public_item,
    user_audio_item,
)
from deployments.ingress.realtime.responses import Response
from deployments.ingress.realtime.vad import VoiceDetector
from deployments.ingress.services import Services
from registry import ModelEntry

logger = logging.getLogger(__name__)
Send = Callable[[dict[str, Any]], Awaitable[None]]
MIN_COMMIT_MS = 100  # what OpenAI's API refuses to commit below
TEXT_PARTS = {"input_text", "text", "output_text"}


class Session:
    def __init__(self, services: Services, send: Send, config: session_config.SessionConfig,
                 chat: ModelEntry | None):
        self.services, self.send, self.config, self.chat = services, send, config, chat
        self.transcriber = self._transcriber(config)
        self.speaker = self.speaker_for(config) if config.speaks else None
        self.items: dict[str, dict[str, Any]] = {}
        self.conversation_id = new_id("conv")
        self.response: Response | None = None
        self._buffer: list[np.ndarray] = []
        self._buffered = 0  # samples at 16 kHz since the last commit or clear
        self._heard_ms = 0  # all audio appended in the session, for audio_start_ms / audio_end_ms
        self._detector = self._new_detector()
        self._speech_item: str | None = None  # the id the turn being spoken will be committed as
        self._transcribed: asyncio.Task | None = None  # the latest turn's transcription (turns keep their order)
        self._transcribing: set[asyncio.Task] = set()  # every transcription not yet done

    # --- client events ---

    async def handle(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        handler = HANDLERS.get(kind) if isinstance(kind, str) else None
        if handler is None:
            raise RealtimeError(f"Unknown client event type {kind!r}; this server takes: {', '.join(HANDLERS)}",
                                "invalid_value", param="type")
        await handler(self, message)

    async def session_update(self, message: dict[str, Any]) -> None:
        new = session_config.updated(self.config, message.get("session"))
        transcriber, speaker = self._transcriber(new), self.speaker_for(new) if new.speaks else None
        chat = self.chat
        if new.type == "realtime" and new.model != self.config.model:
            chat = self.services.model_for("chat", new.model)
            new = new.model_copy(update={"model": chat.id})
        if new.tools and chat is not None and not chat.specs.tool_calls:
            raise RealtimeError(f"Model '{chat.id}' does not take tools; models that do: "
                                f"{tool_models(self.services.catalog)}", "invalid_value", param="session.tools")
        vad_changed = new.audio.input.turn_detection != self.config.audio.input.turn_detection
        self.config, self.transcriber, self.speaker, self.chat = new, transcriber, speaker, chat
        if vad_changed:  # a detector with the new threshold and silence (or none)
            self._detector = self._new_detector()
        await self.send(event("session.updated", session=new.wire()))

    async def append(self, message: dict[str, Any]) -> None:
        audio = message.get("audio")
        if not isinstance(audio, str):
            raise RealtimeError("input_audio_buffer.append needs 'audio': base64 of the session's input format",
                                "invalid_value", param="audio")
        fmt = self.config.audio.input.format.audio
        try:
            samples = to_model_rate(decode_base64(audio, fmt), fmt)
        except BadAudio as bad:
            raise RealtimeError(str(bad), "invalid_value", param="audio") from None
        limit = self.services.settings.realtime_buffer_seconds
        if (self._buffered + len(samples)) / MODEL_RATE > limit:
            raise RealtimeError(f"The input audio buffer holds at most {limit:g} s (INFERENCE_REALTIME_BUFFER_SECONDS);"
                                " commit or clear it first. This append was dropped", "input_audio_buffer_full",
                                param="audio")
        self._buffer.append(samples)
        self._buffered += len(samples)
        self._heard_ms += len(samples) * 1000 // MODEL_RATE
        if self._detector is not None:
            for change, at_ms in self._detector.feed(samples):
                await (self._speech_started(at_ms) if change == "started" else self._speech_stopped(at_ms))
            if not self._detector.speaking:
                self._keep_last(self._vad().prefix_padding_ms + 64)

    async def commit(self, message: dict[str, Any]) -> None:
        await self._commit(self._speech_item or new_id("item"), create_response=False)

    async def clear(self, message: dict[str, Any]) -> None:
        self._buffer, self._buffered, self._speech_item = [], 0, None
        self._detector = self._new_detector()
        await self.send(event("input_audio_buffer.cleared"))

    async def item_create(self, message: dict[str, Any]) -> None:
        item = message.get("item")
        if isinstance(item, dict) and item.get("type") in ("function_call", "function_call_output"):
            await self._create(message, function_calls.client_item(item, self.items,
                                                                    str(item.get("id") or new_id("item"))[:64]))
            return
        if not isinstance(item, dict) or item.get("type") != "message" or item.get("role") not in (
                "user", "assistant", "system"):
            raise RealtimeError("conversation.item.create takes message items (role user, assistant or system), "
                                "function_call and function_call_output items", "invalid_value", param="item")
        parts = item.get("content")
        if not isinstance(parts, list) or not parts or any(
                not isinstance(p, dict) or p.get("type") not in TEXT_PARTS or not isinstance(p.get("text"), str)
                for p in parts):
            raise RealtimeError("A message item's content is a list of text parts ({'type': 'input_text', "
                                "'text': ...}); audio and image parts are not supported", "invalid_value",
                                param="item.content")
        text_type = "input_text" if item["role"] != "assistant" else "output_text"
        await self._create(message, message_item(str(item.get("id") or new_id("item"))[:64], item["role"],
                                                 [{"type": text_type, "text": p["text"]} for p in parts]))

    async def _create(self, message: dict[str, Any], added: dict[str, Any]) -> None:
        previous = message.get("previous_item_id")
        if previous is not None and previous not in self.items:
            raise RealtimeError(f"No item {previous!r} in this conversation", "item_not_found",
                                param="previous_item_id")
        await self.add_item(added)
        await self.send(event("conversation.item.done", item=added, previous_item_id=self.previous_id(added)))

    async def item_delete(self, message: dict[str, Any]) -> None:
        item_id = self._item_id(message)
        del self.items[item_id]
        await self.send(event("conversation.item.deleted", item_id=item_id))

    async def item_retrieve(self, message: dict[str, Any]) -> None:
        await self.send(event("conversation.item.retrieved", item=self.items[self._item_id(message)]))

    async def item_truncate(self, message: dict[str, Any]) -> None:
        item_id = self._item_id(message)
        end_ms = message.get("audio_end_ms")
        if not isinstance(end_ms, int) or end_ms < 0:
            raise RealtimeError("audio_end_ms: milliseconds of the item's audio the user heard", "invalid_value",
                                param="audio_end_ms")
        spoken = self.items[item_id].get("_spoken")  # (start_ms, end_ms, sentence) of each sentence sent
        if spoken is None:
            raise RealtimeError(f"Item {item_id!r} is not an answer with audio", "invalid_value", param="item_id")
        length_ms = spoken[-1][1] if spoken else 0
        if end_ms > length_ms:
            raise RealtimeError(f"audio_end_ms {end_ms} is after the end of the item's audio ({length_ms} ms)",
                                "invalid_value", param="audio_end_ms")
        heard = "".join(text for start_ms, _, text in spoken if start_ms < end_ms)
        self.items[item_id]["content"] = [{"type": "output_audio", "transcript": heard.strip()}]
        await self.send(event("conversation.item.truncated", item_id=item_id, content_index=0, audio_end_ms=end_ms))

    async def response_create(self, message: dict[str, Any]) -> None:
        if self.config.type != "realtime":
            raise RealtimeError("A transcription session makes no responses; connect with ?model=<chat model> "
                                "for a conversation", "invalid_value", param="type")
        if self.response is not None and not self.response.done:
            raise RealtimeError(f"Response {self.response.id} is still in progress; cancel it first",
                                "conversation_already_has_active_response")
        overrides = message.get("response") or {}
        if not isinstance(overrides, dict):
            raise RealtimeError("'response' is an object", "invalid_value", param="response")
        self._respond(overrides)

    async def response_cancel(self, message: dict[str, Any]) -> None:
        if self.response is None or self.response.done:
            raise RealtimeError("There is no response in progress to cancel", "response_cancel_not_active")
        await self.response.cancel("client_cancelled")

    # --- turns ---

    async def add_item(self, item: dict[str, Any]) -> None:
        previous = next(reversed(self.items), None)
        self.items[item["id"]] = item
        await self.send(event("conversation.item.added", item=public_item(item), previous_item_id=previous))

    def messages(self, instructions: str | None) -> list[dict[str, Any]]:
        """The conversation so far as chat messages, the session's instructions first."""
        return function_calls.chat_messages(self.items, instructions)

    async def close(self) -> None:
        if self.response is not None:
            await self.response.cancel("client_cancelled", quiet=True)
        for task in self._transcribing:  # each waits for the one before it, so all are cancelled, not the last
            task.cancel()

    async def _speech_started(self, at_ms: int) -> None:
        self._speech_item = new_id("item")
        padding = self._vad().prefix_padding_ms
        self._keep_last(self._heard_ms - max(at_ms - padding, 0))
        await self.send(event("input_audio_buffer.speech_started", audio_start_ms=at_ms, item_id=self._speech_item))
        if self.response is not None and not self.response.done and self._vad().interrupt_response:
            await self.response.cancel("turn_detected")

    async def _speech_stopped(self, at_ms: int) -> None:
        item_id = self._speech_item or new_id("item")
        await self.send(event("input_audio_buffer.speech_stopped", audio_end_ms=at_ms, item_id=item_id))
        await self._commit(item_id, create_response=self._vad().create_response)

    async def _commit(self, item_id: str, create_response: bool) -> None:
        heard_ms = self._buffered * 1000 // MODEL_RATE
        if heard_ms < MIN_COMMIT_MS:
            raise RealtimeError(f"The input audio buffer holds {heard_ms} ms; a commit needs at least "
                                f"{MIN_COMMIT_MS} ms", "input_audio_buffer_commit_empty")
        audio = np.concatenate(self._buffer)
        self._buffer, self._buffered, self._speech_item = [], 0, None
        item = user_audio_item(item_id)
        previous = next(reversed(self.items), None)
        await self.send(event("input_audio_buffer.committed", item_id=item_id, previous_item_id=previous))
        await self.add_item(item)
        earlier = self._transcribed
        self._transcribed = asyncio.create_task(self._transcribe(item, audio, earlier))
        self._transcribing.add(self._transcribed)
        self._transcribed.add_done_callback(self._transcribing.discard)
        if create_response and self.config.type == "realtime":
            self._respond({})

    def _respond(self, overrides: dict[str, Any]) -> None:
        self.response = Response(self, overrides, self._transcribed)
        self.response.start()

    async def _transcribe(self, item: dict[str, Any], audio: np.ndarray, earlier: asyncio.Task | None) -> None:
        if earlier is not None:
            await asyncio.wait([earlier])
        entry, fields = self.transcriber
        wav = io.BytesIO()
        sf.write(wav, audio, MODEL_RATE, format="WAV", subtype="PCM_16")
        try:
            result = await self.services.call(entry, "transcribe", wav.getvalue(), TranscriptionOptions(**fields),
                                              model=entry.id)
        except ServiceError as failed:
            logger.warning("realtime transcription failed: %s", failed.message)
            await self.send(event("conversation.item.input_audio_transcription.failed", item_id=item["id"],
                                  content_index=0, error={"type": "server_error", "code": failed.error_code,
                                                          "message": failed.message}))
            return
        for segment in result.segments:
            await self.send(event("conversation.item.input_audio_transcription.delta", item_id=item["id"],
                                  content_index=0, delta=segment.text))
        transcript = result.text.strip()
        item["content"][0]["transcript"] = transcript
        await self.send(event("conversation.item.input_audio_transcription.completed", item_id=item["id"],
                              content_index=0, transcript=transcript,
                              usage={"type": "duration", "seconds": round(result.duration, 3)}))
        await self.send(event("conversation.item.done", item=public_item(item),
                              previous_item_id=self.previous_id(item)))

    # --- helpers ---

    def _transcriber(self, new: session_config.SessionConfig) -> tuple[ModelEntry, dict[str, Any]]:
        wanted = new.audio.input.transcription or session_config.Transcription()
        if wanted.prompt:
            raise RealtimeError("A transcription prompt is not supported here; leave it empty", "invalid_value",
                                param="session.audio.input.transcription.prompt")
        entry = self.services.model_for(TRANSCRIPTION_TASK, wanted.model)
        try:
            options = TranscriptionOptions(language=wanted.language)
        except ValueError as bad:
            raise RealtimeError(str(bad).splitlines()[-1].strip(), "invalid_value",
                                param="session.audio.input.transcription.language") from None
        return entry, {"language": options.language}

    def speaker_for(self, new: session_config.SessionConfig) -> tuple[ModelEntry, str, float]:
        output = new.output
        entry = self.services.model_for(SPEECH_TASK, None)
        voice = None if output.voice.lower() in session_config.OPENAI_VOICES else output.voice
        check_speed(self.services.catalog, entry, output.speed)
        return entry, resolve_voice(entry, voice), output.speed

    def _vad(self) -> session_config.ServerVad:
        """The session's server_vad settings (called only while a detector runs)."""
        vad = self.config.audio.input.turn_detection
        assert vad is not None
        return vad

    def _new_detector(self) -> VoiceDetector | None:
        vad = self.config.audio.input.turn_detection
        if vad is None:
            return None
        return VoiceDetector(threshold=vad.threshold, silence_ms=vad.silence_duration_ms, fed_ms=self._heard_ms)

    def _keep_last(self, ms: int) -> None:
        """Drop buffered audio older than `ms` (silence before speech, beyond the prefix padding)."""
        keep = max(ms, 0) * MODEL_RATE // 1000
        if self._buffered > keep:
            audio = np.concatenate(self._buffer)[self._buffered - keep:] if keep else np.zeros(0, np.float32)
            self._buffer, self._buffered = [audio], len(audio)

    def _item_id(self, message: dict[str, Any]) -> str:
        item_id = message.get("item_id")
        if not isinstance(item_id, str) or item_id not in self.items:
            raise RealtimeError(f"No item {item_id!r} in this conversation", "item_not_found", param="item_id")
        return item_id

    def previous_id(self, item: dict[str, Any]) -> str | None:
        ids = list(self.items)
        at = ids.index(item["id"]) if item["id"] in ids else 0
        return ids[at - 1] if at else None


HANDLERS: dict[str, Callable[[Session, dict[str, Any]], Awaitable[None]]] = {
    "session.update": Session.session_update,
    "input_audio_buffer.append": Session.append,
    "input_audio_buffer.commit": Session.commit,
    "input_audio_buffer.clear": Session.clear,
    "conversation.item.create": Session.item_create,
    "conversation.item.delete": Session.item_delete,
    "conversation.item.retrieve": Session.item_retrieve,
    "conversation.item.truncate": Session.item_truncate,
    "response.create": Session.response_create,
    "response.cancel": Session.response_cancel,
}
