"""The speech engines, one per catalog family, behind one contract (SpeechEngine): the deployment picks the
engine by the model's catalog family (ENGINES), and every engine loads from the manager's files, says which
requests may share a call, checks a text's length and turns texts into audio."""

from __future__ import annotations

import io
import logging
import re
import zipfile
from collections import defaultdict
from collections.abc import Hashable
from pathlib import Path
from typing import Protocol

import numpy as np

from deployments.errors import InvalidRequest
from deployments.families.speech.cloning import CsmEngine
from deployments.families.speech.protocol import SpeechRequest
from registry import ModelEntry

logger = logging.getLogger(__name__)


class SpeechEngine(Protocol):
    """What the speech deployment asks of an engine."""

    sample_rate: int

    def __init__(self, entry: ModelEntry, paths: dict[str, str], device: str) -> None: ...

    def batch_key(self, request: SpeechRequest) -> Hashable:
        """Requests with equal keys share one synthesize call (None: any may)."""

    def check_text(self, text: str) -> int:
        """The text's length in the model's tokens, or a 400 naming the model's limit."""

    def synthesize(self, requests: list[SpeechRequest]) -> list:
        """One float32 waveform per request, at sample_rate."""


def _too_long(entry: ModelEntry, tokens: int, limit: int) -> InvalidRequest:
    return InvalidRequest(f"Text is {tokens} tokens long; model '{entry.id}' reads at most {limit} tokens. "
                          f"Split it into shorter requests")


class SpeechT5Engine:
    """SpeechT5 + HiFi-GAN; a voice is a CMU ARCTIC speaker's x-vector."""

    def __init__(self, entry: ModelEntry, paths: dict[str, str], device: str):
        import torch
        from transformers import SpeechT5ForTextToSpeech, SpeechT5HifiGan, SpeechT5Processor

        self.entry, self.device = entry, device
        self.processor = SpeechT5Processor.from_pretrained(paths["weights"])
        self.model = SpeechT5ForTextToSpeech.from_pretrained(paths["weights"]).to(device).eval()
        self.vocoder = SpeechT5HifiGan.from_pretrained(paths["vocoder"]).to(device).eval()
        self.voices = {voice: vector.to(device) for voice, vector in
                       load_speaker_xvectors(Path(paths["speaker-embeddings"]), entry.specs.voices or []).items()}
        self.sample_rate = self.vocoder.config.sampling_rate
        config = self.model.config
        self.max_tokens = min(filter(None, (entry.specs.max_input_tokens, config.max_text_positions)))
        # decoder steps, each r mel frames of prod(upsample_rates) samples; positions bound them too
        samples_per_frame = int(np.prod(self.vocoder.config.upsample_rates))
        frames = int((entry.specs.max_duration_seconds or 1e9) * self.sample_rate / samples_per_frame)
        self.max_steps = min(frames // config.reduction_factor, config.max_speech_positions - 1)
        self._torch = torch

    def batch_key(self, request: SpeechRequest) -> None:
        return None  # each row carries its own speaker embedding

    def check_text(self, text: str) -> int:
        tokens = len(self.processor(text=text, normalize=True).input_ids)
        if tokens > self.max_tokens:
            raise _too_long(self.entry, tokens, self.max_tokens)
        return tokens

    def synthesize(self, requests: list[SpeechRequest]) -> list[np.ndarray]:
        torch = self._torch
        inputs = self.processor(text=[r.text for r in requests], normalize=True, padding=True, return_tensors="pt")
        speakers = torch.stack([self.voices[r.voice] for r in requests])
        ratio = self.model.config.reduction_factor
        max_ratio = min(20.0, self.max_steps * ratio / inputs.input_ids.shape[1])  # 20: generate's default
        with torch.inference_mode():
            spectrograms, lengths = self.model.generate(
                inputs.input_ids.to(self.device), attention_mask=inputs.attention_mask.to(self.device),
                speaker_embeddings=speakers, maxlenratio=max_ratio, return_output_lengths=True)
            audio = []
            for spectrogram, length, request in zip(spectrograms, lengths, requests):
                spectrogram = spectrogram[:length]
                if request.speed != 1.0:  # stretch the mel frames in time: faster speech, same pitch
                    frames = max(1, round(length / request.speed))
                    spectrogram = torch.nn.functional.interpolate(
                        spectrogram.T[None], size=frames, mode="linear", align_corners=False)[0].T
                audio.append(self.vocoder(spectrogram).float().cpu().numpy())
        return audio


XVECTOR_FILE = re.compile(r"cmu_us_(?P<speaker>[a-z]+)_arctic-[^/]*\.npy$")


def load_speaker_xvectors(folder: Path, voices: list[str]) -> dict:
    """Each voice's speaker embedding: the mean of that CMU ARCTIC speaker's utterance x-vectors,
    scaled to unit length like the x-vectors SpeechT5 was trained with. Reads the dataset's
    `spkrec-xvect.zip` (one .npy per utterance), or loose .npy files of the same names."""
    import torch

    found: dict[str, list[np.ndarray]] = defaultdict(list)

    def add(name: str, read) -> None:
        match = XVECTOR_FILE.search(name)
        if match and match["speaker"] in voices:
            found[match["speaker"]].append(np.load(io.BytesIO(read())).reshape(-1))

    for archive in sorted(folder.glob("*.zip")):
        with zipfile.ZipFile(archive) as zipped:
            for name in zipped.namelist():
                add(name, lambda name=name: zipped.read(name))
    for path in sorted(folder.rglob("*.npy")):
        add(path.name, path.read_bytes)
    missing = [voice for voice in voices if not found[voice]]
    if missing:
        logger.warning("speaker embeddings in %s have no x-vectors for voices %s", folder, ", ".join(missing))
    return {voice: torch.nn.functional.normalize(torch.from_numpy(np.mean(found[voice], axis=0)).float(), dim=0)
            for voice in voices if found[voice]}


class BarkEngine:
    """Bark (semantic → coarse → fine → EnCodec); a voice is one of the repo's history-prompt presets."""

    def __init__(self, entry: ModelEntry, paths: dict[str, str], device: str):
        import torch
        from transformers import BarkModel, BarkProcessor

        self.entry, self.device = entry, device
        self.processor = BarkProcessor.from_pretrained(paths["weights"])
        self.model = BarkModel.from_pretrained(paths["weights"]).to(device).eval()
        presets = set(self.processor.available_voice_presets)
        self.voices = [voice for voice in entry.specs.voices or [] if voice in presets]
        if len(self.voices) < len(entry.specs.voices or []):
            logger.warning("Bark repo %s lacks voice presets %s", entry.hub.repo_id,
                           ", ".join(sorted(set(entry.specs.voices) - presets)))
        generation = self.model.generation_config
        semantic = generation.semantic_config  # a dict, as BarkModel.generate reads it
        self.sample_rate = generation.sample_rate
        self.input_length = semantic["max_input_semantic_length"]  # the semantic model reads exactly this many
        self.max_tokens = min(filter(None, (entry.specs.max_input_tokens, self.input_length)))
        seconds = entry.specs.max_duration_seconds
        self.max_semantic_tokens = min(semantic["max_new_tokens"],
                                       int(seconds * semantic["semantic_rate_hz"]) if seconds else 10**9)
        self._torch = torch

    def batch_key(self, request: SpeechRequest) -> str:
        return request.voice  # one history prompt per generate call

    def check_text(self, text: str) -> int:
        tokens = len(self.processor.tokenizer(text, add_special_tokens=False).input_ids)
        if tokens > self.max_tokens:
            raise _too_long(self.entry, tokens, self.max_tokens)
        return tokens

    def synthesize(self, requests: list[SpeechRequest]) -> list[np.ndarray]:
        torch = self._torch
        inputs = self.processor([r.text for r in requests], voice_preset=requests[0].voice,
                                max_length=self.input_length)
        history = {key: value.to(self.device) for key, value in inputs.pop("history_prompt").items()}
        with torch.inference_mode():
            audio, lengths = self.model.generate(
                input_ids=inputs.input_ids.to(self.device), attention_mask=inputs.attention_mask.to(self.device),
                history_prompt=history, semantic_max_new_tokens=self.max_semantic_tokens, return_output_lengths=True)
        return [audio[i, :length].float().cpu().numpy() for i, length in enumerate(lengths)]


# The catalog family of a speech model -> its engine.
ENGINES: dict[str, type[SpeechEngine]] = {"speecht5": SpeechT5Engine, "bark": BarkEngine, "csm": CsmEngine}
