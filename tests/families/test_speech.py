"""Text-to-speech over HTTP against the real app: /api/tts, /v1/audio/speech (and the official openai
client), TTS jobs, and the 400s for bad voices, formats, speeds, lengths and voice-cloning requests.

The models are tiny random-weight SpeechT5 and Bark (tests/tiny_speech.py), so the audio is noise,
but its container, sample rate and length are the real thing: SpeechT5 never stops early and
speaks 0.32 s per token; Bark always speaks 0.8 s."""

from __future__ import annotations

import io
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import soundfile as sf

from tests.tiny_speech import SPEECHT5_SECONDS_PER_TOKEN, XVECTOR_REPO

RATES = {"speecht5-tts": 16000, "bark-small": 24000}
MEDIA_TYPES = {"wav": "audio/wav", "flac": "audio/flac", "mp3": "audio/mpeg"}
SPEECHT5_VOICES = "slt, clb, bdl, rms, awb, jmk, ksp"


def decode(content: bytes) -> tuple[np.ndarray, int]:
    audio, rate = sf.read(io.BytesIO(content), dtype="float32")
    return audio, rate


def tts(client, **body):
    return client.post("/api/tts", json=body)


@pytest.mark.parametrize("model", list(RATES))
@pytest.mark.parametrize("fmt", list(MEDIA_TYPES))
def test_api_tts_returns_decodable_audio_at_the_model_rate(client, model, fmt):
    reply = tts(client, text="hello", model=model, format=fmt)
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"] == MEDIA_TYPES[fmt]
    assert reply.headers["content-disposition"] == f'attachment; filename="speech.{fmt}"'
    audio, rate = decode(reply.content)
    assert rate == RATES[model] == int(reply.headers["x-sample-rate"])
    assert audio.ndim == 1 and len(audio) > 0 and np.abs(audio).max() > 0
    expected = 7 * SPEECHT5_SECONDS_PER_TOKEN if model == "speecht5-tts" else 0.8  # "▁hello</s>": 7 tokens
    assert len(audio) / rate == pytest.approx(expected, abs=0.01)
    assert float(reply.headers["x-audio-duration"]) == pytest.approx(expected, abs=0.01)


def test_default_model_and_voice(client, hub):
    reply = tts(client, text="hello")
    assert reply.status_code == 200, reply.text
    assert (reply.headers["x-model"], reply.headers["x-voice"]) == ("speecht5-tts", "slt")
    assert decode(reply.content)[1] == 16000
    # voices came from the speaker-embeddings dataset repo, through the model manager, and stay cached: another
    # voice fetches nothing (test_seed_001_examples removes SpeechT5 once, so a file may have come twice)
    downloads = hub.file_downloads(XVECTOR_REPO, repo_type="dataset")
    assert downloads and min(downloads.values()) >= 1
    assert tts(client, text="hello", voice="bdl").headers["x-voice"] == "bdl"
    assert hub.file_downloads(XVECTOR_REPO, repo_type="dataset") == downloads


@pytest.mark.parametrize("model", list(RATES))
@pytest.mark.parametrize("fmt", list(MEDIA_TYPES))
def test_openai_route_formats(client, model, fmt):
    voice = "bdl" if model == "speecht5-tts" else "v2/en_speaker_6"
    reply = client.post("/v1/audio/speech", json={"model": model, "input": "hello", "voice": voice,
                                                  "response_format": fmt})
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"] == MEDIA_TYPES[fmt] and reply.headers["x-voice"] == voice
    audio, rate = decode(reply.content)
    assert rate == RATES[model] and len(audio) > 0


def test_openai_route_defaults_to_mp3(client):
    reply = client.post("/v1/audio/speech", json={"model": "tts-1", "input": "hello", "voice": "awb"})
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"] == "audio/mpeg" and decode(reply.content)[1] == 16000


def test_official_openai_client(service):
    from openai import OpenAI

    openai = OpenAI(base_url=f"{service}/v1", api_key="unused")
    reply = openai.audio.speech.create(model="tts-1", voice="clb", input="hello", response_format="wav")
    audio, rate = decode(reply.content)
    assert rate == 16000 and len(audio) / rate == pytest.approx(7 * SPEECHT5_SECONDS_PER_TOKEN, abs=0.01)


STORY = "Hello there friend. How are you? I am fine, thanks."
SENTENCES = ["Hello there friend.", "How are you?", "I am fine, thanks."]


def test_pcm_is_raw_16_bit_samples(client):
    reply = client.post("/v1/audio/speech", json={"model": "tts-1", "input": "hello", "response_format": "pcm"})
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"] == "audio/pcm" and reply.headers["x-sample-rate"] == "16000"
    assert len(reply.content) == 2 * round(7 * SPEECHT5_SECONDS_PER_TOKEN * 16000)  # 16-bit mono, no header


def test_streamed_speech_arrives_sentence_by_sentence_and_joins_into_the_whole_clip(client):
    """stream_format 'audio': chunked wav (open-ended header, then PCM per sentence) that decodes to the
    sentences' audio one after another; 'sse': OpenAI's delta events, one per sentence. SpeechT5 samples
    (its decoder prenet's dropout is always on), so lengths are compared exactly, samples are not."""
    alone = [client.post("/v1/audio/speech", json={"model": "tts-1", "input": sentence, "voice": "bdl",
                                                   "response_format": "wav"}) for sentence in SENTENCES]
    lengths = [len(decode(reply.content)[0]) for reply in alone]
    body = {"model": "tts-1", "input": STORY, "voice": "bdl", "response_format": "wav"}
    with client.stream("POST", "/v1/audio/speech", json=body | {"stream_format": "audio"}) as streamed:
        assert streamed.status_code == 200
        assert streamed.headers["transfer-encoding"] == "chunked" and "content-length" not in streamed.headers
        assert streamed.headers["content-type"] == "audio/wav" and streamed.headers["x-voice"] == "bdl"
        data = b"".join(streamed.iter_bytes())
    audio, rate = decode(data)
    assert rate == 16000 and len(audio) == sum(lengths) and np.abs(audio).max() > 0
    assert len(audio) / rate == pytest.approx(sum(float(r.headers["x-audio-duration"]) for r in alone), abs=1e-3)

    import base64
    import json

    with client.stream("POST", "/v1/audio/speech", json=body | {"stream_format": "sse", "response_format": "pcm"}) \
            as events:
        assert events.status_code == 200 and events.headers["content-type"].startswith("text/event-stream")
        received = [json.loads(line[len("data: "):]) for line in events.iter_lines() if line.startswith("data: ")]
    deltas, done = received[:-1], received[-1]
    assert [event["type"] for event in deltas] == ["speech.audio.delta"] * len(SENTENCES)
    pieces = [np.frombuffer(base64.b64decode(event["audio"]), "<i2") for event in deltas]
    assert [len(piece) for piece in pieces] == lengths  # each delta is one sentence's 16-bit samples
    assert all(np.abs(piece).max() > 0 for piece in pieces)
    # SpeechT5 reads characters: a token each, with a leading '▁' and a closing </s>; the audio counts in 20 ms
    assert done["type"] == "speech.audio.done" and done["usage"]["input_tokens"] == len(STORY) + 2
    assert abs(done["usage"]["output_tokens"] - sum(lengths) / 16000 / 0.02) <= len(SENTENCES)
    assert done["usage"]["total_tokens"] == done["usage"]["input_tokens"] + done["usage"]["output_tokens"]


def test_bark_voices_change_the_audio_and_the_same_voice_repeats_it(client):
    def speak(voice: str) -> np.ndarray:
        reply = tts(client, text="hello world", model="bark-small", voice=voice)
        assert reply.status_code == 200, reply.text
        return decode(reply.content)[0]

    first, again, other = speak("v2/en_speaker_6"), speak("V2/EN_SPEAKER_6"), speak("v2/de_speaker_3")
    assert np.array_equal(first, again)  # greedy decoding: a voice preset always sounds the same
    assert not np.allclose(first, other)


def test_concurrent_requests_each_get_their_own_audio(client):
    """Bark batches split by voice (one preset per generate call); every reply is what it gets alone."""
    asks = [(text, voice) for text in ("hello", "hello world", "the end")
            for voice in ("v2/en_speaker_1", "v2/ko_speaker_2")]

    def speak(ask):
        return tts(client, text=ask[0], voice=ask[1], model="bark-small", format="flac")

    alone = [decode(speak(ask).content)[0] for ask in asks]
    with ThreadPoolExecutor(len(asks)) as pool:
        replies = list(pool.map(speak, asks * 2))
    for reply, expected in zip(replies, alone * 2):
        assert reply.status_code == 200, reply.text
        assert np.allclose(decode(reply.content)[0], expected, atol=1e-4)
    assert max(int(reply.headers["x-batch-size"]) for reply in replies) > 1  # they did share model calls


def test_speed_shortens_speecht5_speech(client):
    normal = decode(tts(client, text="hello", voice="rms").content)[0]
    fast = tts(client, text="hello", voice="rms", speed=2.0)
    assert fast.status_code == 200, fast.text
    assert len(decode(fast.content)[0]) == len(normal) // 2


def test_run_job_writes_the_audio_file(client):
    started = client.post("/api/v1/run?wait=60", json={
        "model": "speecht5-tts", "input": {"text": "hello", "voice": "jmk", "format": "flac"}})
    assert started.status_code == 200, started.text
    job = started.json()
    assert job["status"] == "completed", job
    assert job["task"] == "text-to-speech" and job["input"]["voice"] == "jmk"
    assert [f["name"] for f in job["files"]] == ["speech.flac"]
    assert job["output"]["sample_rate"] == 16000 and job["output"]["voice"] == "jmk"
    reply = client.get(job["files"][0]["url"])
    assert reply.status_code == 200 and reply.headers["content-type"] == "audio/flac"
    audio, rate = decode(reply.content)
    assert rate == 16000 and len(audio) / rate == pytest.approx(job["output"]["duration"], abs=1e-3)
    assert job["output"]["duration"] == pytest.approx(7 * SPEECHT5_SECONDS_PER_TOKEN, abs=0.01)


def test_bark_job_by_task_default_voice(client):
    started = client.post("/api/v1/run", json={"model": "bark_tts", "input": {"text": "hello"}})
    assert started.status_code == 202, started.text
    deadline = time.monotonic() + 60
    while (job := client.get(f"/jobs/{started.json()['job_id']}").json())["status"] not in ("completed", "failed"):
        assert time.monotonic() < deadline, job
        time.sleep(0.2)
    assert job["status"] == "completed", job
    assert job["model"] == "bark" and job["output"]["voice"] == "v2/en_speaker_0"
    assert decode(client.get(job["files"][0]["url"]).content)[1] == 24000


CLONING = "models that can: csm-1b"


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        ("/api/tts", {"text": "hi", "voice": "alloy"},
         f"Unknown voice 'alloy' for model 'speecht5-tts'. Its voices: {SPEECHT5_VOICES}"),
        ("/v1/audio/speech", {"model": "bark-small", "input": "hi", "voice": "en_speaker_6"},
         "Unknown voice 'en_speaker_6' for model 'bark-small'. Its voices: v2/en_speaker_0, v2/en_speaker_1,"),
        ("/v1/audio/speech", {"model": "tts-1", "input": "hi", "voice": "slt", "response_format": "opus"},
         "response_format: 'opus' is not supported; supported formats: wav, flac, mp3, pcm"),
        ("/v1/audio/speech", {"model": "tts-1", "input": "hi", "response_format": "aac"},
         "response_format: 'aac' is not supported; supported formats: wav, flac, mp3, pcm"),
        ("/api/tts", {"text": "hi", "format": "ogg"},
         "format: 'ogg' is not supported; supported formats: wav, flac, mp3, pcm"),
        ("/v1/audio/speech", {"model": "tts-1", "input": "hi", "stream_format": "audio"},
         "stream_format 'audio' sends response_format wav or pcm, not 'mp3'"),
        ("/v1/audio/speech", {"model": "tts-1", "input": "hi", "stream_format": "sse", "response_format": "flac"},
         "stream_format 'sse' sends response_format wav or pcm, not 'flac'"),
        ("/v1/audio/speech", {"model": "tts-1", "input": "hi", "stream_format": "ogg"},
         "stream_format: 'ogg' is not supported; use 'audio' or 'sse'"),
        ("/v1/audio/speech", {"model": "tts-1", "input": "hi " * 150, "stream_format": "sse", "response_format": "pcm"},
         "Text is 451 tokens long; model 'speecht5-tts' reads at most 450 tokens"),
        ("/api/tts", {"text": ""}, "text: text must not be empty"),
        ("/api/tts", {"text": "   ", "model": "bark-small"}, "text: text must not be empty"),
        ("/v1/audio/speech", {"model": "tts-1", "input": ""}, "input: input must not be empty"),
        ("/api/tts", {"text": "hi " * 150}, "Text is 451 tokens long; model 'speecht5-tts' reads at most 450 tokens"),
        ("/api/tts", {"text": "hello " * 300, "model": "bark"},
         "Text is 300 tokens long; model 'bark' reads at most 256 tokens"),
        ("/api/tts", {"text": "hi", "model": "bark-small", "speed": 1.5},
         "Model 'bark-small' cannot change the speaking speed (speed=1.5); models that can: speecht5-tts"),
        ("/v1/audio/speech", {"model": "tts-1", "input": "hi", "speed": 10},
         "speed: Input should be less than or equal to 4"),
        ("/api/tts", {"text": "hi", "model": "speecht5-tts", "voice_sample_file_id": "abc"},
         f"Voice cloning from a sample (voice_sample_file_id) is not supported by model 'speecht5-tts'; {CLONING}"),
        ("/v1/audio/speech", {"model": "bark-small", "input": "hi", "audio_prompt_url": "http://x/a.wav"},
         f"Voice cloning from a sample (audio_prompt_url) is not supported by model 'bark-small'; {CLONING}"),
        ("/v1/audio/speech", {"model": "tts-1", "input": "hi", "instructions": "whisper"},
         "instructions are not supported by model 'speecht5-tts'"),
        ("/api/v1/run", {"model": "speecht5-tts", "input": {"text": "hi", "audio_prompt_url": "http://x/a.wav"}},
         f"Voice cloning from a sample (audio_prompt_url) is not supported by model 'speecht5-tts'; {CLONING}"),
        ("/api/v1/run", {"model": "speecht5-tts", "input": {"text": "hi", "voice": "nova"}},
         f"Unknown voice 'nova' for model 'speecht5-tts'. Its voices: {SPEECHT5_VOICES}"),
        ("/api/v1/run", {"model": "speecht5-tts", "input": {"text": "hi " * 150}},
         "Text is 451 tokens long; model 'speecht5-tts' reads at most 450 tokens"),
        ("/api/v1/run", {"model": "speecht5-tts", "input": {"voice": "slt"}}, "text: Field required"),
        ("/process/bark/some-upload", {}, f"Voice cloning from a sample (voice_sample_file_id) is not supported "
                                          f"by model 'bark-small'; {CLONING}"),
    ],
)
def test_bad_requests_are_400_with_the_reason(client, path, body, message):
    reply = client.post(path, json=body)
    assert reply.status_code == 400, reply.text
    assert message in reply.json()["message"]


def test_unknown_model_is_404_listing_the_speech_models(client):
    reply = tts(client, text="hi", model="tts-2")
    assert reply.status_code == 404
    assert reply.json()["message"] == ("Model 'tts-2' not found for task 'text-to-speech'. "
                                       "Known models: speecht5-tts, bark-small, bark, csm-1b")


def test_catalog_lists_voices_and_drops_cloning(client):
    speecht5 = client.get("/models/tts-1").json()["model"]
    assert speecht5["id"] == "speecht5-tts" and speecht5["voices"] == SPEECHT5_VOICES.split(", ")
    bark = client.get("/models/bark-small").json()["model"]
    assert "v2/en_speaker_6" in bark["voices"] and len(bark["voices"]) == 130
    assert "voice-cloning" not in bark["capabilities"]
