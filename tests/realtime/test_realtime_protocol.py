"""The protocol's edge cases over a raw WebSocket: bad events answered with `error` events while the session
goes on, limits, cancelling an answer, barge-in, G.711 audio, an unknown model."""

from __future__ import annotations

import base64
import json
import time
import warnings

import numpy as np
import pytest
from scipy.signal import resample_poly
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.realtime.speech import RATE, appends, pcm16, spoken
from tests.realtime.test_realtime_sessions import CHAT, checked

pytestmark = pytest.mark.usefixtures("service")


class Socket:
    """A raw client: sends JSON events, receives each server event checked as the protocol's type."""

    def __init__(self, service: str, query: str, **options):
        self.ws = connect(f"{service.replace('http', 'ws', 1)}/v1/realtime?{query}", max_size=None, **options)

    def send(self, **client_event) -> None:
        self.ws.send(json.dumps(client_event))

    def until(self, last_type: str, timeout_s: float = 120) -> list[dict]:
        seen = []
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                raw = checked(json.loads(self.ws.recv(timeout=max(deadline - time.monotonic(), 0.1))))
            except TimeoutError:
                raise AssertionError(f"no {last_type} within {timeout_s} s; saw {[e['type'] for e in seen]}") from None
            seen.append(raw)
            if raw["type"] == last_type:
                return seen

    def error(self) -> dict:
        return self.until("error")[-1]["error"]

    def __enter__(self) -> Socket:
        return self

    def __exit__(self, *exc) -> None:
        self.ws.close()


def test_bad_events_get_error_events_and_the_session_goes_on(service):
    with Socket(service, "intent=transcription") as socket:
        socket.until("session.created")
        socket.send(type="no.such.event", event_id="evt_1")
        error = socket.error()
        assert error["code"] == "invalid_value" and error["param"] == "type" and error["event_id"] == "evt_1"
        socket.ws.send("{not json")
        assert socket.error()["code"] == "invalid_json"
        socket.send(type="input_audio_buffer.append", audio="%%% not base64")
        assert socket.error()["param"] == "audio"
        socket.send(type="input_audio_buffer.append", audio=base64.b64encode(b"\x00\x01\x02").decode())
        assert "whole 2-byte samples" in socket.error()["message"]
        socket.send(type="input_audio_buffer.commit")
        assert socket.error()["code"] == "input_audio_buffer_commit_empty"
        socket.send(type="session.update", session={"type": "transcription",
                                                     "audio": {"input": {"format": {"type": "audio/opus"}}}})
        error = socket.error()
        assert error["param"] == "session.audio.input.format.type" and "audio/pcm" in error["message"], error
        socket.send(type="session.update", session={"type": "transcription", "audio": {"input": {
            "transcription": {"model": "../../etc/passwd"}}}})
        assert socket.error()["code"] == "model_not_found"
        socket.send(type="response.create")
        assert "transcription session makes no responses" in socket.error()["message"]
        # none of it changed the session: audio sent before any session.update is PCM at 24 kHz, VAD on
        for append in appends(spoken("Testing one two three.")):
            socket.ws.send(append)
        completed = socket.until("conversation.item.input_audio_transcription.completed")[-1]
        assert 2.0 < completed["usage"]["seconds"] < 4.0, completed


def test_turn_detection_settings_take_effect_when_updated(service):
    """A threshold of 1.0 is one Silero never reaches: the turn is not detected, and the client commits it."""
    with Socket(service, "intent=transcription") as socket:
        socket.until("session.created")
        socket.send(type="session.update", session={"type": "transcription", "audio": {"input": {
            "turn_detection": {"type": "server_vad", "threshold": 1.0}}}})
        assert socket.until("session.updated")[-1]["session"]["audio"]["input"]["turn_detection"]["threshold"] == 1
        for append in appends(spoken("Nobody hears this.")):
            socket.ws.send(append)
        socket.send(type="input_audio_buffer.commit")
        seen = socket.until("input_audio_buffer.committed")
    assert "input_audio_buffer.speech_started" not in [e["type"] for e in seen]


def test_an_oversized_event_is_refused_and_the_socket_stays_open(service):
    with Socket(service, "intent=transcription") as socket:
        socket.until("session.created")
        socket.send(type="input_audio_buffer.append", audio=base64.b64encode(bytes(4 * 1024 * 1024)).decode())
        error = socket.error()
        assert error["code"] == "event_too_large" and "4194304 bytes" in error["message"]
        socket.send(type="input_audio_buffer.append", audio=base64.b64encode(pcm16(np.zeros(RATE))).decode())
        socket.send(type="input_audio_buffer.clear")
        assert socket.until("input_audio_buffer.cleared")


def test_g711_mu_law_audio_is_heard(service):
    """A telephone line's 8 kHz mu-law, encoded by the standard library's G.711 codec."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import audioop  # (in the standard library until Python 3.13)

    speech = spoken("Good morning everyone.", silence_before_s=0.5)
    codes = audioop.lin2ulaw(pcm16(resample_poly(speech, 1, RATE // 8000)), 2)
    with Socket(service, "intent=transcription") as socket:
        socket.until("session.created")
        socket.send(type="session.update", session={"type": "transcription",
                                                     "audio": {"input": {"format": {"type": "audio/pcmu"}}}})
        assert socket.until("session.updated")[-1]["session"]["audio"]["input"]["format"]["type"] == "audio/pcmu"
        for at in range(0, len(codes), 800):  # 100 ms of 8 kHz
            socket.send(type="input_audio_buffer.append", audio=base64.b64encode(codes[at:at + 800]).decode())
        seen = socket.until("conversation.item.input_audio_transcription.completed")
    started = next(e for e in seen if e["type"] == "input_audio_buffer.speech_started")
    assert 350 <= started["audio_start_ms"] <= 800, started


def test_an_answer_is_cancelled_and_truncated_and_the_next_one_runs(service):
    with Socket(service, f"model={CHAT}") as socket:
        socket.until("session.created")
        story = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Tell a story."}]}
        socket.send(type="conversation.item.create", item=story)
        socket.send(type="response.create", response={"max_output_tokens": 400})
        socket.until("response.created")
        socket.send(type="response.create")
        assert socket.error()["code"] == "conversation_already_has_active_response"
        socket.send(type="response.cancel")
        done = socket.until("response.done")[-1]["response"]
        assert done["status"] == "cancelled" and done["status_details"]["reason"] == "client_cancelled", done
        answer = done["output"][0]
        assert answer["status"] == "incomplete"
        socket.send(type="conversation.item.truncate", item_id=answer["id"], content_index=0, audio_end_ms=0)
        assert socket.until("conversation.item.truncated")[-1]["audio_end_ms"] == 0
        socket.send(type="conversation.item.retrieve", item_id=answer["id"])
        retrieved = socket.until("conversation.item.retrieved")[-1]["item"]
        assert retrieved["content"] == [{"type": "output_audio", "transcript": ""}]
        socket.send(type="response.cancel")
        assert socket.error()["code"] == "response_cancel_not_active"
        socket.send(type="response.create", response={"max_output_tokens": 6, "output_modalities": ["text"]})
        assert socket.until("response.done")[-1]["response"]["status"] == "completed"


def test_speaking_over_an_answer_cancels_it_and_the_new_turn_is_answered(service):
    with Socket(service, f"model={CHAT}") as socket:
        socket.until("session.created")
        # seed 2: the tiny model's answer to "Go on." runs all 400 tokens (unseeded, it often ends early)
        socket.send(type="session.update", session={"type": "realtime", "max_output_tokens": 6, "seed": 2,
                                                     "output_modalities": ["text"]})
        socket.until("session.updated")
        socket.send(type="conversation.item.create", item={"type": "message", "role": "user",
                                                           "content": [{"type": "input_text", "text": "Go on."}]})
        socket.send(type="response.create", response={"max_output_tokens": 400, "output_modalities": ["audio"]})
        socket.until("response.created")
        for append in appends(spoken("Wait, stop please.")):
            socket.ws.send(append)
        seen = socket.until("response.done")
        assert "input_audio_buffer.speech_started" in [e["type"] for e in seen]
        interrupted = seen[-1]["response"]
        assert interrupted["status"] == "cancelled", interrupted
        assert interrupted["status_details"]["reason"] == "turn_detected"
        # the spoken turn is committed, transcribed and answered (the session's text answers of 6 tokens)
        seen = socket.until("response.done")
        assert "conversation.item.input_audio_transcription.completed" in [e["type"] for e in seen]
        assert seen[-1]["response"]["status"] == "completed"
        assert 0 < seen[-1]["response"]["usage"]["output_tokens"] <= 6


def test_an_unknown_model_is_refused_with_a_reason(service):
    with Socket(service, "model=no-such-model") as socket:
        error = socket.error()
        assert error["code"] == "model_not_found" and "no-such-model" in error["message"]
        with pytest.raises(ConnectionClosed) as closed:
            socket.ws.recv(timeout=10)
    assert closed.value.rcvd.code == 1008


def test_sessions_past_the_limit_are_told_to_retry(service):
    held = [Socket(service, "intent=transcription") for _ in range(8)]  # INFERENCE_REALTIME_MAX_SESSIONS
    try:
        for socket in held:
            socket.until("session.created")
        with Socket(service, "intent=transcription") as extra:
            assert extra.error()["code"] == "session_limit_reached"
            with pytest.raises(ConnectionClosed) as closed:
                extra.ws.recv(timeout=10)
        assert closed.value.rcvd.code == 1013
    finally:
        for socket in held:
            socket.ws.close()
    time.sleep(0.5)
    with Socket(service, "intent=transcription") as again:
        assert again.until("session.created")
