"""Audio files in and out, through soundfile (libsndfile: WAV, FLAC, MP3, OGG).

Uploads are checked by decoding them whole, so a truncated or mislabelled file is refused at
upload with the reason, not discovered later inside a job.
"""

from __future__ import annotations

import math
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

# output format -> (libsndfile format, subtype, media type)
OUTPUT_FORMATS = {
    "wav": ("WAV", "PCM_16", "audio/wav"),
    "flac": ("FLAC", "PCM_16", "audio/flac"),
    "mp3": ("MP3", "MPEG_LAYER_III", "audio/mpeg"),
}
MEDIA_TYPES = {name: media for name, (_, _, media) in OUTPUT_FORMATS.items()} | {"ogg": "audio/ogg"}


class BadAudio(ValueError):
    """The bytes are not a complete, decodable audio file; the message says why."""


@dataclass(frozen=True)
class AudioInfo:
    sample_rate: int
    channels: int
    frames: int
    format: str

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate


def probe_audio(path: Path) -> AudioInfo:
    """Decode the whole file once and describe it, or raise BadAudio naming the problem."""
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError) as error:
        raise BadAudio(f"not a readable audio file ({_reason(error)})") from None
    _check_riff_length(path, info.format)
    try:
        decoded = sum(len(block) for block in sf.blocks(str(path), blocksize=1 << 16))
    except (sf.LibsndfileError, RuntimeError) as error:
        raise BadAudio(f"audio data cannot be decoded ({_reason(error)})") from None
    if decoded == 0:
        raise BadAudio("the file holds no audio frames")
    if info.frames and decoded < 0.99 * info.frames:
        raise BadAudio(f"truncated: the header announces {info.frames} frames but only {decoded} decode")
    return AudioInfo(info.samplerate, info.channels, decoded, info.format)


def _check_riff_length(path: Path, fmt: str) -> None:
    """libsndfile reads a WAV cut short without complaint; its RIFF header says how long it should be."""
    if fmt not in ("WAV", "WAVEX"):
        return
    with open(path, "rb") as file:
        header = file.read(8)
    declared = struct.unpack("<I", header[4:8])[0] + 8 if header[:4] == b"RIFF" else 0
    actual = path.stat().st_size
    if 0 < declared < 0xFFFFFFFF and actual < declared:
        raise BadAudio(f"truncated WAV: the header announces {declared} bytes but the file has {actual}")


def _reason(error: Exception) -> str:
    return str(error).split(": ", 1)[-1].strip()


def read_audio(path: Path) -> tuple[np.ndarray, int]:
    """(channels, frames) float32 and the sample rate."""
    data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    return np.ascontiguousarray(data.T), rate


def write_audio(path: Path, audio: np.ndarray, sample_rate: int, fmt: str) -> None:
    """Write (channels, frames) float audio in one of OUTPUT_FORMATS."""
    container, subtype, _ = OUTPUT_FORMATS[fmt]
    sf.write(str(path), np.ascontiguousarray(audio.T), sample_rate, format=container, subtype=subtype)


def decode_audio(data: bytes, sample_rate: int) -> np.ndarray:
    """Uploaded bytes as mono float32 at `sample_rate` (what speech models hear), or BadAudio.

    The bytes go through a temporary file so they get exactly the checks an upload gets; the
    format is read from the content, so the client's file name does not matter.
    """
    from scipy.signal import resample_poly

    with tempfile.NamedTemporaryFile(prefix="audio-") as file:
        file.write(data)
        file.flush()
        probe_audio(Path(file.name))
        audio, rate = read_audio(Path(file.name))
    mono = audio.mean(axis=0)
    if rate != sample_rate:
        step = math.gcd(rate, sample_rate)
        mono = resample_poly(mono, sample_rate // step, rate // step)
    return mono.astype(np.float32, copy=False)
