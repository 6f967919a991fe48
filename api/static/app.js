// Lookout viewer page: plain JS modules, no build step. This module opens a source (video,
// commentary, speech), keeps the source picker and status dots true, and wires the controls.
// video.js: the delayed canvas; commentary.js: SSE, the lists; speech.js; grid.js.
import { $, api, debug, dot, errorText, setStatus, sourcePath, state, withToken } from "./core.js";
import { ask, closeEvents, openEvents, showModels, tickAges } from "./commentary.js";
import { buildTiles, gridOn, showGrid } from "./grid.js";
import { applyVolume, setSpeech, speechOn, startSpeech, stopSpeech } from "./speech.js";
import { closeVideo, drawLoop, framesArriving, openVideo, recordLatency, showDelay } from "./video.js";

// --- Sources ---------------------------------------------------------------------------
async function loadSources(select) {
  const resp = await api("/api/sources");
  if (!resp.ok) { setStatus("cannot list sources: " + (await errorText(resp))); return; }
  state.sources = (await resp.json()).sources;
  const picker = $("source");
  picker.innerHTML = "";
  for (const s of state.sources) picker.add(new Option(s.name, s.name));
  buildTiles();
  const wanted = select || state.source || new URLSearchParams(location.search).get("source") || localStorage.getItem("lookout.source");
  const chosen = state.sources.find((s) => s.name === wanted) || state.sources[0];
  if (!chosen) { closeSource(); state.source = null; setStatus("no sources yet: add one"); return; }
  picker.value = chosen.name;
  if (chosen.name !== state.source && !gridOn()) openSource(chosen.name);
  else if (chosen.name === state.source) showInstruction(chosen);
}

// The instruction box shows the open source's instruction (never another source's, never
// empty because the picker changed), unless the user is typing in it.
function showInstruction(source) {
  if (source && document.activeElement !== $("instruction")) $("instruction").value = source.instruction || "";
}

function openSource(name) {
  closeSource();
  state.source = name;
  localStorage.setItem("lookout.source", name);
  $("source").value = name;
  showInstruction(state.sources.find((s) => s.name === name));
  openVideo(name);
  openEvents(name);
  if (speechOn()) startSpeech(name);
  seedLatency(name);
  setStatus("watching " + name);
}

function closeSource() {
  closeEvents();
  closeVideo();
  stopSpeech();
  dot("producer", "");
  dot("worker", "");
}

// The auto delay starts from the source's recent commentaries' latencies.
async function seedLatency(name) {
  const resp = await api(sourcePath(name, "/history?limit=20"));
  if (!resp.ok || state.source !== name) return;
  for (const item of (await resp.json()).items.reverse()) if (item.kind !== "answer") recordLatency(item.latency_ms);
}

// --- Status dots -------------------------------------------------------------------------
async function pollStatus() {
  try {
    const resp = await api("/api/status");
    if (resp.ok) showStatus(await resp.json());
  } catch (err) { dot("connection", "bad"); }
  setTimeout(pollStatus, 2000);
}

function showStatus({ sources, workers }) {
  state.workers = workers || {};
  showModels();
  for (const opt of $("source").options) {
    const src = sources.find((x) => x.name === opt.value);
    const live = src && src.producer && src.producer.state === "live";
    opt.textContent = `${opt.value} ${live || (opt.value === state.source && framesArriving()) ? "●" : "○"}${src && src.worker ? " ✎" : ""}`;
  }
  const s = sources.find((x) => x.name === state.source);
  if (!s) return;
  // Frames that arrive are the truth: a webcam or ingest source has no producer process.
  const producer = s.producer && s.producer.state;
  if (producer === "live") dot("producer", "ok", `producer: live, ${s.producer.fps} fps`);
  else if (framesArriving()) dot("producer", "ok", `frames arriving${producer ? " (producer " + producer + ")" : " (sent by a client)"}`);
  else if (producer) dot("producer", producer === "failed" ? "bad" : "warn", `producer: ${producer} ${s.producer.error || ""}`);
  else dot("producer", "bad", "no producer and no frames");
  dot("worker", s.worker ? "ok" : "bad", `worker: ${s.worker || "none"}`);
  if (!speechOn()) dot("speech", s.tts ? "warn" : "", s.tts ? "speech available: turn it on" : "speech is off on the server");
  else if (!s.tts) dot("speech", "bad", "speech is off on the server");
  debug.producerDot = $("dot-producer").className;
}

// --- Webcam (frames to the ingest WebSocket) ---------------------------------------------
async function toggleWebcam() {
  if (state.webcam) { state.webcam.stop(); state.webcam = null; $("webcam").setAttribute("aria-pressed", "false"); return; }
  const name = prompt("Name for your webcam source:", "webcam");
  if (!name) return;
  let stream;
  try { stream = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 360 } }); }
  catch (err) { setStatus("webcam: " + err.message); return; }
  const video = document.createElement("video");
  video.srcObject = stream; video.muted = true; await video.play();
  const canvas = document.createElement("canvas");
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  const ws = new WebSocket(await withToken(`${proto}//${location.host}${sourcePath(name, "/ingest")}`, name, "ingest"));
  let shown = false;
  ws.onmessage = (e) => {
    const m = JSON.parse(e.data);
    if (m.error) setStatus("webcam: " + m.error);
    // The first frame acknowledged: the source is registered, open it.
    else if (m.seq !== undefined && !shown) { shown = true; loadSources(name); }
  };
  const fps = state.config.display_fps || 10;
  const timer = setInterval(() => {
    if (ws.readyState !== WebSocket.OPEN || ws.bufferedAmount > 1e6) return;  // slow link: skip
    canvas.width = video.videoWidth; canvas.height = video.videoHeight;
    canvas.getContext("2d").drawImage(video, 0, 0);
    canvas.toBlob((blob) => blob && ws.send(blob), "image/jpeg", 0.8);
  }, 1000 / fps);
  state.webcam = { stop() { clearInterval(timer); ws.close(); stream.getTracks().forEach((t) => t.stop()); } };
  $("webcam").setAttribute("aria-pressed", "true");
}

// --- Wiring -----------------------------------------------------------------------------
$("source").onchange = () => {
  if (gridOn()) showGrid(false);
  openSource($("source").value);
};
$("instruction-form").onsubmit = async (e) => {
  e.preventDefault();
  const instruction = $("instruction").value;
  const resp = await api(sourcePath(state.source, "/instruction"), { method: "PUT", body: JSON.stringify({ instruction }) });
  if (!resp.ok) { setStatus("instruction: " + (await errorText(resp))); return; }
  const { rev } = await resp.json();
  const source = state.sources.find((s) => s.name === state.source);
  if (source) source.instruction = instruction;
  setStatus(`instruction set (rev ${rev})`);
};
$("ask-form").onsubmit = async (e) => {
  e.preventDefault();
  const resp = await ask($("question").value);
  setStatus(resp.ok ? "question queued; the answer appears under Answers" : "ask: " + (await errorText(resp)));
  if (resp.ok) $("question").value = "";
};
$("add-form").onsubmit = async (e) => {
  e.preventDefault();
  const name = $("add-name").value.trim();
  const resp = await api("/api/sources", { method: "POST", body: JSON.stringify({ name, url: $("add-url").value.trim() }) });
  if (!resp.ok) { setStatus("add source: " + (await errorText(resp))); return; }
  $("add-box").open = false;
  if (gridOn()) showGrid(false);
  await loadSources(name);  // opens it at once: the canvas says it waits for its frames
  setStatus("source " + name + " added; waiting for frames");
};
$("remove").onclick = async () => {
  if (!state.source || !confirm("Remove source " + state.source + "?")) return;
  const resp = await api(sourcePath(state.source), { method: "DELETE" });
  if (!resp.ok) { setStatus("remove: " + (await errorText(resp))); return; }
  closeSource(); state.source = null; loadSources();
};
$("speech").onclick = () => setSpeech(!speechOn());
$("mute").onchange = applyVolume;
$("volume").oninput = applyVolume;
$("webcam").onclick = toggleWebcam;
$("frames-close").onclick = () => $("frames-dialog").close();
// Typing a delay makes it manual; ticking "auto" goes back to the measured one.
$("delay").oninput = () => { $("delay-auto").checked = false; localStorage.setItem("lookout.delay", $("delay").value); showDelay(); };
$("delay-auto").onchange = () => {
  localStorage.setItem("lookout.delay", $("delay-auto").checked ? "auto" : $("delay").value);
  showDelay();
};
$("grid-toggle").onclick = () => {
  const on = !gridOn();
  if (on) { closeSource(); state.source = null; }
  showGrid(on, (name) => { showGrid(false); openSource(name); });
  if (!on) loadSources();
};
window.addEventListener("lookout:sources", () => { loadSources(); });

(async () => {
  const resp = await fetch("/api/config");
  state.config = resp.ok ? await resp.json() : {};
  const saved = localStorage.getItem("lookout.delay");
  $("delay-auto").checked = saved === null || saved === "auto";
  if (!$("delay-auto").checked) $("delay").value = saved;
  showDelay();
  if (state.config.instruction_max_chars) $("instruction").maxLength = state.config.instruction_max_chars;
  setSpeech(false);
  await loadSources();
  requestAnimationFrame(drawLoop);
  pollStatus();
  setInterval(tickAges, 1000);
})();
