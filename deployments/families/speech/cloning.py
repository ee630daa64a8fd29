"""Voice cloning: Sesame CSM (transformers' `CsmForConditionalGeneration`, Mimi codec), which speaks
in the voice of a reference sample given as the context turn of a conversation, with its transcript.
Chatterbox (seed 004's model) pins torch 2.6 and torchaudio, so it cannot run beside torch 2.13; CSM
needs neither. Without a sample, CSM speaks as one of its speaker ids (the catalog's `voices`).

The ingress checks a sample (size; duration within the catalog's bounds and channels and rate, from the
header before decoding; decodable) before it reaches the replica; the engine decodes it again at the codec's
sample rate, under the same duration cap.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from deployments.errors import InvalidRequest
from deployments.families.speech.protocol import sample_limits
from deployments.media.audio import decode_audio
from registry import ModelEntry

_SEEDING = threading.Lock()  # torch's global generator: one seeded generate at a time per replica






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
