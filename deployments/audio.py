"""Audio files in and out, through soundfile (libsndfile: WAV, FLAC, MP3, OGG), and PyAV (FFmpeg)
for what libsndfile cannot read: m4a/mp4 (AAC), webm (Opus), what browsers and OpenAI clients send.

Uploads are checked by decoding them whole, so a truncated or mislabelled file is refused at
upload with the reason, not discovered later inside a job.
"""

from __future__ import annotations

import io
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
# speech adds OpenAI's raw 16-bit little-endian mono PCM (at the model's rate, given in X-Sample-Rate)
SPEECH_FORMATS = OUTPUT_FORMATS | {"pcm": ("RAW", "PCM_16", "audio/pcm")}
STREAM_FORMATS = ("wav", "pcm")  # formats whose pieces concatenate into one playable stream


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
        if not _ffmpeg_can_open(path):
            raise BadAudio(f"not a readable audio file ({_reason(error)})") from None
        audio, rate, container = _decode_with_ffmpeg(path)
        return AudioInfo(rate, audio.shape[0], audio.shape[1], container)
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
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError):
        audio, rate, _ = _decode_with_ffmpeg(path)
        return audio, rate
    return np.ascontiguousarray(data.T), rate


def _ffmpeg_can_open(path: Path) -> bool:
    """Whether FFmpeg finds an audio stream in a container libsndfile does not know (m4a, webm, mp4)."""
    import av

    try:
        with av.open(str(path)) as container:
            return bool(container.streams.audio)
    except av.FFmpegError:
        return False


def _decode_with_ffmpeg(path: Path) -> tuple[np.ndarray, int, str]:
    """(channels, frames) float32, the rate, and the container's name (M4A, WEBM, ...), or BadAudio."""
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise BadAudio("the file holds no audio stream")
            stream = container.streams.audio[0]
            to_float = av.AudioResampler(format="fltp", layout=stream.layout.name, rate=stream.rate)
            blocks = [block.to_ndarray() for frame in container.decode(stream) for block in to_float.resample(frame)]
            blocks += [block.to_ndarray() for block in to_float.resample(None)]
            name = {"matroska": "WEBM", "mov": "M4A"}.get(container.format.name.split(",")[0], container.format.name)
    except av.FFmpegError as error:
        raise BadAudio(f"audio data cannot be decoded ({error.strerror or error})") from None
    if not blocks or sum(block.shape[1] for block in blocks) == 0:
        raise BadAudio("the file holds no audio frames")
    return np.ascontiguousarray(np.concatenate(blocks, axis=1), dtype=np.float32), stream.rate, name


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


def pcm16(audio: np.ndarray, sample_rate: int) -> bytes:
    """Mono float audio as headerless 16-bit little-endian PCM, converted by libsndfile as the files are,
    so a streamed sentence holds the very samples of the same sentence's wav."""
    buffer = io.BytesIO()
    sf.write(buffer, audio.astype(np.float32), sample_rate, format="RAW", subtype="PCM_16", endian="LITTLE")
    return buffer.getvalue()


def wav_stream_header(sample_rate: int) -> bytes:
    """A 16-bit mono WAV header for audio of unknown length: sizes at their maximum, as streaming
    players (and libsndfile) read to the end of the data."""
    fmt = struct.pack("<IHHIIHH", 16, 1, 1, sample_rate, sample_rate * 2, 2, 16)
    return b"RIFF" + struct.pack("<I", 0xFFFFFFFF) + b"WAVEfmt " + fmt + b"data" + struct.pack("<I", 0xFFFFFFFF)
