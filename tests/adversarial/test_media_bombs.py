"""Media bombs against the real app: small files whose headers promise huge decodes. Each must be refused
with a 4xx naming the limit in under 2 s, while the ingress replica's peak memory grows by less than 200 MB
(VmHWM after resetting it through /proc/<pid>/clear_refs): the limits are read from the header, before
any decoding. Also: per-route body caps, and a Whisper model's own duration limit on the job path.

The bombs are built here: a real FLAC of an hour of 8-channel 48 kHz silence (soundfile, in blocks), a PNG
whose IHDR says 30,000 x 30,000 (a tiny IDAT), and a real WebM (PyAV, Opus) whose Segment Duration says
10 hours."""

from __future__ import annotations

import base64
import io
import os
import struct
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf

from tests.conftest import UPLOAD_LIMIT_BYTES
from tests.families.test_separation_jobs import make_clip

MAX_SECONDS, MAX_GROWTH = 2.0, 200 * 1024 * 1024
JSON_LIMIT = 1024 * 1024  # INFERENCE_MAX_JSON_BYTES's default; the suite leaves it
WHISPER_LIMIT_S, SERVICE_LIMIT_S = 10800, 4 * 3600  # catalog max_duration_seconds; INFERENCE_AUDIO_MAX_DURATION_SECONDS
SAMPLES_LIMIT = 1_036_800_000  # INFERENCE_AUDIO_MAX_DECODED_SAMPLES
MEASURED: list[str] = []  # one line per bomb, printed at the end of the module (pytest -s)


def flac_of_silence(seconds: int, channels: int, rate: int, total_known: bool = True) -> bytes:
    """A real FLAC, written a minute at a time; without `total_known` its STREAMINFO says 'length unknown'."""
    out = io.BytesIO()
    minute = np.zeros((rate * 60, channels), dtype=np.int16)
    with sf.SoundFile(out, "w", samplerate=rate, channels=channels, format="FLAC", subtype="PCM_16") as flac:
        for _ in range(seconds // 60):
            flac.write(minute)
    data = bytearray(out.getvalue())
    if not total_known:  # total samples: the low 4 bits of STREAMINFO byte 13 and the 4 bytes after it
        data[8 + 13] &= 0xF0
        data[8 + 14:8 + 18] = b"\0\0\0\0"
    return bytes(data)


def png_header_bomb(width: int, height: int) -> bytes:
    """A valid PNG signature and IHDR claiming width x height RGB, with one tiny IDAT."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 193))
            + chunk(b"IEND", b""))


def webm_claiming(hours: float) -> bytes:
    """One second of Opus in WebM by PyAV, with the Segment Info's Duration (EBML 0x4489, a float in
    milliseconds at the default TimecodeScale) rewritten to claim `hours`."""
    import av

    out = io.BytesIO()
    with av.open(out, "w", format="webm") as muxer:
        stream = muxer.add_stream("libopus", rate=48000, layout="mono")
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 48000), np.float32), format="flt", layout="mono")
        frame.rate = 48000
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            muxer.mux(packet)
    data = out.getvalue()
    at = data.index(b"\x44\x89")
    size = data[at + 2] & 0x0F
    claim = struct.pack(">d", hours * 3600e3) if size == 8 else struct.pack(">f", hours * 3600e3)
    return data[:at + 3] + claim + data[at + 3 + size:]


@pytest.fixture(scope="module")
def bombs() -> dict[str, bytes]:
    made = {"flac": flac_of_silence(3600, 8, 48000), "png": png_header_bomb(30000, 30000),
            "webm": webm_claiming(10)}
    assert len(made["flac"]) < 2_000_000 and sf.info(io.BytesIO(made["flac"])).duration == 3600
    return made


@pytest.fixture(scope="module", autouse=True)
def report_measurements(client):
    """First every deployment healthy and one real request through each model a bomb reaches (their
    replicas load their models before they take a request): on 2 cores, replicas that start with the app
    take the CPU for minutes, and the times measured are to be the refusals' own."""
    from PIL import Image
    from ray import serve

    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        deployments = serve.status().applications["inference"].deployments
        if all(deployment.status == "HEALTHY" for deployment in deployments.values()):
            break
        time.sleep(1)
    picture = io.BytesIO()
    Image.new("RGB", (32, 32), "white").save(picture, format="PNG")
    for route, files in (("/api/image/classify", {"file": ("a.png", picture.getvalue())}),
                         ("/api/image/describe", {"file": ("a.png", picture.getvalue())}),
                         ("/api/stt", {"audio": ("a.wav", make_clip(1.0, rate=16000, channels=1))})):
        assert client.post(route, files=files).status_code == 200, route
    yield
    print("\nmedia bombs (status, seconds, ingress peak growth):\n" + "\n".join(MEASURED))


# --- the ingress replica's memory ---

def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            tree.setdefault(parent, []).append(int(entry.name))
    return tree


def ingress_pids() -> list[int]:
    """This session's ingress replica processes: descendants of the test process (the Ray driver, which
    started the local Ray) whose title Ray set to the replica actor's class, ServeReplica:inference:Ingress."""
    tree, found, titles, stack = _children(), [], [], [os.getpid()]
    while stack:
        for child in tree.get(stack.pop(), []):
            stack.append(child)
            try:
                title = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
            except OSError:
                continue
            titles.append(title)
            if title.startswith("ray::ServeReplica:inference:Ingress"):
                found.append(child)
    assert found, f"no ingress replica process under this test session's Ray; processes: {sorted(set(titles))}"
    return found


def _status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for {pid}")


@contextmanager
def ingress_peak_growth() -> Iterator[dict[int, int]]:
    """Bytes by which each ingress replica's peak RSS passed its RSS before the block."""
    pids = ingress_pids()
    before = {}
    for pid in pids:
        Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM := VmRSS
        before[pid] = _status_kb(pid, "VmRSS")
    growth: dict[int, int] = {}
    yield growth
    growth.update({pid: (_status_kb(pid, "VmHWM") - before[pid]) * 1024 for pid in pids})


def assert_refused(name: str, send: Callable[[], httpx.Response], statuses: tuple[int, ...], *words: str) -> str:
    """`send` answers one of `statuses` naming every word, within MAX_SECONDS and MAX_GROWTH; its message."""
    with ingress_peak_growth() as growth:
        started = time.perf_counter()
        reply = send()
        elapsed = time.perf_counter() - started
    peak = max(growth.values())
    MEASURED.append(f"  {name}: {reply.status_code}, {elapsed:.3f} s, {peak / 2**20:.1f} MiB")
    assert reply.status_code in statuses, (name, reply.status_code, reply.text[:400])
    message = reply.json()["message"]  # also on /v1 routes, beside OpenAI's error object
    for word in words:
        assert word in message, (name, message)
    assert elapsed < MAX_SECONDS, (name, elapsed)
    assert peak < MAX_GROWTH, (name, f"ingress peak grew {peak / 2**20:.0f} MiB")
    return message


# --- (a) a FLAC of an hour of 8-channel 48 kHz silence ---

def test_flac_bomb_upload_is_refused_from_its_header(client, bombs):
    assert_refused("flac /upload/whisper", lambda: client.post("/upload/whisper", files={"file": ("hour.flac",
                   bombs["flac"])}), (413,), "hour.flac", f"the limit is {SAMPLES_LIMIT} samples",
                   "INFERENCE_AUDIO_MAX_DECODED_SAMPLES")
    assert_refused("flac /upload/csm (voice sample)", lambda: client.post("/upload/csm", files={"file": (
                   "hour.flac", bombs["flac"])}), (413,), "INFERENCE_AUDIO_MAX_DECODED_SAMPLES")


@pytest.mark.parametrize("route", ["/api/stt", "/v1/audio/translations"])
def test_flac_bomb_transcription_is_refused_before_the_replica(client, bombs, route):
    field = "audio" if route == "/api/stt" else "file"
    form = {"model": "whisper-base"} if route == "/api/stt" else {"model": "whisper-1"}
    assert_refused(f"flac {route}", lambda: client.post(route, files={field: ("hour.flac", bombs["flac"])},
                                                          data=form),
                   (413,), f"the limit is {SAMPLES_LIMIT} samples", "3600.0s x 8 channels at 48000 Hz")


def test_flac_bomb_through_the_openai_client(service, bombs):
    import openai

    api = openai.OpenAI(base_url=f"{service}/v1", api_key="unused", max_retries=0, timeout=30)

    def send() -> httpx.Response:
        try:
            api.audio.transcriptions.create(model="whisper-1", file=("hour.flac", bombs["flac"]))
        except openai.APIStatusError as refused:
            return refused.response
        raise AssertionError("the bomb was transcribed")

    assert_refused("openai /v1/audio/transcriptions", send, (413,), "INFERENCE_AUDIO_MAX_DECODED_SAMPLES")


@pytest.mark.parametrize("route", ["/api/tts", "/v1/audio/speech", "/voices"])
def test_flac_bomb_as_a_voice_sample_is_refused_from_its_header(client, bombs, route):
    sample = base64.b64encode(bombs["flac"]).decode()
    body = {"/api/tts": {"model": "csm-1b", "text": "Hello there.", "audio_prompt": sample},
            "/v1/audio/speech": {"model": "csm-1b", "input": "Hello there.", "audio_prompt": sample,
                                 "response_format": "wav"},
            "/voices": {"model": "csm-1b", "name": "bomb", "audio_prompt": sample}}[route]
    assert_refused(f"flac {route} audio_prompt", lambda: client.post(route, json=body), (400, 413),
                   "3600.0s long", "samples of 1-30s")


# --- (b) a PNG whose header claims 30,000 x 30,000 ---

@pytest.mark.parametrize(("route", "fields"), [
    ("/upload/image-classifier", {}), ("/api/image/classify", {}), ("/api/image/describe", {}),
    ("/api/edit-image", {"prompt": "a cat"}), ("/api/video/image-to-video", {"prompt": "a cat"})])
def test_png_header_bomb_is_refused_before_decoding(client, bombs, route, fields):
    names = ("image", "mask") if route == "/api/edit-image" else ("image",) if "video" in route else ("file",)
    files = {name: (f"{name}.png", bombs["png"], "image/png") for name in names}
    assert_refused(f"png {route}", lambda: client.post(route, files=files, data=fields), (413,),
                   "too many pixels", "the limit is 50000000 pixels")


# --- (c) a WebM that claims 10 hours ---

def test_webm_claiming_hours_is_refused_at_upload(client, bombs):
    assert_refused("webm /upload/whisper", lambda: client.post("/upload/whisper", files={"file": (
                   "memo.webm", bombs["webm"])}), (413,), "36000.0s long", f"the limit is {SERVICE_LIMIT_S}s",
                   "INFERENCE_AUDIO_MAX_DURATION_SECONDS")


@pytest.mark.parametrize(("route", "field"), [("/api/stt", "audio"), ("/v1/audio/transcriptions", "file")])
def test_webm_claiming_hours_is_refused_before_the_replica(client, bombs, route, field):
    assert_refused(f"webm {route}", lambda: client.post(route, files={field: ("memo.webm", bombs["webm"])},
                                                          data={"model": "whisper-1"}),
                   (400,), f"Duration 36000s exceeds model limit of {WHISPER_LIMIT_S}s")


# --- a header that says nothing: the running cap ---

def test_flac_that_hides_its_length_is_stopped_by_the_running_cap(client):
    """STREAMINFO says 'length unknown', so the header check passes; the replica decodes in blocks and
    stops just past Whisper's 3 h, without holding the file's whole decode. (At 1 kHz: the cap is reached
    after 10.8 M samples, so the time measured is the refusal's, not this box's FLAC decoding speed.)"""
    hidden = flac_of_silence(3 * 3600 + 120, 1, 1000, total_known=False)
    message = assert_refused("flac with unknown length /api/stt", lambda: client.post(
        "/api/stt", files={"audio": ("hidden.flac", hidden)}, data={"model": "whisper-base"}), (413,),
        "more than its header claims", f"the limit is {WHISPER_LIMIT_S}s")
    assert "max_duration_seconds" in message


# --- Whisper's own limit on the job path ---

def test_whisper_refuses_an_upload_over_its_catalog_limit(service, client):
    """3.5 h of audio is a valid upload (under the service's 4 h) but over Whisper's 3 h: /api/v1/run and
    /process refuse it in the ingress, from the upload's measured duration, and the replica itself
    refuses the same bytes from the header."""
    from ray import serve

    from deployments.errors import InvalidRequest

    long_audio = flac_of_silence(int(3.5 * 3600), 1, 8000)
    uploaded = client.post("/upload/whisper", files={"file": ("lecture.flac", long_audio)})
    assert uploaded.status_code == 201, uploaded.text
    assert uploaded.json()["duration"] == 3.5 * 3600
    file_id = uploaded.json()["file_id"]
    expected = f"Duration 12600s exceeds model limit of {WHISPER_LIMIT_S}s"
    assert_refused("3.5 h upload /api/v1/run", lambda: client.post(
        "/api/v1/run", json={"model": "whisper-base", "input": {"file_id": file_id}}), (400,), expected)
    assert_refused("3.5 h upload /process", lambda: client.post(f"/process/whisper-base/{file_id}"), (400,), expected)
    whisper = serve.get_deployment_handle("whisper-base", app_name="inference")
    started = time.perf_counter()
    with pytest.raises(InvalidRequest, match=expected):
        whisper.transcribe.remote(long_audio).result()
    assert time.perf_counter() - started < MAX_SECONDS


# --- body caps per route ---

def test_a_json_route_refuses_a_body_over_its_small_cap_while_upload_takes_3_mib(client):
    big = {"text": "x" * (JSON_LIMIT + 1024)}
    message = assert_refused("1 MiB+ JSON /api/embedding", lambda: client.post("/api/embedding", json=big), (413,),
                             f"JSON body limit of {JSON_LIMIT} bytes", "INFERENCE_MAX_JSON_BYTES")
    assert message.startswith("Request body of ")

    def chunked() -> Iterator[bytes]:
        yield b'{"text": "'
        for _ in range(3):
            yield b"x" * (JSON_LIMIT // 2)
        yield b'"}'

    reply = client.post("/api/embedding", content=chunked(), headers={"Content-Type": "application/json"})
    assert "content-length" not in reply.request.headers
    assert reply.status_code == 413 and "INFERENCE_MAX_JSON_BYTES" in reply.json()["message"], reply.text[:300]
    song = make_clip(18.5, rate=44100, channels=2)
    assert 3 * 2**20 <= len(song) < UPLOAD_LIMIT_BYTES
    stored = client.post("/upload", files={"file": ("song.wav", song)})
    assert stored.status_code == 201 and stored.json()["size"] == len(song), stored.text
    assert client.post("/api/embedding", json={"text": "still served"}).status_code == 200
