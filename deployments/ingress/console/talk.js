// The Talk page: a voice conversation over the service's Realtime API (/v1/realtime, OpenAI's GA protocol).
// The microphone goes up as 24 kHz 16-bit PCM; the server detects the turns (Silero VAD), Whisper hears
// them, the chat model answers and text-to-speech says it, sentence by sentence, played as it arrives.
"use strict";

const RATE = 24000;
const talk = { socket: null, context: null, stream: null, node: null, playAt: 0, sources: [], answer: null,
  heardSeconds: 0 };

function realtimeUrl(model) {
  const url = new URL(apiUrl(`v1/realtime?model=${encodeURIComponent(model)}`));
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  return url.href;
}

function base64Pcm(samples) {
  const bytes = new Uint8Array(samples.length * 2);
  const view = new DataView(bytes.buffer);
  samples.forEach((s, i) => view.setInt16(i * 2, Math.max(-1, Math.min(1, s)) * 0x7fff, true));
  let text = "";
  for (let at = 0; at < bytes.length; at += 0x8000) text += String.fromCharCode(...bytes.subarray(at, at + 0x8000));
  return btoa(text);
}

function pcmSamples(base64) {
  const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
  const view = new DataView(bytes.buffer);
  return Float32Array.from({ length: bytes.length / 2 }, (_, i) => view.getInt16(i * 2, true) / 0x8000);
}

function logLine(role) {
  const line = el("li", { className: role });
  $("talk-log").append(line);
  return line;
}

// Answer audio is scheduled back to back on the page's AudioContext as it arrives.
function play(samples) {
  const buffer = talk.context.createBuffer(1, samples.length, RATE);
  buffer.copyToChannel(samples, 0);
  const source = talk.context.createBufferSource();
  source.buffer = buffer;
  source.connect(talk.context.destination);
  talk.playAt = Math.max(talk.playAt, talk.context.currentTime);
  if (!talk.answer.startedAt) talk.answer.startedAt = talk.playAt;
  source.start(talk.playAt);
  talk.playAt += buffer.duration;
  talk.heardSeconds += buffer.duration;
  talk.sources.push(source);
  $("talk-status").textContent = `Talking: ${talk.heardSeconds.toFixed(1)} s of answers played`;
}

// Barge-in: the server cancels its answer; the page stops playing it and says how much was heard.
function stopPlaying() {
  talk.sources.forEach((s) => { try { s.stop(); } catch (_) { /* already ended */ } });
  talk.sources = [];
  const answer = talk.answer;
  if (answer && answer.startedAt && talk.socket) {
    const heardMs = Math.max(0, Math.round((talk.context.currentTime - answer.startedAt) * 1000));
    talk.socket.send(JSON.stringify({ type: "conversation.item.truncate", item_id: answer.itemId, content_index: 0,
      audio_end_ms: Math.min(heardMs, answer.sentMs) }));
  }
  talk.playAt = 0;
  talk.answer = null;
}

function onEvent(message) {
  const event = JSON.parse(message.data);
  switch (event.type) {
    case "input_audio_buffer.speech_started": stopPlaying(); break;
    case "conversation.item.input_audio_transcription.completed":
      logLine("user").textContent = event.transcript || "…"; break;
    case "response.output_item.added":
      talk.answer = { itemId: event.item.id, line: logLine("assistant"), sentMs: 0, startedAt: 0 }; break;
    case "response.output_audio_transcript.delta":
    case "response.output_text.delta":
      if (talk.answer) talk.answer.line.textContent += event.delta; break;
    case "response.output_audio.delta":
      if (talk.answer) {
        const samples = pcmSamples(event.delta);
        talk.answer.sentMs += Math.round(samples.length / RATE * 1000);
        play(samples);
      }
      break;
    case "response.done": // how many answers ended (scripts and tests wait on it)
      $("talk-log").dataset.answers = String(Number($("talk-log").dataset.answers || 0) + 1); break;
    case "error": showError(new ServiceError(event.error.message)); break;
    default: break;
  }
}

async function startTalking() {
  talk.stream = await navigator.mediaDevices.getUserMedia({ audio: { echoCancellation: true } });
  talk.context = new AudioContext({ sampleRate: RATE });
  const key = localStorage.getItem("apiKey");
  // a browser cannot set headers on a WebSocket: the key goes as a subprotocol, as OpenAI's API takes it
  const protocols = ["realtime", ...(key ? [`openai-insecure-api-key.${key}`] : [])];
  const socket = new WebSocket(realtimeUrl($("talk-model").value), protocols);
  await new Promise((resolve, reject) => {
    socket.onopen = resolve;
    socket.onerror = () => reject(new ServiceError("The realtime session could not be opened"));
  });
  talk.socket = socket;
  socket.onmessage = onEvent;
  socket.onclose = (e) => { if (talk.socket === socket) { stopTalking(); $("talk-status").textContent = `Session closed (${e.code}${e.reason ? `: ${e.reason}` : ""})`; } };
  socket.send(JSON.stringify({ type: "session.update", session: { type: "realtime",
    instructions: $("talk-instructions").value, max_output_tokens: Number($("talk-max-tokens").value) || "inf",
    audio: { input: { format: { type: "audio/pcm", rate: RATE }, turn_detection: { type: "server_vad" } },
      output: { format: { type: "audio/pcm", rate: RATE } } } } }));
  const source = talk.context.createMediaStreamSource(talk.stream);
  talk.node = talk.context.createScriptProcessor(2048, 1, 1); // about 85 ms a piece
  talk.node.onaudioprocess = (e) => {
    if (socket.readyState === WebSocket.OPEN) {
      socket.send(JSON.stringify({ type: "input_audio_buffer.append", audio: base64Pcm(e.inputBuffer.getChannelData(0)) }));
    }
  };
  source.connect(talk.node);
  talk.node.connect(talk.context.destination);
  $("talk-toggle").textContent = "Stop";
  $("talk-status").textContent = "Listening…";
}

function stopTalking() {
  const socket = talk.socket;
  talk.socket = null;
  if (socket && socket.readyState <= WebSocket.OPEN) socket.close();
  if (talk.stream) talk.stream.getTracks().forEach((t) => t.stop());
  if (talk.context) talk.context.close();
  Object.assign(talk, { context: null, stream: null, node: null, sources: [], answer: null, playAt: 0 });
  $("talk-toggle").textContent = "Start talking";
}

async function toggleTalk() {
  if (talk.socket) { stopTalking(); $("talk-status").textContent = "Stopped"; return; }
  await startTalking();
}
