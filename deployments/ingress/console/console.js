// The web console: plain browser JavaScript, no build step. Every limit it applies (durations,
// adapters, voices, GPU memory) is read from the service's own /models and /adapters.
"use strict";

const API = new URL("..", location.href); // the ingress root: /ui/ -> /, /app/ui/ -> /app/
const $ = (id) => document.getElementById(id);
const state = { models: null, adapters: [], page: null };

function apiUrl(path) {
  return new URL(path.replace(/^\//, ""), API).href;
}

class ServiceError extends Error {
  constructor(message, status) { super(message); this.status = status; }
}

// One request to the service, with the API key if one is set; a reply that is not 2xx becomes a
// ServiceError with the server's message. A service with keys that refuses the key (or its absence) asks
// for one once, keeps it (Settings shows it) and sends the request again.
async function call(method, path, body, { raw = false, asked = false } = {}) {
  const headers = {};
  const key = localStorage.getItem("apiKey");
  if (key) headers["X-API-Key"] = key;
  const init = { method, headers };
  if (body instanceof FormData) init.body = body;
  else if (body !== undefined) { init.body = JSON.stringify(body); headers["Content-Type"] = "application/json"; }
  const reply = await fetch(apiUrl(path), init);
  if (!asked && (reply.status === 401 || (reply.status === 403 && (await keyRefused(reply))))) {
    const since = localStorage.getItem("apiKey");
    if (since && since !== key) return call(method, path, body, { raw, asked: true }); // given meanwhile
    const given = window.prompt("This service needs an API key:", "");
    if (given) {
      localStorage.setItem("apiKey", given.trim());
      $("api-key").value = given.trim();
      return call(method, path, body, { raw, asked: true });
    }
  }
  if (!reply.ok) {
    let message = `${reply.status} ${reply.statusText}`;
    try { const data = await reply.json(); message = data.message || data.detail || message; } catch (_) { /* not JSON */ }
    throw new ServiceError(message, reply.status);
  }
  return raw ? reply : reply.json();
}

// Whether a 403 says the key itself is not valid (not a valid key that may not do this).
async function keyRefused(reply) {
  try { return (await reply.clone().json()).error_code === "INVALID_API_KEY"; } catch (_) { return false; }
}

// A file the service holds (a job's result) as a local object URL: fetched with the key, which a
// plain <audio src> or <a href> would not send.
async function fileUrl(path) {
  return URL.createObjectURL(await (await call("GET", path, undefined, { raw: true })).blob());
}

function showError(error) {
  const box = $("error");
  box.textContent = error ? error.message : "";
  box.hidden = !error;
}

// Runs `work` for a button: disables it meanwhile, shows the server's message if it fails.
async function busy(button, status, work) {
  button.disabled = true;
  showError(null);
  try { await work(); } catch (error) { showError(error); if (status) status.textContent = ""; }
  finally { button.disabled = false; }
}

function el(tag, props = {}, ...children) {
  const { dataset, ...rest } = props; // an element's dataset is read-only: copy into it
  const node = Object.assign(document.createElement(tag), rest);
  Object.assign(node.dataset, dataset || {});
  node.append(...children);
  return node;
}

// ---- the catalog ----------------------------------------------------------------------------

async function loadModels() {
  state.models = await call("GET", "/models");
  state.adapters = (await call("GET", "/adapters")).adapters;
  return state.models;
}

const modelsOf = (task) => state.models.models.filter((m) => m.task === task);
const currentOf = (task) => state.models.models.find((m) => m.id === state.models.tasks[task].current_model);
const gb = (value) => (value === undefined || value === null ? "-" : `${value} GB`);

// Text of the warning when `model` needs more GPU memory than one GPU of the service has (null: fits,
// or the service runs on CPU and says so).
function vramWarning(model, gpu) {
  if (!gpu || !gpu.memory_gb || !model.vram_requirement_gb) return null;
  if (model.vram_requirement_gb <= gpu.memory_gb) return null;
  return `Needs ${model.vram_requirement_gb} GB of GPU memory; this service's GPU has ${gpu.memory_gb} GB`;
}

function fillModelSelect(select) {
  const task = select.dataset.task;
  const chosen = select.value;
  const models = modelsOf(task).filter((m) => m.is_deployed);
  select.replaceChildren(...models.map((m) => el("option", { value: m.id, textContent: `${m.display_name} (${m.id})` })));
  select.value = models.some((m) => m.id === chosen) ? chosen : state.models.tasks[task].current_model;
}

// ---- Settings -------------------------------------------------------------------------------

function downloadCell(model) {
  const cell = el("td");
  const download = model.download;
  if (download && ["pending", "downloading"].includes(download.status)) {
    const done = download.bytes_total ? download.bytes_done / download.bytes_total : download.progress || 0;
    cell.append(el("progress", { max: 1, value: done }), ` ${Math.round(done * 100)}% `,
      el("button", { textContent: "Cancel", className: "cancel-download",
                     onclick: (e) => busy(e.target, null, () => call("POST", `/models/download/${download.download_id}/cancel`).then(renderSettings)) }));
  } else if (download && download.status === "completed") {
    cell.textContent = "cached";
  } else {
    if (download && download.status) cell.append(`${download.status} `);
    cell.append(el("button", { textContent: "Download", className: "start-download",
                               onclick: (e) => busy(e.target, null, () => call("POST", "/models/download", { model_id: model.id, enable_large_model: true, experimental: true }).then(renderSettings)) }));
  }
  return cell;
}

function modelRow(model, task) {
  const current = state.models.tasks[task].current_model === model.id;
  const warning = vramWarning(model, state.models.gpu);
  const action = el("td");
  if (model.is_deployed) {
    action.append(el("button", {
      textContent: current ? "Reload model" : "Use this model", className: "switch-model",
      onclick: (e) => busy(e.target, null, async () => {
        await call("PUT", `/models/current/${task}`, { model: model.id });
        await renderSettings();
      }),
    }));
  } else {
    action.append(el("span", { className: "hint", textContent: "not deployed here" }));
  }
  const limits = model.max_duration_seconds ? `${model.max_duration_seconds} s` : "-";
  const name = el("td", {}, el("strong", { textContent: model.display_name }), el("br"), el("code", { textContent: model.id }));
  if (warning) name.append(el("br"), el("span", { className: "warning vram-warning", textContent: warning }));
  return el("tr", { className: current ? "current" : "", dataset: { model: model.id } },
    name, el("td", { textContent: gb(model.vram_requirement_gb) }), el("td", { textContent: limits }),
    el("td", { className: `state state-${model.state}`, textContent: (model.state || "-").replaceAll("_", " ") }),
    downloadCell(model), action);
}

async function renderSettings() {
  await loadModels();
  const gpu = state.models.gpu || {};
  $("gpu-info").textContent = gpu.memory_gb
    ? `GPUs: ${gpu.count} × ${gpu.memory_gb} GB. Models that need more are marked.`
    : "This service runs its models on CPU: the VRAM column is what each model needs on a GPU.";
  const tables = Object.entries(state.models.tasks).filter(([task]) => modelsOf(task).length).map(([task, info]) => {
    const rows = modelsOf(task).map((m) => modelRow(m, task));
    const head = el("tr", {}, ...["Model", "VRAM", "Max duration", "State", "Download", ""].map((t) => el("th", { textContent: t })));
    return el("div", { dataset: { task } },
      el("h3", { textContent: `${task} — current: ${info.current_model}` }),
      el("table", {}, el("thead", {}, head), el("tbody", {}, ...rows)));
  });
  $("task-tables").replaceChildren(...tables);
}

// ---- Generate music -------------------------------------------------------------------------

function renderMusic() {
  const model = currentOf("text-to-music");
  $("music-model").textContent = `${model.display_name} (${model.id})`;
  const slider = $("music-duration");
  const max = model.max_duration_seconds || 30;
  if (!slider.dataset.touched) slider.value = model.recommended_duration_seconds || Math.min(10, max);
  slider.max = max;
  if (Number(slider.value) > max) slider.value = max; // clamp to the new model's limit
  $("music-duration-value").textContent = slider.value;
  $("music-duration-limit").textContent = `up to ${max} s with ${model.display_name}`;

  const select = $("music-adapter");
  const chosen = select.value;
  const compatible = state.adapters.filter((a) => a.base_model_id === model.id);
  const other = state.adapters.filter((a) => a.base_model_id !== model.id);
  const options = [el("option", { value: "", textContent: "None (base model)" }),
    ...compatible.map((a) => el("option", { value: a.id, textContent: a.name }))];
  if (other.length) options.push(el("option", { disabled: true, textContent: "──────────" }));
  options.push(...other.map((a) => el("option", {
    value: a.id, disabled: true, className: "incompatible",
    textContent: `${a.name} (Requires ${a.base_model_config.display_name})`,
  })));
  select.replaceChildren(...options);
  select.value = compatible.some((a) => a.id === chosen) ? chosen : "";
  $("adapter-hint").hidden = !other.length;
}

// A job, not the synchronous /api/music: a long clip on a CPU takes longer than a request may wait
// (REQUEST_TIMEOUT), and the job shows its progress meanwhile.
async function generateMusic() {
  const input = { prompt: $("music-prompt").value, duration: Number($("music-duration").value) };
  if ($("music-adapter").value) input.adapter = $("music-adapter").value;
  $("music-status").textContent = "Queued…";
  $("music-player").hidden = true;
  const queued = await call("POST", "/api/v1/run", { task: "text-to-music", input });
  const job = await followJob(queued, "music-progress", "music-status");
  const player = $("music-player");
  player.src = await fileUrl(job.files[0].url);
  player.hidden = false;
  const out = job.output;
  $("music-status").textContent = `${out.duration} s at ${out.sample_rate} Hz from ${out.model}`;
}

// Poll a job until it ends, showing its progress; the finished job (a failed one is an error).
async function followJob(job, barId, statusId) {
  const bar = $(barId);
  bar.hidden = false;
  while (!["completed", "failed", "cancelled"].includes(job.status)) {
    bar.value = job.progress || 0;
    $(statusId).textContent = `${job.status}: ${job.message || ""}`;
    await sleep(1000);
    job = await call("GET", `/jobs/${job.job_id}`);
  }
  bar.value = 1;
  if (job.status !== "completed") throw new ServiceError(`Job ${job.status}: ${job.error || job.message}`);
  return job;
}

// ---- Separate a song ------------------------------------------------------------------------

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function separate() {
  const file = $("separate-file").files[0];
  if (!file) throw new ServiceError("Choose a song first");
  const model = $("separate-model").value;
  const form = new FormData();
  form.append("file", file);
  $("separate-status").textContent = "Uploading…";
  const upload = await call("POST", `/upload/${model}`, form);
  $("stems").replaceChildren();
  const job = await followJob(await call("POST", `/process/${model}/${upload.file_id}`, {}), "separate-progress",
    "separate-status");
  $("separate-status").textContent = `Done: ${job.files.length} stems`;
  const urls = await Promise.all(job.files.map((f) => fileUrl(f.url)));
  $("stems").replaceChildren(...job.files.map((f, i) => el("li", { className: "stem" },
    el("strong", { textContent: f.name }), " ", el("audio", { controls: true, src: urls[i] }), " ",
    el("a", { href: urls[i], download: f.name, textContent: "download" }))));
}

// ---- Transcribe -----------------------------------------------------------------------------

async function transcribe(blob, name) {
  const form = new FormData();
  form.append("audio", blob, name);
  form.append("model", $("transcribe-model").value);
  $("transcribe-status").textContent = "Transcribing…";
  const result = await call("POST", "/api/stt", form);
  $("transcript").textContent = result.text;
  $("transcribe-status").textContent = `${result.model || ""} ${result.language ? `(${result.language})` : ""}`;
}

// Microphone capture as 16-bit PCM WAV, which every speech model here decodes.
const recorder = { context: null, chunks: [], stream: null, node: null };

function wavBlob(chunks, rate) {
  const samples = chunks.reduce((n, c) => n + c.length, 0);
  const view = new DataView(new ArrayBuffer(44 + samples * 2));
  const text = (at, s) => [...s].forEach((ch, i) => view.setUint8(at + i, ch.charCodeAt(0)));
  text(0, "RIFF"); view.setUint32(4, 36 + samples * 2, true); text(8, "WAVE"); text(12, "fmt ");
  view.setUint32(16, 16, true); view.setUint16(20, 1, true); view.setUint16(22, 1, true);
  view.setUint32(24, rate, true); view.setUint32(28, rate * 2, true); view.setUint16(32, 2, true);
  view.setUint16(34, 16, true); text(36, "data"); view.setUint32(40, samples * 2, true);
  let at = 44;
  for (const chunk of chunks) for (const s of chunk) { view.setInt16(at, Math.max(-1, Math.min(1, s)) * 0x7fff, true); at += 2; }
  return new Blob([view], { type: "audio/wav" });
}

async function toggleRecording() {
  const button = $("record-toggle");
  if (!recorder.context) {
    recorder.stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    recorder.context = new AudioContext();
    const source = recorder.context.createMediaStreamSource(recorder.stream);
    recorder.node = recorder.context.createScriptProcessor(4096, 1, 1);
    recorder.chunks = [];
    recorder.node.onaudioprocess = (e) => recorder.chunks.push(new Float32Array(e.inputBuffer.getChannelData(0)));
    source.connect(recorder.node);
    recorder.node.connect(recorder.context.destination);
    button.textContent = "Stop and transcribe";
    return;
  }
  const rate = recorder.context.sampleRate;
  recorder.stream.getTracks().forEach((t) => t.stop());
  await recorder.context.close();
  recorder.context = null;
  button.textContent = "Record";
  await transcribe(wavBlob(recorder.chunks, rate), "recording.wav");
}

// ---- Speak, chat, embed, image --------------------------------------------------------------

function fillVoices() {
  const model = state.models.models.find((m) => m.id === $("speak-model").value);
  const voices = (model && model.voices) || [];
  $("speak-voice").replaceChildren(...voices.map((v) => el("option", { value: v, textContent: v })));
  $("speak-voice").disabled = !voices.length;
  $("speak-cloning").hidden = !(model && model.capabilities.includes("voice-cloning"));
}

const base64Of = (file) => file.arrayBuffer().then((buffer) => {
  let text = "";
  new Uint8Array(buffer).forEach((byte) => { text += String.fromCharCode(byte); });
  return btoa(text);
});

async function speak() {
  const body = { model: $("speak-model").value, input: $("speak-text").value, response_format: "wav" };
  if ($("speak-voice").value) body.voice = $("speak-voice").value;
  const sample = $("speak-cloning").hidden ? null : $("speak-sample").files[0];
  if (sample) { // cloned: the server checks the sample and says what is wrong with it
    body.audio_prompt = await base64Of(sample);
    body.audio_prompt_text = $("speak-sample-text").value;
  }
  $("speak-status").textContent = "Speaking…";
  const reply = await call("POST", "/v1/audio/speech", body, { raw: true });
  $("speak-player").src = URL.createObjectURL(await reply.blob());
  $("speak-player").hidden = false;
  $("speak-status").textContent = "";
}

const chatHistory = [];

async function sendChat() {
  const text = $("chat-input").value.trim();
  if (!text) throw new ServiceError("Write a message first");
  chatHistory.push({ role: "user", content: text });
  $("chat-log").append(el("p", { className: "user", textContent: `You: ${text}` }));
  const answer = el("p", { className: "assistant", textContent: "" });
  $("chat-log").append(answer);
  const reply = await call("POST", "/v1/chat/completions",
    { model: $("chat-model").value, messages: chatHistory, stream: true, max_tokens: 64 }, { raw: true });
  const reader = reply.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "", content = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value;
    const events = buffer.split("\n\n");
    buffer = events.pop();
    for (const event of events) {
      const data = event.replace(/^data: /, "").trim();
      if (!data || data === "[DONE]") continue;
      const delta = JSON.parse(data).choices[0].delta.content || "";
      content += delta;
      answer.textContent = content; // streamed: the answer grows as tokens arrive
    }
  }
  chatHistory.push({ role: "assistant", content });
  $("chat-input").value = "";
}

async function embed() {
  const texts = $("embed-input").value.split("\n").map((t) => t.trim()).filter(Boolean);
  const result = await call("POST", "/v1/embeddings", { model: $("embed-model").value, input: texts });
  const vectors = result.data.map((d) => d.embedding);
  const norm = (v) => Math.sqrt(v.reduce((s, x) => s + x * x, 0));
  const cosine = (a, b) => a.reduce((s, x, i) => s + x * b[i], 0) / (norm(a) * norm(b));
  $("embed-status").textContent = `${vectors.length} vectors of ${vectors[0].length} dimensions; cosine similarity:`;
  const head = el("tr", {}, el("th"), ...texts.map((_, i) => el("th", { textContent: `#${i + 1}` })));
  const rows = vectors.map((a, i) => el("tr", {}, el("th", { textContent: `#${i + 1} ${texts[i]}` }),
    ...vectors.map((b) => el("td", { textContent: cosine(a, b).toFixed(3) }))));
  $("embed-similarity").replaceChildren(head, ...rows);
}

async function generateImage() {
  $("image-status").textContent = "Generating…";
  const result = await call("POST", "/v1/images/generations",
    { model: $("image-model").value, prompt: $("image-prompt").value, response_format: "b64_json" });
  $("image-result").src = `data:image/png;base64,${result.data[0].b64_json}`;
  $("image-result").hidden = false;
  $("image-status").textContent = "";
}

// ---- pages ----------------------------------------------------------------------------------

async function showPage() {
  const page = (location.hash || "#settings").slice(1);
  state.page = page;
  delete document.body.dataset.ready; // set again once the page has its models (scripts and tests wait on it)
  document.querySelectorAll("section[data-page]").forEach((s) => { s.hidden = s.dataset.page !== page; });
  document.querySelectorAll("nav a").forEach((a) => a.classList.toggle("current", a.hash === `#${page}`));
  showError(null);
  try {
    if (page === "settings") await renderSettings();
    else await loadModels();
    document.querySelectorAll("select[data-task]").forEach(fillModelSelect);
    // image generation shows once a text-to-image model is deployed
    document.querySelector('nav a[data-task="text-to-image"]').hidden = !modelsOf("text-to-image").some((m) => m.is_deployed);
    if (page === "music") renderMusic();
    if (page === "speak") fillVoices();
  } catch (error) { showError(error); }
  document.body.dataset.ready = page;
}

function start() {
  $("api-key").value = localStorage.getItem("apiKey") || "";
  $("api-key").onchange = (e) => localStorage.setItem("apiKey", e.target.value);
  $("music-duration").oninput = (e) => { e.target.dataset.touched = "1"; $("music-duration-value").textContent = e.target.value; };
  const buttons = {
    "music-generate": ["music-status", generateMusic], "separate-start": ["separate-status", separate],
    "transcribe-start": ["transcribe-status", () => {
      const file = $("transcribe-file").files[0];
      if (!file) throw new ServiceError("Choose an audio file first");
      return transcribe(file, file.name);
    }],
    "record-toggle": ["transcribe-status", toggleRecording], "speak-start": ["speak-status", speak],
    "chat-send": ["chat-status", sendChat], "embed-start": ["embed-status", embed], "image-start": ["image-status", generateImage],
    "talk-toggle": ["talk-status", toggleTalk], // talk.js
  };
  for (const [id, [status, work]] of Object.entries(buttons)) $(id).onclick = (e) => busy(e.target, $(status), work);
  $("speak-model").onchange = fillVoices;
  window.addEventListener("hashchange", showPage);
  // Settings shows lifecycle states and download progress live
  setInterval(() => { if (state.page === "settings" && !document.hidden) renderSettings().catch(showError); }, 2000);
  showPage();
}

start();
