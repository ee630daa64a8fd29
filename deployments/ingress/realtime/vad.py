"""Server voice activity detection: Silero VAD (v6, the ONNX file faster-whisper ships) on 32 ms chunks at
16 kHz, inside the session. One chunk costs about 0.1 ms of one core, so a detector per session is cheaper
than a call to a deployment would be. Where the model file is missing, an energy detector stands in (logged)."""

from __future__ import annotations

import functools
import importlib.util
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deployments.ingress.realtime.audio import MODEL_RATE

logger = logging.getLogger(__name__)
CHUNK = 512  # samples per decision at 16 kHz (32 ms), what Silero was trained on
CONTEXT = 64  # samples of the previous chunk each decision also sees
CHUNK_MS = CHUNK * 1000 // MODEL_RATE


def silero_model_path() -> Path | None:
    """faster-whisper's copy of Silero VAD, found without importing faster-whisper (or torch)."""
    spec = importlib.util.find_spec("faster_whisper")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "assets" / "silero_vad_v6.onnx"
    return path if path.is_file() else None


@functools.cache
def silero_session() -> Any | None:
    """One ONNX Runtime session per ingress process, shared by its realtime sessions (run is thread-safe)."""
    path = silero_model_path()
    if path is None:
        logger.warning("Silero VAD's model file is missing (faster-whisper not installed): server_vad falls "
                       "back to an energy detector")
        return None
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return onnxruntime.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


@dataclass
class SpeechProbability:
    """Speech probability per 32 ms chunk, the recurrent state carried from chunk to chunk."""

    _state: tuple[np.ndarray, np.ndarray] = field(
        default_factory=lambda: (np.zeros((1, 1, 128), np.float32), np.zeros((1, 1, 128), np.float32)))
    _context: np.ndarray = field(default_factory=lambda: np.zeros(CONTEXT, np.float32))

    def __call__(self, chunks: np.ndarray) -> np.ndarray:
        """chunks: (n, 512) float32 -> n probabilities."""
        model = silero_session()
        if model is None:
            return np.clip(np.sqrt((chunks ** 2).mean(axis=1)) / 0.02, 0, 1)  # RMS of 0.02 (-34 dBFS) = 1
        contexts = np.concatenate([self._context[None], chunks[:-1, -CONTEXT:]])
        self._context = chunks[-1, -CONTEXT:].copy()
        h, c = self._state
        probabilities, h, c = model.run(None, {"input": np.concatenate([contexts, chunks], axis=1), "h": h, "c": c})
        self._state = (h, c)
        return probabilities.reshape(-1)


@dataclass
class VoiceDetector:
    """server_vad: speech starts at a chunk at or over `threshold` and stops after `silence_ms` below
    `threshold - 0.15` (Silero's own hysteresis). Times are ms of all audio fed since the session began."""

    threshold: float = 0.5
    silence_ms: int = 500
    probability: SpeechProbability = field(default_factory=SpeechProbability)
    speaking: bool = False
    fed_ms: int = 0  # audio decided on so far
    _pending: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    _quiet_ms: int = 0
    _last_voice_ms: int = 0

    def feed(self, samples: np.ndarray) -> list[tuple[str, int]]:
        """("started", audio_start_ms) and ("stopped", audio_end_ms) transitions in the new audio."""
        audio = np.concatenate([self._pending, samples])
        whole = len(audio) // CHUNK * CHUNK
        self._pending = audio[whole:]
        if not whole:
            return []
        events = []
        for probability in self.probability(audio[:whole].reshape(-1, CHUNK)):
            start, self.fed_ms = self.fed_ms, self.fed_ms + CHUNK_MS
            if not self.speaking and probability >= self.threshold:
                self.speaking, self._quiet_ms, self._last_voice_ms = True, 0, self.fed_ms
                events.append(("started", start))
            elif self.speaking and probability < max(self.threshold - 0.15, 0.01):
                self._quiet_ms += CHUNK_MS
                if self._quiet_ms >= self.silence_ms:
                    self.speaking = False
                    events.append(("stopped", self._last_voice_ms))
            elif self.speaking:
                self._quiet_ms, self._last_voice_ms = 0, self.fed_ms
        return events
