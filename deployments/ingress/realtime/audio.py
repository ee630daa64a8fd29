"""The Realtime API's audio formats: 24 kHz 16-bit PCM and 8 kHz G.711 (mu-law, A-law), decoded to float
samples and resampled to the 16 kHz the detector and Whisper read, and back for the answer's audio."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

import numpy as np
from scipy.signal import resample_poly

MODEL_RATE = 16000  # what Silero VAD and Whisper read


@dataclass(frozen=True)
class AudioFormat:
    type: str
    rate: int
    bytes_per_sample: int


FORMATS = {fmt.type: fmt for fmt in (AudioFormat("audio/pcm", 24000, 2), AudioFormat("audio/pcmu", 8000, 1),
                                     AudioFormat("audio/pcma", 8000, 1))}


def _mu_law_table() -> np.ndarray:
    codes = ~np.arange(256, dtype=np.int32) & 0xFF
    exponent, mantissa = (codes >> 4) & 7, codes & 0x0F
    magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84
    return np.where(codes & 0x80, -magnitude, magnitude).astype(np.float32) / 32768


def _a_law_table() -> np.ndarray:
    codes = np.arange(256, dtype=np.int32) ^ 0x55
    exponent, mantissa = (codes >> 4) & 7, codes & 0x0F
    magnitude = np.where(exponent == 0, (mantissa << 4) + 8, ((mantissa << 4) + 0x108) << np.maximum(exponent - 1, 0))
    return np.where(codes & 0x80, magnitude, -magnitude).astype(np.float32) / 32768


# G.711: each byte a code, decoded by table; encoding picks the code whose value is nearest
TABLES = {"audio/pcmu": _mu_law_table(), "audio/pcma": _a_law_table()}
_SORTED = {name: (np.argsort(table), np.sort(table)) for name, table in TABLES.items()}


class BadAudio(ValueError):
    pass


def decode_base64(audio: str, fmt: AudioFormat) -> bytes:
    try:
        data = base64.b64decode(audio, validate=True)
    except (binascii.Error, ValueError):
        raise BadAudio("audio is not valid base64") from None
    if len(data) % fmt.bytes_per_sample:
        raise BadAudio(f"{fmt.type} audio comes in whole {fmt.bytes_per_sample}-byte samples; got {len(data)} bytes")
    return data


def to_model_rate(data: bytes, fmt: AudioFormat) -> np.ndarray:
    """Bytes of `fmt` as float32 samples at 16 kHz."""
    if fmt.type == "audio/pcm":
        samples = np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768
    else:
        samples = TABLES[fmt.type][np.frombuffer(data, dtype=np.uint8)]
    return resample(samples, fmt.rate, MODEL_RATE)


def from_samples(samples: np.ndarray, rate: int, fmt: AudioFormat) -> bytes:
    """Float samples at `rate` as bytes of `fmt`."""
    samples = np.clip(resample(samples, rate, fmt.rate), -1, 1)
    if fmt.type == "audio/pcm":
        return (samples * 32767).round().astype("<i2").tobytes()
    order, values = _SORTED[fmt.type]
    nearest = np.clip(np.searchsorted(values, samples), 1, len(values) - 1)
    nearest -= (samples - values[nearest - 1]) < (values[nearest] - samples)
    return order[nearest].astype(np.uint8).tobytes()


def resample(samples: np.ndarray, rate: int, to_rate: int) -> np.ndarray:
    if rate == to_rate or not len(samples):
        return samples.astype(np.float32, copy=False)
    divisor = np.gcd(rate, to_rate)
    return resample_poly(samples, to_rate // divisor, rate // divisor).astype(np.float32)


def duration_ms(data_bytes: int, fmt: AudioFormat) -> int:
    return data_bytes // fmt.bytes_per_sample * 1000 // fmt.rate
