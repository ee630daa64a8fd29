"""Speech-to-text over HTTP against the real app, with a tiny random-weight Whisper from the test hub.

The weights are random, so the words are gibberish; what is checked is what a client relies on:
every response format parses, segments cover the clip in order across 30 s windows, concurrent
requests share model calls yet each gets its own result, and bad input is a clear 4xx.
"""

from __future__ import annotations

import io
import re
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import soundfile as sf

FORMATS = ["json", "text", "srt", "verbose_json", "vtt"]


def clip(seconds: float, rate: int = 16000, channels: int = 1, fmt: str = "WAV") -> bytes:
    """A warbling tone, loud enough to be heard as something."""
    t = np.arange(int(seconds * rate)) / rate
    tone = 0.3 * np.sin(2 * np.pi * (300 + 100 * np.sin(2 * np.pi * 0.5 * t)) * t)
    out = io.BytesIO()
    sf.write(out, np.repeat(tone[:, None], channels, axis=1).astype("float32"), rate, format=fmt)
    return out.getvalue()


def transcribe(client, data: bytes, **form):
    return client.post("/v1/audio/transcriptions", files={"file": ("clip.wav", data)},
                       data={"model": "whisper-1", **form})


def srt_times(body: str, separator: str = ",") -> list[tuple[float, float]]:
    pattern = rf"(\d\d):(\d\d):(\d\d){separator}(\d\d\d) --> (\d\d):(\d\d):(\d\d){separator}(\d\d\d)"
    times = []
    for match in re.finditer(pattern, body):
        h1, m1, s1, ms1, h2, m2, s2, ms2 = map(int, match.groups())
        times.append((h1 * 3600 + m1 * 60 + s1 + ms1 / 1000, h2 * 3600 + m2 * 60 + s2 + ms2 / 1000))
    return times


def assert_in_order(times: list[tuple[float, float]], duration: float) -> None:
    assert times, "no timestamps"
    for (start, end), (next_start, _) in zip(times, times[1:] + [(duration, None)]):
        assert 0 <= start <= end <= next_start <= duration


def assert_cover(segments: list[dict], duration: float) -> None:
    assert segments[0]["start"] == 0 and segments[-1]["end"] == duration
    assert [s["id"] for s in segments] == list(range(len(segments)))
    assert_in_order([(s["start"], s["end"]) for s in segments], duration)


@pytest.mark.parametrize("response_format", FORMATS)
def test_every_response_format_parses(client, response_format):
    reply = transcribe(client, clip(3.0, rate=44100, channels=2), response_format=response_format)
    assert reply.status_code == 200, reply.text
    assert int(reply.headers["x-batch-size"]) >= 1
    if response_format == "json":
        assert isinstance(reply.json()["text"], str) and reply.json()["usage"]["seconds"] == 3
    elif response_format == "text":
        assert reply.headers["content-type"].startswith("text/plain") and reply.text.endswith("\n")
    elif response_format == "srt":
        assert reply.headers["content-type"].startswith("text/plain")
        assert reply.text.startswith("1\n")
        assert_in_order(srt_times(reply.text), 3.0)
    elif response_format == "vtt":
        assert reply.headers["content-type"].startswith("text/vtt") and reply.text.startswith("WEBVTT\n\n")
        assert_in_order(srt_times(reply.text, r"\."), 3.0)
    else:
        body = reply.json()
        assert (body["task"], body["duration"]) == ("transcribe", 3.0)
        assert body["language"] in {"english", "german", "french", "spanish"}  # the tiny model's languages
        assert_cover(body["segments"], 3.0)
        assert all(s["text"] in body["text"] for s in body["segments"])


def test_long_audio_is_cut_into_overlapping_30s_windows_and_covered(client):
    body = transcribe(client, clip(70.0, rate=8000), response_format="verbose_json").json()
    assert body["duration"] == 70.0
    segments = body["segments"]
    assert_cover(segments, 70.0)
    assert {s["seek"] for s in segments} == {0, 2500, 5000}  # windows 0-30, 25-55, 50-70 s, in 10 ms frames
    for boundary in (27.5, 52.5):  # the middle of each 5 s overlap: one window's segments end, the next's begin
        assert boundary in {s["end"] for s in segments} and boundary in {s["start"] for s in segments}
    srt = transcribe(client, clip(70.0, rate=8000), response_format="srt").text
    assert_in_order(srt_times(srt), 70.0)


def test_seed_api_stt_fields(client):
    reply = client.post("/api/stt", files={"audio": ("rec.wav", clip(2.5, rate=22050))},
                        data={"model": "openai/whisper-base"})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["success"] is True and body["model"] == "whisper-base"
    assert body["duration"] == 2.5 and isinstance(body["text"], str) and body["language"] in {"en", "de", "fr", "es"}
    assert_cover(body["segments"], 2.5)
    german = client.post("/api/stt", files={"audio": ("rec.flac", clip(1.0, fmt="FLAC"))},
                         data={"model": "whisper-tiny", "language": "German", "task": "translate"}).json()
    assert (german["model"], german["language"]) == ("whisper-tiny", "de")


def encoded(seconds: float, container: str, codec: str, rate: int = 48000) -> bytes:
    """The warbling tone compressed the way browsers (webm/Opus) and phones (m4a/AAC) record, by PyAV."""
    import av

    audio, _ = sf.read(io.BytesIO(clip(seconds, rate=rate)), dtype="float32")
    out = io.BytesIO()
    with av.open(out, "w", format=container) as muxer:
        stream = muxer.add_stream(codec, rate=rate, layout="mono")
        frame = av.AudioFrame.from_ndarray(audio[None, :], format="flt", layout="mono")
        frame.rate = rate
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            muxer.mux(packet)
    return out.getvalue()


@pytest.mark.parametrize(("name", "container", "codec"), [("memo.m4a", "ipod", "aac"), ("mic.webm", "webm", "libopus"),
                                                          ("video.mp4", "mp4", "aac")])
def test_m4a_webm_and_mp4_audio_are_transcribed(client, name, container, codec):
    data = encoded(2.0, container, codec)
    reply = client.post("/v1/audio/transcriptions", files={"file": (name, data)},
                        data={"model": "whisper-1", "response_format": "verbose_json"})
    assert reply.status_code == 200, reply.text
    assert reply.json()["duration"] == pytest.approx(2.0, abs=0.05)  # AAC adds up to a frame of priming
    assert_cover(reply.json()["segments"], reply.json()["duration"])
    uploaded = client.post("/upload/whisper", files={"file": (name, data)})
    assert uploaded.status_code == 201, uploaded.text
    cut = client.post("/v1/audio/transcriptions", files={"file": (name, data[: len(data) // 2])},
                      data={"model": "whisper-1", "response_format": "verbose_json"})
    if container == "webm":  # a stream format: what arrived of a recording is heard
        assert cut.status_code == 200 and 0 < cut.json()["duration"] < 2.0, cut.text
    else:  # mp4 keeps its index (moov) at the end: half a file is no file
        assert cut.status_code == 400 and "The audio cannot be read" in cut.json()["message"], cut.text


def test_translations_route(client):
    reply = client.post("/v1/audio/translations", files={"file": ("clip.ogg", clip(1.5, fmt="OGG"))},
                        data={"model": "whisper-1", "response_format": "verbose_json"})
    assert reply.status_code == 200, reply.text
    assert reply.json()["task"] == "translate" and reply.json()["duration"] == 1.5


def wait_for(client, job_id: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/jobs/{job_id}").json()
        if job["status"] in ("completed", "failed", "cancelled"):
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} still {job['status']} after {timeout}s")


def test_seed_process_job_over_an_upload(client):
    uploaded = client.post("/upload/whisper", files={"file": ("speech.wav", clip(40.0, rate=16000))})
    assert uploaded.status_code == 201, uploaded.text
    assert uploaded.json()["process_url"] == f"/process/whisper/{uploaded.json()['file_id']}"
    started = client.post(uploaded.json()["process_url"], json={"model_variant": "large", "language": "en"})
    assert started.status_code == 202, started.text
    job = wait_for(client, started.json()["job_id"])
    assert job["status"] == "completed", job
    assert job["model"] == "whisper-large-v3" and job["input"]["language"] == "en"
    output = job["output"]
    assert isinstance(output["text"], str) and output["language"] == "en" and output["duration"] == 40.0
    assert_cover(output["segments"], 40.0)
    assert sorted(f["name"] for f in job["files"]) == ["transcript.srt", "transcript.txt", "transcript.vtt"]
    srt = client.get(f"/jobs/{job['job_id']}/files/transcript.srt")
    assert srt.status_code == 200
    assert_in_order(srt_times(srt.text), 40.0)
    default = client.post(f"/process/whisper/{uploaded.json()['file_id']}?wait=60").json()
    assert (default["status"], default["model"]) == ("completed", "whisper-base")


@pytest.mark.parametrize(("body", "message"), [
    ({"task": "summarize"}, "task: Input should be 'transcribe' or 'translate'"),
    ({"language": "klingon"}, "language: unknown language 'klingon'"),
    ({"temperature": 3}, "temperature: Input should be less than or equal to 1"),
    ({"beam_size": 5}, "beam_size: Extra inputs are not permitted"),
    ({"model_variant": "huge"}, "Unknown model_variant 'huge' for whisper; known variants: tiny, base"),
])
def test_job_options_are_checked_before_queueing(client, body, message):
    file_id = client.post("/upload/whisper", files={"file": ("a.wav", clip(1.0))}).json()["file_id"]
    reply = client.post(f"/process/whisper/{file_id}", json=body)
    assert reply.status_code in (400, 404), reply.text
    assert message in reply.json()["message"]


def test_job_refuses_an_upload_of_another_family(client):
    text = client.post("/upload/musicgen", files={"file": ("prompt.txt", b"calm piano")})
    assert text.status_code == 201, text.text
    reply = client.post("/api/v1/run", json={"model": "whisper-base", "input": {"file_id": text.json()["file_id"]}})
    assert reply.status_code == 415 and "whisper" in reply.json()["message"]


def test_concurrent_requests_share_model_calls_and_keep_their_own_results(client):
    lengths = [1.0 + 0.5 * i for i in range(8)]

    def post(seconds: float) -> dict:
        reply = client.post("/api/stt", files={"audio": ("a.wav", clip(seconds))}, data={"model": "whisper-base"})
        assert reply.status_code == 200, reply.text
        return reply.json()

    with ThreadPoolExecutor(len(lengths)) as pool:
        replies = list(pool.map(post, lengths))
    assert [r["duration"] for r in replies] == lengths  # each client got the transcript of its own clip
    assert all(r["segments"][-1]["end"] == seconds for r, seconds in zip(replies, lengths))
    assert max(r["batch_size"] for r in replies) > 1, [r["batch_size"] for r in replies]


@pytest.mark.parametrize(("data", "message"), [
    (b"this is not audio at all", "The audio cannot be read: not a readable audio file"),
    (clip(2.0)[:20000], "The audio cannot be read: truncated WAV"),
    (b"", "The audio file 'clip.wav' is empty"),
])
def test_bad_audio_is_400_with_the_reason(client, data, message):
    reply = transcribe(client, data)
    assert reply.status_code == 400, reply.text
    assert reply.json()["error_code"] == "VALIDATION_ERROR" and message in reply.json()["message"]


@pytest.mark.parametrize(("form", "status", "message"), [
    ({"response_format": "docx"}, 400,
     "response_format: Input should be 'json', 'text', 'srt', 'verbose_json' or 'vtt'"),
    ({"model": "all-minilm-l6-v2"}, 400, "Model 'all-minilm-l6-v2' is a text-embedding model, not speech-to-text"),
    ({"model": "whisper-9"}, 404, "Model 'whisper-9' not found for task 'speech-to-text'"),
    ({"language": "ja"}, 400, "Model 'whisper-base' does not know language 'ja'; it knows de, en, es, fr"),
    ({"temperature": "-1"}, 400, "temperature: Input should be greater than or equal to 0"),
    ({"timestamp_granularities[]": "character"}, 400, "['character'] are not supported; use 'segment' or 'word'"),
    ({"timestamp_granularities[]": "word"}, 400, "'word' needs response_format verbose_json, not 'json'"),
])
def test_bad_request_is_a_clear_4xx(client, form, status, message):
    reply = transcribe(client, clip(1.0), **form)
    assert reply.status_code == status, reply.text
    assert message in reply.json()["message"]


def test_official_openai_client(service):
    from openai import OpenAI

    openai = OpenAI(base_url=f"{service}/v1", api_key="x")
    result = openai.audio.transcriptions.create(model="whisper-1", file=("hello.wav", clip(2.0)))
    assert isinstance(result.text, str)
    verbose = openai.audio.transcriptions.create(model="whisper-1", file=("hello.mp3", clip(2.0, fmt="MP3")),
                                                 response_format="verbose_json")
    assert verbose.duration == 2.0 and verbose.segments[-1].end == 2.0
    srt = openai.audio.transcriptions.create(model="whisper-1", file=("hello.wav", clip(2.0)), response_format="srt")
    assert isinstance(srt, str)


def test_segments_follow_the_models_timestamps_within_the_window(tmp_path):
    """What a trained Whisper emits (the tiny one cannot be relied on to): text between timestamp
    tokens becomes segments at those times; times past the window are clamped into it."""
    from transformers import GenerationConfig

    from deployments.families.transcription.transcripts import split_at_timestamps
    from tests.tiny_whisper import build_tiny_whisper

    config = GenerationConfig.from_pretrained(build_tiny_whisper(tmp_path / "whisper"))
    sot, en, transcribe = config.decoder_start_token_id, config.lang_to_id["<|en|>"], config.task_to_id["transcribe"]

    def at(seconds: float) -> int:
        return config.no_timestamps_token_id + 1 + round(seconds / 0.02)

    hi, there = list(b"Hi"), list(b" there")
    eos = config.eos_token_id
    def split(ids: list[int], duration: float) -> list[tuple[float, float, list[int]]]:
        return [(start, end, [ids[p] for p in positions])
                for start, end, positions in split_at_timestamps(ids, config, duration)]

    ids = [sot, en, transcribe, at(0.4), *hi, at(2.0), at(2.5), *there, at(4.0), eos, eos]
    assert split(ids, 10.0) == [(0.0, 2.0, hi), (2.5, 10.0, there)]
    past_the_end = [sot, en, transcribe, at(1.0), *hi, at(12.0), at(12.0), *there, at(20.0)]
    assert split(past_the_end, 5.0) == [(0.0, 5.0, hi + there)]
    assert split([sot, en, transcribe, *hi], 3.0) == [(0.0, 3.0, hi)]
    assert split([sot, en, transcribe, eos], 3.0) == [(0.0, 3.0, [])]


def test_a_word_across_a_window_edge_is_kept_whole_from_the_window_that_hears_it():
    """What a trained Whisper does at a cut: window 0 (0-30 s) hears half of 'boundary' (29.5-30.5 s)
    and emits a broken word at its edge; window 1 (25-55 s) hears all of it, 4.5-5.5 s into it.
    The merged transcript keeps the whole word once, at its true time, and stays in order."""
    from deployments.families.transcription.transcripts import Piece, WindowResult, Word, merge_windows, window_starts

    rate, window, overlap = 100, 3000, 500  # 100 samples a second keeps the arrays small
    starts = window_starts(6000, window, overlap)
    assert starts == [0, 2500, 5000]
    assert any(s <= 2950 and 3050 <= s + window for s in starts)  # some window holds 29.5-30.5 s whole

    def result(pieces, words):
        return WindowResult([Piece(a, b, [i], text, -0.5, 1.0) for i, (a, b, text) in enumerate(pieces)],
                            [Word(*w) for w in words], "en", 0.01, 3)

    heard = [result([(0, 20, " one two"), (20, 30, " three boun")],
                    [("one", 2, 3), ("two", 10, 11), ("three", 26, 27), ("boun", 29.5, 30)]),
             result([(0, 4, " three"), (4, 30, " boundary four")],
                    [("three", 1, 2), ("boundary", 4.5, 5.5), ("four", 12, 13)]),
             result([(0, 10, " five")], [("five", 5, 6)])]
    merged = merge_windows(heard, starts, rate, window, 6000, 0.0)
    words = [(w.word, w.start, w.end) for w in merged.words]
    assert words == [("one", 2, 3), ("two", 10, 11), ("three", 26, 27), ("boundary", 29.5, 30.5),
                     ("four", 37, 38), ("five", 55, 56)]
    assert merged.text.count("boundary") == 1  # segment text comes whole from one window: it may repeat a
    # fragment heard at a cut ("boun"), which the words, merged one by one, never do
    segments = [(s["start"], s["end"]) for s in merged.segments]
    assert segments[0][0] == 0 and segments[-1][1] == 60
    assert all(a <= b == c <= d for (a, b), (c, d) in zip(segments, segments[1:]))
    for w in merged.words:  # every word inside a segment
        assert any(s["start"] <= w.start <= w.end <= s["end"] for s in merged.segments)


def test_verbose_json_with_word_timestamps_matches_openais_schema(client):
    """verbose_json validated against OpenAI's published schema (tests/openai_audio_schemas.json, from
    the openai/openai-openapi repository), every segment field computed from the decode."""
    import json
    import zlib
    from pathlib import Path

    import jsonschema

    schemas = json.loads((Path(__file__).parent / "openai_audio_schemas.json").read_text())
    verbose = {**schemas["$defs"]["CreateTranscriptionResponseVerboseJson"], "$defs": schemas["$defs"]}
    reply = transcribe(client, clip(62.0), response_format="verbose_json",
                       **{"timestamp_granularities[]": ["word", "segment"]})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    jsonschema.validate(body, verbose)
    assert_cover(body["segments"], 62.0)
    for segment in body["segments"]:
        assert segment["avg_logprob"] < 0 and 0 < segment["no_speech_prob"] < 1
        text = segment["text"].encode()
        assert segment["compression_ratio"] == (round(len(text) / len(zlib.compress(text)), 4) if text else 0)
    assert len({s["avg_logprob"] for s in body["segments"]}) > 1  # computed, not a constant
    words = body["words"]
    assert words, body
    for word, following in zip(words, words[1:] + [None]):
        assert word["start"] <= word["end"] and (following is None or word["end"] <= following["start"])
        assert any(s["start"] <= word["start"] <= word["end"] <= s["end"] for s in body["segments"])
    plain = transcribe(client, clip(62.0), response_format="verbose_json").json()
    assert "words" not in plain and plain["segments"] == body["segments"]  # words cost nothing in the segments
    stt = client.post("/api/stt", files={"audio": ("rec.wav", clip(3.0))}, data={"word_timestamps": "true"}).json()
    assert all(0 <= w["start"] <= w["end"] <= 3.0 for w in stt["words"])
    assert "".join(w["word"] for w in stt["words"]) == "".join(stt["text"].split())  # one window: all its words


def test_python_deployment_handle(service):
    from ray import serve

    from deployments.errors import InvalidRequest, ModelNotFound

    whisper = serve.get_deployment_handle("whisper-base", app_name="inference")
    result = whisper.transcribe.remote(clip(4.0, rate=48000, channels=2, fmt="FLAC"), model="whisper-1").result()
    assert (result.model, result.duration, result.segments[-1].end) == ("whisper-base", 4.0, 4.0)
    with pytest.raises(ModelNotFound, match="Model 'nope' not found for task 'speech-to-text'"):
        whisper.transcribe.remote(clip(1.0), model="nope").result()
    with pytest.raises(InvalidRequest, match="not a readable audio file"):
        whisper.transcribe.remote(b"RIFF....WAVEfmt ").result()
