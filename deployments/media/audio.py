"""Audio files in and out, through soundfile (libsndfile: WAV, FLAC, MP3, OGG), and PyAV (FFmpeg)
for what libsndfile cannot read: m4a/mp4 (AAC), webm (Opus), what browsers and OpenAI clients send.

Hostile audio is refused before it is decoded: duration, channels and sample rate are read from the
header and checked against `AudioLimits` (a 1.4 MB FLAC of an hour of 8-channel silence decodes to
5.5 GB of float32). Decoding then runs in blocks under a running cap, since a header can lie, and an
upload is decoded whole once (block by block) so a truncated or mislabelled file is refused at upload.
"""

from __future__ import annotations

import io
import math
import struct
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import soundfile as sf

from deployments.errors import PayloadTooLarge

if TYPE_CHECKING:
    from deployments.settings import ServiceSettings

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
BLOCK_FRAMES = 1 << 16  # frames decoded at a time: 2 MiB of float32 at 8 channels
UNKNOWN_LENGTH = 1 << 62  # libsndfile's frame count for a stream that does not say its length


class BadAudio(ValueError):
    """The bytes are not a complete, decodable audio file; the message says why."""


class AudioTooLarge(PayloadTooLarge):
    """Audio over a limit (duration, channels, sample rate, decoded samples): a 413 naming the limit."""

    error = "Audio too large"


@dataclass(frozen=True)
class AudioInfo:
    sample_rate: int
    channels: int
    frames: int  # from a header: 0 when it does not say
    format: str
    via_ffmpeg: bool = False  # decoded by PyAV, not libsndfile

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate


@dataclass(frozen=True)
class AudioLimits:
    """What one piece of audio may be. Defaults are ServiceSettings' (INFERENCE_AUDIO_MAX_*)."""

    max_seconds: float | None = None  # None: only the decoded-samples cap bounds the length
    max_channels: int = 8
    max_sample_rate: int = 192_000
    max_samples: int = 1_036_800_000  # frames x channels: 3 h of 48 kHz stereo
    seconds_rule: str = "INFERENCE_AUDIO_MAX_DURATION_SECONDS"  # where max_seconds comes from, for messages

    @classmethod
    def from_settings(cls, settings: ServiceSettings, max_seconds: float | None = None,
                      seconds_rule: str | None = None) -> AudioLimits:
        """The service's limits; `max_seconds` (a model's own) applies where it is below the service's."""
        ceiling = settings.audio_max_duration_seconds
        own = max_seconds is not None and max_seconds < ceiling
        return cls(max_seconds=max_seconds if own else ceiling, max_channels=settings.audio_max_channels,
                   max_sample_rate=settings.audio_max_sample_rate, max_samples=settings.audio_max_decoded_samples,
                   seconds_rule=(seconds_rule or "the model's limit") if own else cls.seconds_rule)


def check_audio_limits(info: AudioInfo, limits: AudioLimits, what: str = "The audio") -> None:
    """AudioTooLarge naming the first limit `info` passes; `what` says whose numbers they are."""
    if info.channels > limits.max_channels:
        raise AudioTooLarge(f"{what} has {info.channels} channels; the limit is {limits.max_channels} "
                            f"(INFERENCE_AUDIO_MAX_CHANNELS)")
    if info.sample_rate > limits.max_sample_rate:
        raise AudioTooLarge(f"{what} is sampled at {info.sample_rate} Hz; the limit is {limits.max_sample_rate} Hz "
                            f"(INFERENCE_AUDIO_MAX_SAMPLE_RATE)")
    if limits.max_seconds is not None and info.duration > limits.max_seconds:
        raise AudioTooLarge(f"{what} is {info.duration:.1f}s long; the limit is {limits.max_seconds:g}s "
                            f"({limits.seconds_rule})")
    if info.frames * info.channels > limits.max_samples:
        raise AudioTooLarge(f"{what} decodes to {info.frames * info.channels} samples ({info.duration:.1f}s x "
                            f"{info.channels} channels at {info.sample_rate} Hz); the limit is {limits.max_samples} "
                            f"samples (INFERENCE_AUDIO_MAX_DECODED_SAMPLES)")


def audio_header(source: Path | bytes) -> AudioInfo:
    """What the header claims (duration, channels, rate), read without decoding, or BadAudio."""
    try:
        info = sf.info(str(source) if isinstance(source, Path) else io.BytesIO(source))
    except (sf.LibsndfileError, RuntimeError) as error:
        return _ffmpeg_header(source, error)
    frames = info.frames if 0 < info.frames < UNKNOWN_LENGTH else 0
    return AudioInfo(info.samplerate, info.channels, frames, info.format)


def _ffmpeg_header(source: Path | bytes, sndfile_error: Exception) -> AudioInfo:
    """The container's and stream's own numbers: m4a/mp4 (moov) and webm (Segment Info) state a duration."""
    import av

    try:
        with av.open(str(source) if isinstance(source, Path) else io.BytesIO(source), mode="r") as container:
            if not container.streams.audio:
                raise BadAudio(f"not a readable audio file ({_reason(sndfile_error)})")
            stream = container.streams.audio[0]
            rate = stream.rate or stream.codec_context.sample_rate
            if stream.duration and stream.time_base:
                seconds = float(stream.duration * stream.time_base)
            else:
                seconds = (container.duration or 0) / av.time_base
            name = {"matroska": "WEBM", "mov": "M4A"}.get(container.format.name.split(",")[0], container.format.name)
            channels = stream.codec_context.channels
    except av.FFmpegError:
        raise BadAudio(f"not a readable audio file ({_reason(sndfile_error)})") from None
    if not rate:
        raise BadAudio("the audio stream states no sample rate")
    return AudioInfo(rate, channels, max(0, round(seconds * rate)), name, via_ffmpeg=True)


def _blocks(path: Path, header: AudioInfo, limits: AudioLimits) -> Iterator[np.ndarray]:
    """(frames, channels) float32 blocks, stopped with AudioTooLarge once the decoded length passes a limit
    (1 s of slack over max_seconds: codecs pad, and headers round)."""
    rate, channels = header.sample_rate, max(1, header.channels)
    most = limits.max_samples // channels
    if limits.max_seconds is not None:
        most = min(most, math.ceil((limits.max_seconds + 1) * rate))
    decoded = 0
    for block in (_ffmpeg_blocks(path) if header.via_ffmpeg else _sndfile_blocks(path)):
        decoded += len(block)
        if decoded > most:
            check_audio_limits(AudioInfo(rate, channels, decoded, header.format), limits,
                               "The audio (more than its header claims; decoding stopped there)")
        yield block


def _sndfile_blocks(path: Path) -> Iterator[np.ndarray]:
    try:
        yield from sf.blocks(str(path), blocksize=BLOCK_FRAMES, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as error:
        raise BadAudio(f"audio data cannot be decoded ({_reason(error)})") from None


def _ffmpeg_blocks(path: Path) -> Iterator[np.ndarray]:
    import av

    try:
        with av.open(str(path), mode="r") as container:
            if not container.streams.audio:
                raise BadAudio("the file holds no audio stream")
            stream = container.streams.audio[0]
            to_float = av.AudioResampler(format="fltp", layout=stream.layout.name, rate=stream.rate)
            for frame in container.decode(stream):
                for block in to_float.resample(frame):
                    yield block.to_ndarray().T
            for block in to_float.resample(None):
                yield block.to_ndarray().T
    except av.FFmpegError as error:
        raise BadAudio(f"audio data cannot be decoded ({error.strerror or error})") from None


def _decode(path: Path, limits: AudioLimits, keep: bool, mono: bool) -> tuple[AudioInfo, list[np.ndarray]]:
    """Header checked, then every block decoded under the running cap; the blocks (downmixed when `mono`)
    are kept only when asked, so a check alone holds one block at a time."""
    header = audio_header(path)
    check_audio_limits(header, limits)
    if not header.via_ffmpeg:
        _check_riff_length(path, header.format)
    kept, decoded = [], 0
    for block in _blocks(path, header, limits):
        decoded += len(block)
        if keep:
            kept.append((block[:, 0] if block.shape[1] == 1 else block.mean(axis=1)) if mono else block)
    if decoded == 0:
        raise BadAudio("the file holds no audio frames")
    if not header.via_ffmpeg and header.frames and decoded < 0.99 * header.frames:
        raise BadAudio(f"truncated: the header announces {header.frames} frames but only {decoded} decode")
    return AudioInfo(header.sample_rate, header.channels, decoded, header.format, header.via_ffmpeg), kept


def probe_audio(path: Path, limits: AudioLimits | None = None) -> AudioInfo:
    """Check the header against `limits`, decode the whole file once in blocks, and describe it; or
    BadAudio naming the problem, or AudioTooLarge naming the limit."""
    info, _ = _decode(path, limits or AudioLimits(), keep=False, mono=False)
    return info


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


def read_audio(path: Path, limits: AudioLimits | None = None) -> tuple[np.ndarray, int]:
    """(channels, frames) float32 and the sample rate, decoded under `limits`."""
    info, blocks = _decode(path, limits or AudioLimits(), keep=True, mono=False)
    return np.ascontiguousarray(np.concatenate(blocks).T, dtype=np.float32), info.sample_rate


def write_audio(path: Path, audio: np.ndarray, sample_rate: int, fmt: str) -> None:
    """Write (channels, frames) float audio in one of OUTPUT_FORMATS."""
    container, subtype, _ = OUTPUT_FORMATS[fmt]
    sf.write(str(path), np.ascontiguousarray(audio.T), sample_rate, format=container, subtype=subtype)


def decode_audio(data: bytes, sample_rate: int, limits: AudioLimits | None = None) -> np.ndarray:
    """Encoded bytes as mono float32 at `sample_rate` (what speech models hear), or BadAudio/AudioTooLarge.

    Refused from the header before decoding; each block is downmixed as it is decoded, so what is held
    is the mono audio at the file's rate, at most limits.max_seconds of it. The format is read from the
    content, so the client's file name does not matter.
    """
    from scipy.signal import resample_poly

    with tempfile.NamedTemporaryFile(prefix="audio-") as file:
        file.write(data)
        file.flush()
        info, blocks = _decode(Path(file.name), limits or AudioLimits(), keep=True, mono=True)
    mono = np.concatenate(blocks)
    del blocks
    rate = info.sample_rate
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
