"""The web console at /ui, driven in Debian's chromium through Playwright, against the real service.

A small "console" application is deployed beside the suite's with its own job database, so switching
its current model changes no other test's defaults. Its catalog is catalog.yaml with one override by
environment variable (config, not code): musicgen-medium's limit is 20 s, so the duration slider has a
different maximum to follow. It declares a 15.5 GB GPU (the session Ray has one, none is present), so
the Settings page warns about musicgen-large's 16 GB. It has an API key (an admin key, as switching models
needs one): the browser is asked for it once, by the console, and the console sends it from then on.
Screenshots of each page go to test-output/console/.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import pytest

from tests.conftest import tiny_profile
from tests.families.test_separation_jobs import make_clip

SMALL, MEDIUM = "musicgen-small", "musicgen-medium"
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-output" / "console"
MEDIUM_LIMIT_S = 20
KEY = "console-admin-key"


@pytest.fixture(scope="module")
def console(service, tmp_path_factory, monkeypatch_module):
    """HTTP client of the console application (route prefix /console)."""
    from ray import serve

    from deployments.app import compose_app
    from deployments.settings import ServiceSettings
    from registry import load_catalog

    monkeypatch_module.setenv("CATALOG__MUSICGEN_MEDIUM__MAX_DURATION_SECONDS", str(MEDIUM_LIMIT_S))
    catalog = load_catalog()
    settings = ServiceSettings(data_dir=tmp_path_factory.mktemp("console-jobs"), admin_api_keys=KEY)
    models = [SMALL, MEDIUM, "htdemucs"]
    # fractions of a 15.5 GB GPU: 0.26 + 0.52 + 0.20 of the session's one declared GPU
    profile = tiny_profile(models=models, warm_models=models, runtime_pools=False, gpu_memory_gb=15.5)
    serve.run(compose_app(catalog, settings, profile), name="console", route_prefix="/console")
    with httpx.Client(base_url=f"{service}/console", timeout=120, headers={"X-API-Key": KEY}) as http:
        http.settings = settings  # type: ignore[attr-defined]
        yield http
    serve.delete("console")


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is not installed: run scripts/install.sh --test"
    with sync_playwright() as playwright:
        # a fake microphone (a beep) for the recording button; no prompt asks for it
        launched = playwright.chromium.launch(executable_path=chromium, args=[
            "--no-sandbox", "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
            "--autoplay-policy=no-user-gesture-required"])
        yield launched
        launched.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    opened = context.new_page()
    opened.set_default_timeout(60_000)
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    prompts: list[str] = []  # the console asks for the API key where the service has keys: answered here
    opened.on("dialog", lambda dialog: (prompts.append(dialog.message), dialog.accept(KEY)))
    opened.prompts = prompts  # type: ignore[attr-defined]
    yield opened
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def screenshot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def open_page(page, base: str, name: str) -> None:
    page.goto(f"{base}/ui/#{name}")
    page.wait_for_selector(f"body[data-ready={name}] section[data-page={name}]:not([hidden])")
    assert not page.locator("#error").is_visible(), page.inner_text("#error")


def until(page, condition: str, timeout: float = 60_000) -> None:
    """Wait for the JS `condition`, or for the console's error box, which fails the test with its message."""
    page.wait_for_function(f"({condition}) || !document.getElementById('error').hidden", timeout=timeout)
    assert not page.locator("#error").is_visible(), page.inner_text("#error")


def set_slider(page, value: float) -> None:
    page.locator("#music-duration").evaluate(
        "(e, v) => { e.value = v; e.dispatchEvent(new Event('input')); }", value)


def test_the_console_asks_for_the_key_once_and_sends_it_on_every_call(console, page):
    open_page(page, str(console.base_url).rstrip("/"), "settings")
    assert page.prompts == ["This service needs an API key:"]
    assert page.input_value("#api-key") == KEY
    open_page(page, str(console.base_url).rstrip("/"), "music")
    assert len(page.prompts) == 1  # kept: not asked again
    assert httpx.get(f"{str(console.base_url).rstrip('/')}/models").status_code == 401  # the service does ask


def test_ui_is_served_under_the_route_prefix(console):
    moved = httpx.get(f"{str(console.base_url).rstrip('/')}/ui", follow_redirects=False)  # no key needed
    assert moved.status_code == 307 and moved.headers["location"] == "ui/"
    index = console.get("/ui/")
    assert index.status_code == 200 and "<title>Inference console</title>" in index.text
    assert console.get("/ui/console.js").headers["content-type"].startswith("text/javascript")


def test_a_switch_the_service_cannot_make_is_a_clear_4xx(console):
    unknown_task = console.put("/models/current/painting", json={"model": SMALL})
    assert unknown_task.status_code == 404 and "Unknown task 'painting'; tasks: source-separation" in \
        unknown_task.json()["message"]
    other_task = console.put("/models/current/text-to-music", json={"model": "htdemucs"})
    assert other_task.status_code == 400
    assert other_task.json()["message"].startswith("Model 'htdemucs' is a source-separation model, not text-to-music")
    missing = console.put("/models/current/text-to-music", json={"model": "musicgen-xl"})
    assert missing.status_code == 404 and "musicgen-xl" in missing.json()["message"]
    undeployed = console.put("/models/current/text-to-music", json={"model": "musicgen-large"})
    assert undeployed.status_code == 409 and undeployed.json()["message"] == (
        "Model 'musicgen-large' is not deployed in this application, so it cannot be the current text-to-music "
        f"model; deployed text-to-music models: {SMALL}, {MEDIUM}")
    assert console.get("/models/current").json()["current_models"]["text-to-music"] == SMALL  # unchanged


def test_switching_the_model_moves_the_slider_adapters_and_models(console, page):
    base = str(console.base_url).rstrip("/")
    open_page(page, base, "music")
    slider = page.locator("#music-duration")
    until(page, "document.getElementById('music-duration').max === '30'")
    set_slider(page, 30)
    adapter = page.locator("#music-adapter")
    jazz = adapter.locator("option", has_text="Jazz Trio")
    assert jazz.inner_text() == "Jazz Trio (Requires MusicGen Medium)" and jazz.is_disabled()
    assert adapter.locator("option", has_text="Lo-fi Hip Hop").is_enabled()
    assert page.locator("#adapter-hint").is_visible()
    assert "Some adapters are hidden because they require a different model" in page.inner_text("#adapter-hint")

    open_page(page, base, "settings")
    page.locator(f"tr[data-model={MEDIUM}] button.switch-model").click()
    page.wait_for_selector(f"tr.current[data-model={MEDIUM}]")
    models = console.get("/models").json()
    assert models["current_model"] == MEDIUM and models["tasks"]["text-to-music"]["current_model"] == MEDIUM
    assert {m["id"]: m["is_current"] for m in models["models"] if m["task"] == "text-to-music"} == \
        {SMALL: False, MEDIUM: True, "musicgen-large": False}
    warning = page.locator("tr[data-model=musicgen-large] .vram-warning")
    assert warning.inner_text() == "Needs 16 GB of GPU memory; this service's GPU has 15.5 GB"
    assert page.locator(f"tr[data-model={MEDIUM}] .vram-warning").count() == 0
    screenshot(page, "settings")

    open_page(page, base, "music")
    until(page, f"document.getElementById('music-duration').max === '{MEDIUM_LIMIT_S}'")
    assert slider.input_value() == str(MEDIUM_LIMIT_S)  # clamped from 30
    assert page.inner_text("#music-duration-limit") == f"up to {MEDIUM_LIMIT_S} s with MusicGen Medium"
    assert adapter.locator("option", has_text="Jazz Trio").is_enabled()
    lofi = adapter.locator("option", has_text="Lo-fi Hip Hop")
    assert lofi.inner_text() == "Lo-fi Hip Hop (Requires MusicGen Small)" and lofi.is_disabled()

    # a request that names no model gets the current one
    music = console.post("/api/music", json={"prompt": "a short chime", "duration": 1})
    assert music.status_code == 200 and music.headers["x-model"] == MEDIUM
    # the switch is a row of the job database: what a restarted service reads back
    from deployments.state.store import JobStore

    assert JobStore.from_settings(console.settings).runtime_models().current_models() == {"text-to-music": MEDIUM}
    back = console.put("/models/current/text-to-music", json={"model": SMALL})
    assert back.status_code == 200 and back.json()["previous_model"] == MEDIUM


def test_settings_downloads_a_model_and_shows_it_cached(console, page):
    base = str(console.base_url).rstrip("/")
    open_page(page, base, "settings")
    row = page.locator("tr[data-model=mdx_extra]")
    assert row.locator("td.state").inner_text() == "available" and "not deployed here" in row.inner_text()
    row.locator("button.start-download").click()
    until(page, "document.querySelector('tr[data-model=mdx_extra] td.state').textContent === 'cached'", 120_000)
    assert page.locator("tr[data-model=mdx_extra] td").nth(4).inner_text() == "cached"
    model = console.get("/models/mdx_extra").json()
    assert model["download"]["status"] == "completed" and model["model"]["state"] == "cached"


def test_a_generated_clip_plays_and_a_refusal_shows_the_servers_message(console, page):
    base = str(console.base_url).rstrip("/")
    open_page(page, base, "music")
    until(page, "document.getElementById('music-model').textContent.includes('musicgen-small')")
    set_slider(page, 1)
    page.click("#music-generate")
    until(page, "document.getElementById('music-player').duration > 0", timeout=120_000)
    duration = page.locator("#music-player").evaluate("e => e.duration")
    assert duration == pytest.approx(1.0, abs=0.1)
    assert "Hz from musicgen-small" in page.inner_text("#music-status")
    # it ran as a job (no synchronous request to time out on a long clip): listed, with its progress shown
    jobs = console.get("/jobs", params={"limit": 5}).json()["jobs"]
    assert any(j["model"] == "musicgen-small" and j["status"] == "completed" for j in jobs), jobs
    assert page.locator("#music-progress").evaluate("e => !e.hidden && e.value === 1")
    screenshot(page, "music")
    # a page left open while the catalog's limit fell sends more than the model allows
    page.locator("#music-duration").evaluate("e => { e.max = 60; e.value = 45; }")
    page.click("#music-generate")
    page.wait_for_selector("#error:not([hidden])")
    assert page.inner_text("#error") == "Duration 45s exceeds model limit of 30s"


def test_a_separation_shows_one_player_per_stem(console, page, tmp_path):
    song = tmp_path / "song.wav"
    song.write_bytes(make_clip(2.0))
    base = str(console.base_url).rstrip("/")
    open_page(page, base, "separate")
    page.set_input_files("#separate-file", str(song))
    page.click("#separate-start")
    page.wait_for_selector("li.stem, #error:not([hidden])", timeout=180_000)
    assert not page.locator("#error").is_visible(), page.inner_text("#error")
    stems = page.locator("li.stem")
    assert stems.count() == 4
    assert sorted(stems.nth(i).locator("strong").inner_text() for i in range(4)) == \
        ["bass.wav", "drums.wav", "other.wav", "vocals.wav"]
    until(page, "[...document.querySelectorAll('li.stem audio')].every(a => a.duration > 1.9)")
    assert page.inner_text("#separate-status") == "Done: 4 stems"
    screenshot(page, "separate")


def test_embedding_speech_chat_transcription_and_image_pages(service, page, tmp_path):
    """The other families, on the suite's application (its warm task defaults)."""
    open_page(page, service, "embed")
    page.click("#embed-start")
    page.wait_for_selector("#embed-similarity td")
    assert "3 vectors of 384 dimensions" in page.inner_text("#embed-status")
    cells = page.locator("#embed-similarity td").all_inner_texts()
    assert len(cells) == 9 and cells[0] == "1.000"
    similar, unrelated = float(cells[1]), float(cells[2])  # the real all-MiniLM-L6-v2: cats vs markets
    assert similar > unrelated + 0.2
    screenshot(page, "embed")

    open_page(page, service, "speak")
    page.click("#speak-start")
    until(page, "document.getElementById('speak-player').duration > 0", timeout=120_000)
    assert page.locator("#speak-cloning").is_hidden()  # speecht5-tts cannot clone
    page.select_option("#speak-model", "csm-1b")
    assert page.locator("#speak-cloning").is_visible()
    voice = tmp_path / "my-voice.wav"
    voice.write_bytes(make_clip(2.0, rate=16000, channels=1))
    page.set_input_files("#speak-sample", str(voice))
    page.fill("#speak-sample-text", "This is how my voice sounds.")
    page.locator("#speak-player").evaluate("e => { e.removeAttribute('src'); e.load(); }")
    page.click("#speak-start")
    until(page, "document.getElementById('speak-player').duration > 1.5", timeout=120_000)  # 1.6 s cloned
    screenshot(page, "speak")

    open_page(page, service, "chat")
    page.click("#chat-send")
    until(page, "document.getElementById('chat-input').value === ''", timeout=120_000)
    assert page.locator("#chat-log p.user").inner_text() == "You: Say hello."
    screenshot(page, "chat")

    open_page(page, service, "transcribe")
    clip = tmp_path / "speech.wav"
    clip.write_bytes(make_clip(1.0, rate=16000, channels=1))
    page.set_input_files("#transcribe-file", str(clip))
    page.click("#transcribe-start")
    until(page, "document.getElementById('transcribe-status').textContent.includes('whisper')",
                           timeout=120_000)
    page.click("#record-toggle")  # chromium's fake microphone
    page.wait_for_timeout(1500)
    page.locator("#transcribe-status").evaluate("e => { e.textContent = ''; }")
    page.click("#record-toggle")
    until(page, "document.getElementById('record-toggle').textContent === 'Record'")
    until(page, "document.getElementById('transcribe-status').textContent.includes('whisper')",
                           timeout=120_000)
    assert not page.locator("#error").is_visible()
    screenshot(page, "transcribe")

    open_page(page, service, "image")  # its tab shows: the suite's application deploys a text-to-image model
    assert page.locator('nav a[data-task="text-to-image"]').is_visible()
    page.click("#image-start")
    until(page, "document.getElementById('image-result').naturalWidth > 0", timeout=120_000)
    screenshot(page, "image")
