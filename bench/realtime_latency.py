"""Realtime voice: from the end of speech to the first transcript delta and to the first answer audio byte
in a /v1/realtime conversation, next to the same pipeline done as three HTTP calls in a row by a client
(POST /v1/audio/transcriptions, /v1/chat/completions, then /v1/audio/speech streamed); then how many
sessions at once this box holds before the first-audio latency doubles.

    .venv/bin/python bench/realtime_latency.py                    # tiny random models (overhead only)
    .venv/bin/python bench/realtime_latency.py --dims base        # whisper-base, Qwen2.5-0.5B, SpeechT5 sizes

Random weights (tests/tiny_*), the same work both ways: the chat model is asked what the realtime turn heard,
with the same seed (temperature 1: greedy random weights write only newlines), so it writes the same
--tokens tokens (the bench counts the answers that match), and SpeechT5 speaks 20 frames per character.
The question is spoken by espeak-ng and streamed in real time in 100 ms pieces; the realtime side waits
for the server's VAD (silence_duration_ms) like any live client, the three-call client is handed the
recording the moment speech ends (push-to-talk). Results, with the
machine, go to bench/results/realtime_latency.json.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import io
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import soundfile as sf

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # for `deployments`, bench/ and tests/, when run as bench/realtime_latency.py
from bench.embedding_latency import machine  # noqa: E402
from bench.local_service import deploy_models, local_service  # noqa: E402
from bench.results import write_result  # noqa: E402
from tests.realtime.speech import RATE, pcm16, spoken  # noqa: E402

CHAT, WHISPER, SPEECH = "qwen2.5-0.5b-instruct", "whisper-base", "speecht5-tts"
SEED = 7  # the chat model's, both ways (the session's `seed`, ours)
QUESTION = "What is the weather like in Paris today?"
PIECE_S = 0.1
SILENCE_MS = 500  # server_vad's default silence_duration_ms


def realtime_turn(base_url: str, speech: np.ndarray, voiced_s: float, tokens: int,
                  instructions: str) -> dict[str, float]:
    """One spoken turn of a conversation, streamed in real time: seconds from the end of speech to the first
    transcript delta, the first answer audio and response.done."""
    from websockets.sync.client import connect

    arrived: dict[str, float] = {}
    texts: dict[str, str] = {}
    with connect(f"{base_url.replace('http', 'ws', 1)}/v1/realtime?model={CHAT}", max_size=None) as socket:
        socket.send(json.dumps({"type": "session.update", "session": {
            "type": "realtime", "max_output_tokens": tokens, "temperature": 1, "seed": SEED,
            "instructions": instructions,
            "audio": {"input": {"transcription": {"model": WHISPER, "language": "en"},
                                "turn_detection": {"type": "server_vad", "silence_duration_ms": SILENCE_MS}}}}}))
        done = threading.Event()

        def receive() -> None:
            while not done.is_set():
                server_event = json.loads(socket.recv())
                kind = server_event["type"]
                arrived.setdefault(kind, time.perf_counter())
                if kind == "error":
                    raise RuntimeError(f"realtime error: {server_event['error']}")
                if kind == "conversation.item.input_audio_transcription.completed":
                    texts["heard"] = server_event["transcript"]
                if kind == "response.output_audio_transcript.delta":
                    texts["answer"] = texts.get("answer", "") + server_event["delta"]
                if kind == "response.done":
                    arrived["tokens"] = server_event["response"]["usage"]["output_tokens"]
                    done.set()

        receiver = threading.Thread(target=receive, daemon=True)
        receiver.start()
        step = int(RATE * PIECE_S)
        started = time.perf_counter()
        at = 0
        while not done.is_set() and time.perf_counter() - started < 600:
            piece = speech[at:at + step] if at < len(speech) else np.zeros(step, np.float32)  # the mic stays on
            audio = base64.b64encode(pcm16(piece)).decode()
            socket.send(json.dumps({"type": "input_audio_buffer.append", "audio": audio}))
            at += step
            time.sleep(max(0.0, started + at / RATE - time.perf_counter()))
        receiver.join(timeout=5)
    speech_ended = started + voiced_s
    return {"first_transcript_s": arrived["conversation.item.input_audio_transcription.delta"] - speech_ended,
            "first_audio_s": arrived["response.output_audio.delta"] - speech_ended,
            "done_s": arrived["response.done"] - speech_ended, "answer_tokens": arrived["tokens"],
            "heard": texts["heard"], "answer": texts.get("answer", "")}


def three_calls(http: httpx.Client, recording: bytes, tokens: int, instructions: str, heard: str) -> dict:
    """The client's pipeline from the moment it has the recording: transcribe, chat, speak (streamed). The
    chat is asked what the realtime turn heard (`heard`), with the same seed: the same answer, the same work
    (the random Whisper may hear the two recordings' silences differently)."""
    started = time.perf_counter()
    transcribed = http.post("/v1/audio/transcriptions", files={"file": ("turn.wav", recording)},
                            data={"model": WHISPER, "language": "en"})
    transcribed.raise_for_status()
    transcript_at = time.perf_counter()
    answer = http.post("/v1/chat/completions", json={"model": CHAT, "max_tokens": tokens, "temperature": 1,
                                                     "seed": SEED,
                                                     "messages": [{"role": "system", "content": instructions},
                                                                  {"role": "user", "content": heard}]})
    answer.raise_for_status()
    tokens_written = answer.json()["usage"]["completion_tokens"]
    said = answer.json()["choices"][0]["message"]["content"]
    first = None
    with http.stream("POST", "/v1/audio/speech", json={
            "model": SPEECH, "voice": "slt", "input": said or ".",
            "response_format": "pcm", "stream_format": "audio"}) as spoken_reply:
        if spoken_reply.status_code != 200:
            raise RuntimeError(f"speech: {spoken_reply.status_code} {spoken_reply.read()[:300]!r}")
        for chunk in spoken_reply.iter_raw():
            if chunk and first is None:
                first = time.perf_counter()
    return {"first_transcript_s": transcript_at - started, "first_audio_s": (first or time.perf_counter()) - started,
            "done_s": time.perf_counter() - started, "answer_tokens": tokens_written, "answer": said}


def medians(runs: list[dict]) -> dict[str, float]:
    return {key: round(statistics.median(run[key] for run in runs), 3) for key in runs[0]
            if isinstance(runs[0][key], int | float)}


def concurrent_turns(base_url: str, speech: np.ndarray, voiced_s: float, tokens: int, instructions: str,
                     sessions: int, repeats: int) -> dict:
    """`sessions` conversations speaking at the same moment, `repeats` times: medians over every turn."""
    results: list[dict[str, float]] = []
    for _ in range(repeats):
        threads = [threading.Thread(target=lambda: results.append(
            realtime_turn(base_url, speech, voiced_s, tokens, instructions))) for _ in range(sessions)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    return medians(results)


def build(dims: str, folder: Path) -> dict[str, str]:
    def run(*command: str) -> list[str]:
        return subprocess.run([sys.executable, "-m", *command], cwd=REPO_ROOT, check=True, capture_output=True,
                              text=True).stdout.split()

    whisper = run("tests.tiny_whisper", str(folder / "whisper"), "--dims", dims)[-1]
    run("tests.tiny_chat", str(folder / "qwen"), "--size", "0.5b" if dims == "base" else "tiny")
    speech = run("tests.tiny_speech", str(folder / "speecht5"), "--dims", dims)
    return {"openai/whisper-base": whisper, "Qwen/Qwen2.5-0.5B-Instruct": str(folder / "qwen"),
            "microsoft/speecht5_tts": speech[0], "microsoft/speecht5_hifigan": speech[1],
            "datasets/Matthijs/cmu-arctic-xvectors": speech[2]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dims", choices=["tiny", "base"], default="tiny", help="The random models' sizes.")
    parser.add_argument("--tokens", type=int, default=24, help="Answer tokens, both ways.")
    parser.add_argument("--repeats", type=int, default=3, help="Turns per way (the median is kept).")
    parser.add_argument("--sessions", default="1,2,4", help="Sessions at once to try.")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "bench/results/realtime_latency.json")
    args = parser.parse_args()
    speech = spoken(QUESTION, silence_before_s=0.3, silence_after_s=0.0)
    voiced_s = len(speech) / RATE
    recording = io.BytesIO()
    sf.write(recording, speech, RATE, format="WAV", subtype="PCM_16")
    with contextlib.ExitStack() as cleanup:
        work = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="bench-realtime-")))
        print(f"writing random models ({args.dims})...", flush=True)
        repos = build(args.dims, work / "models")
        with local_service(repos, work, num_cpus=8) as base_url:
            deploy_models([WHISPER, CHAT, SPEECH], {"transcription": {"max_new_tokens": args.tokens}},
                          engines={"transcription": "ctranslate2"})  # as the CPU profile runs Whisper
            with httpx.Client(base_url=base_url, timeout=900) as http:
                said = "You are a helpful voice assistant. Answer briefly."
                warm = realtime_turn(base_url, speech, voiced_s, args.tokens, said)  # warm every replica
                three_calls(http, recording.getvalue(), args.tokens, said, warm["heard"])
                live_runs, pipeline_runs = [], []
                for _ in range(args.repeats):  # turn by turn: the realtime one, then the same as three calls
                    live_runs.append(realtime_turn(base_url, speech, voiced_s, args.tokens, said))
                    pipeline_runs.append(three_calls(http, recording.getvalue(), args.tokens, said,
                                                     live_runs[-1]["heard"]))
                same = sum(a["answer"].strip() == b["answer"].strip() for a, b in zip(live_runs, pipeline_runs))
                print(f"{same} of {args.repeats} answers the same both ways", flush=True)
                live, pipeline = medians(live_runs), medians(pipeline_runs)
                held = {}
                for count in (int(n) for n in args.sessions.split(",")):
                    print(f"{count} sessions at once...", flush=True)
                    held[count] = concurrent_turns(base_url, speech, voiced_s, args.tokens, said, count, args.repeats)
    ratios = {"first_audio_three_calls_over_realtime": round(pipeline["first_audio_s"] / live["first_audio_s"], 2),
              "first_transcript_three_calls_over_realtime":
                  round(pipeline["first_transcript_s"] / live["first_transcript_s"], 2)}
    within_double = max((n for n, row in held.items() if row["first_audio_s"] <= 2 * held[min(held)]["first_audio_s"]),
                        default=0)
    print(f"\n{'from the end of speech (s)':34}{'transcript':>12}{'first audio':>13}{'done':>8}")
    for name, row in {"realtime session": live, "three HTTP calls (push-to-talk)": pipeline,
                      **{f"realtime, {n} sessions at once": r for n, r in held.items()}}.items():
        print(f"{name:34}{row['first_transcript_s']:>12}{row['first_audio_s']:>13}{row['done_s']:>8}")
    for name, value in ratios.items():
        print(f"{name}: {value}x")
    print(f"sessions at once before first-audio latency doubles: {within_double} (of {args.sessions} tried)")
    write_result(args.out, {"dims": args.dims, "tokens": args.tokens, "repeats": args.repeats, "question": QUESTION,
                            "vad_silence_ms": SILENCE_MS, "machine": machine("cpu"), "realtime": live,
                            "three_calls": pipeline, "sessions_at_once": held, "ratios": ratios,
                            "sessions_within_double_latency": within_double, "same_answers": same,
                            "answer_chars": len(live_runs[-1]["answer"])})


if __name__ == "__main__":
    main()
