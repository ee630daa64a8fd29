"""Spoken test audio as a person would make it: espeak-ng says a sentence, framed by silence, as the 24 kHz
16-bit PCM a Realtime API client sends."""

from __future__ import annotations

import base64
import json
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

RATE = 24000
CHUNK_MS = 100  # what a client's microphone callback sends at a time


def spoken(text: str, silence_before_s: float = 0.5, silence_after_s: float = 1.2) -> np.ndarray:
    """espeak-ng's voice saying `text`, as float samples at 24 kHz, with silence around it."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "said.wav"
        subprocess.run(["espeak-ng", "-w", str(path), text], check=True, capture_output=True)
        audio, rate = sf.read(path, dtype="float32")
    audio = resample_poly(audio, RATE // 50, rate // 50).astype(np.float32) if rate % 50 == 0 else \
        resample_poly(audio, RATE, rate).astype(np.float32)
    return np.concatenate([np.zeros(int(silence_before_s * RATE), np.float32), audio,
                           np.zeros(int(silence_after_s * RATE), np.float32)])


def pcm16(audio: np.ndarray) -> bytes:
    return (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()


def appends(audio: np.ndarray) -> list[str]:
    """The audio as input_audio_buffer.append events of CHUNK_MS each (JSON text)."""
    data = pcm16(audio)
    step = RATE * 2 * CHUNK_MS // 1000
    return [json.dumps({"type": "input_audio_buffer.append", "audio": base64.b64encode(data[at:at + step]).decode()})
            for at in range(0, len(data), step)]
