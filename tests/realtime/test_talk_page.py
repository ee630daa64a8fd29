"""The console's Talk page in Debian's chromium, with a fake microphone that says a sentence (espeak-ng):
the page opens a realtime session, the turn is heard and transcribed, the answer's words appear and its
audio plays. Screenshot: test-output/realtime/talk.png."""

from __future__ import annotations

import shutil
from pathlib import Path

import soundfile as sf
from scipy.signal import resample_poly

from tests.realtime.speech import spoken

SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-output" / "realtime"


def test_the_talk_page_hears_a_question_and_plays_the_answer(service, tmp_path):
    from playwright.sync_api import sync_playwright

    microphone = tmp_path / "microphone.wav"  # what the fake microphone says, once
    sf.write(microphone, resample_poly(spoken("What is the capital of France?", 1.0, 8.0), 2, 1), 48000,
             subtype="PCM_16")
    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is not installed: run scripts/install.sh --test"
    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=[
            "--no-sandbox", "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-audio-capture={microphone}%noloop", "--autoplay-policy=no-user-gesture-required"])
        try:
            page = browser.new_page()
            page.set_default_timeout(120_000)
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(f"{service}/ui/#talk")
            page.wait_for_selector("body[data-ready=talk] section[data-page=talk]:not([hidden])")
            assert page.input_value("#talk-model") == "qwen2.5-0.5b-instruct"  # the default chat model
            page.fill("#talk-max-tokens", "8")  # short random answers: fast
            page.click("#talk-toggle")
            page.wait_for_selector("#talk-log li.user")
            page.wait_for_selector("#talk-log[data-answers='1']")
            answer = page.text_content("#talk-log li.assistant")
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOTS / "talk.png"), full_page=True)
            assert answer, "the answer's words are shown"
            if any(character.isalnum() for character in answer):  # random weights may answer only newlines
                played = float(page.text_content("#talk-status").split(": ")[1].split(" s")[0])
                assert played > 0.05
            assert page.is_hidden("#error"), page.text_content("#error")
            page.click("#talk-toggle")
            assert page.text_content("#talk-status") == "Stopped"
        finally:
            browser.close()
    assert errors == []
