"""Voice cloning: Sesame CSM (transformers' `CsmForConditionalGeneration`, Mimi codec), which speaks
in the voice of a reference sample given as the context turn of a conversation, with its transcript.
Chatterbox (seed 004's model) pins torch 2.6 and torchaudio, so it cannot run beside torch 2.13; CSM
needs neither. Without a sample, CSM speaks as one of its speaker ids (the catalog's `voices`).

The ingress checks a sample (size; duration within the catalog's bounds and channels and rate, from the
header before decoding; decodable) before it reaches the replica; the engine decodes it again at the codec's
sample rate, under the same duration cap.
"""

from __future__ import annotations

import dataclasses
import threading
from typing import Any

import numpy as np

from deployments.errors import InvalidRequest
from deployments.media.audio import AudioLimits, BadAudio, audio_header, check_audio_limits, decode_audio
from registry import ModelEntry

_SEEDING = threading.Lock()  # torch's global generator: one seeded generate at a time per replica


def sample_limits(entry: ModelEntry, limits: AudioLimits | None = None) -> AudioLimits:
    """`limits` (the service's) with the model's longest voice sample as the duration cap."""
    limits = limits or AudioLimits()
    high = entry.specs.max_voice_sample_seconds
    if high is None or (limits.max_seconds is not None and limits.max_seconds < high):
        return limits
    return dataclasses.replace(limits, max_seconds=high, seconds_rule=f"model '{entry.id}'s max_voice_sample_seconds")


def check_voice_sample(entry: ModelEntry, data: bytes, source: str, limits: AudioLimits | None = None) -> float:
    """The sample's duration in seconds, or a 4xx saying what is wrong with it: its header is read first,
    so a sample that claims to be too long, too wide or too fast is refused before it is decoded."""
    if not data:
        raise InvalidRequest(f"The voice sample ({source}) is empty")
    low, high = entry.specs.min_voice_sample_seconds or 0, entry.specs.max_voice_sample_seconds or float("inf")
    try:
        header = audio_header(data)
        if header.duration > high:
            raise InvalidRequest(f"The voice sample ({source}) is {header.duration:.1f}s long; model '{entry.id}' "
                                 f"takes samples of {low:g}-{high:g}s")
        check_audio_limits(header, sample_limits(entry, limits), f"The voice sample ({source})")
        audio = decode_audio(data, entry.specs.sample_rate or 24000, sample_limits(entry, limits))
    except BadAudio as bad:
        raise InvalidRequest(f"The voice sample ({source}) is not audio this service can decode: {bad}") from None
    seconds = len(audio) / (entry.specs.sample_rate or 24000)
    if not low <= seconds <= high:
        raise InvalidRequest(f"The voice sample ({source}) is {seconds:.1f}s long; model '{entry.id}' takes "
                             f"samples of {low:g}-{high:g}s")
    return seconds


class CsmEngine:
    """CSM: the text (and the sample's turn, when cloning) in, Mimi codes out, decoded to 24 kHz audio."""

    def __init__(self, entry: ModelEntry, paths: dict[str, str], device: str):
        import torch
        from transformers import AutoProcessor, CsmForConditionalGeneration

        self.entry, self.device = entry, device
        self.processor = AutoProcessor.from_pretrained(paths["weights"])
        self.model = CsmForConditionalGeneration.from_pretrained(paths["weights"]).to(device).eval()
        self.sample_rate = self.processor.feature_extractor.sampling_rate
        self.voices = list(entry.specs.voices or ["0"])
        codec = self.model.config.codec_config
        self.max_frames = max(1, int((entry.specs.max_duration_seconds or 20) * codec.frame_rate))
        self.max_tokens = entry.specs.max_input_tokens or 10**9
        # codes past the codec's codebook (CSM's padding and spare ids) cannot be decoded: never sample them
        self.undecodable = list(range(codec.codebook_size, self.model.config.vocab_size))
        self._torch = torch

    def batch_key(self, request: Any) -> None:
        return None

    def check_text(self, text: str) -> int:
        tokens = len(self.processor.tokenizer(text, add_special_tokens=False).input_ids)
        if tokens > self.max_tokens:
            raise InvalidRequest(f"Text is {tokens} tokens long; model '{self.entry.id}' reads at most "
                                 f"{self.max_tokens} tokens. Split it into shorter requests")
        return tokens

    def synthesize(self, requests: list[Any]) -> list[np.ndarray]:
        return [self._speak(request) for request in requests]

    def _speak(self, request: Any) -> np.ndarray:
        torch = self._torch
        speaker = request.voice if request.voice in self.voices else self.voices[0]
        conversation = []
        if request.voice_sample:
            sample = decode_audio(request.voice_sample, self.sample_rate, sample_limits(self.entry))
            conversation.append({"role": speaker, "content": [{"type": "text", "text": request.voice_sample_text or ""},
                                                              {"type": "audio", "audio": sample}]})
        conversation.append({"role": speaker, "content": [{"type": "text", "text": request.text}]})
        inputs = self.processor.apply_chat_template(conversation, tokenize=True, return_dict=True).to(self.device)
        with _SEEDING, torch.inference_mode():
            torch.manual_seed(request.seed if request.seed is not None else 0)
            audio = self.model.generate(**inputs, output_audio=True, max_new_tokens=self.max_frames,
                                        suppress_tokens=self.undecodable,
                                        depth_decoder_suppress_tokens=self.undecodable)
        return audio[0].float().cpu().numpy()
