// Lookout viewer page: plain JS, no build step.
// Video: MJPEG read with fetch() and drawn on a canvas, held back by the video delay. Text:
// EventSource (SSE); words wait until the frame they describe is on screen (each MJPEG part
// carries its capture time, each cycle the capture time of its newest frame). Speech: raw PCM
// read with fetch() and scheduled back to back in a 48 kHz AudioContext, held back likewise.
"use strict";

const $ = (id) => document.getElementById(id);
const debug = (window.lookoutDebug = { frames: 0, drawn: 0, chunks: 0, audioChunks: 0, commentaries: 0, held: 0, shownTs: 0 });
const state = { source: null, config: null, events: null, video: null, audio: null, webcam: null };

// --- API keys: asked once, remembered in this browser ---------------------------------
function apiKey() { return localStorage.getItem("lookout.key") || ""; }
// URLs that cannot carry a header (EventSource, WebSocket) get a short-lived token, never
// the key itself: keys in URLs end up in logs and browser history. A token opens the media
// of one source only (scope "media"), or also its ingest socket (scope "ingest").
const mediaTokens = new Map();  // "scope source" -> {token, expires_at}
async function withToken(url, source, scope = "media") {
  if (!apiKey()) return url;
  const id = scope + " " + source;
  let minted = mediaTokens.get(id);
  if (!minted || minted.expires_at * 1000 - Date.now() < 60_000) {
    const resp = await api("/api/tokens", { method: "POST", body: JSON.stringify({ source, scope }) });
    minted = resp.ok ? await resp.json() : null;
    if (!minted) return url;  // no keys on the server after all: the URL needs none
    mediaTokens.set(id, minted);
  }
  return url + (url.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(minted.token);
}
async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers || {});
  if (apiKey()) headers.Authorization = "Bearer " + apiKey();
  if (options.body && !headers["Content-Type"]) headers["Content-Type"] = "application/json";
  const resp = await fetch(path, Object.assign({}, options, { headers }));
  if (resp.status === 401) {
    const key = prompt("This Lookout needs an API key:");
    if (key) { localStorage.setItem("lookout.key", key.trim()); return api(path, options); }
  }
  return resp;
}
async function errorText(resp) {
  try { const body = await resp.json(); return body.error || resp.statusText; } catch { return resp.statusText; }
}
function setStatus(text) { $("status").textContent = text; }
function dot(name, cls) { $("dot-" + name).className = "dot " + (cls || ""); }

// --- Sources ---------------------------------------------------------------------------
async function loadSources(select) {
  const resp = await api("/api/sources");
  if (!resp.ok) { setStatus("cannot list sources: " + (await errorText(resp))); return; }
  const { sources } = await resp.json();
  const picker = $("source");
  picker.innerHTML = "";
  for (const s of sources) picker.add(new Option(s.name, s.name));
  const wanted = select || new URLSearchParams(location.search).get("source") || localStorage.getItem("lookout.source");
  const chosen = sources.find((s) => s.name === wanted) || sources[0];
  if (!chosen) { setStatus("no sources yet: add one"); return; }
  picker.value = chosen.name;
  if (chosen.name !== state.source) openSource(chosen.name, chosen.instruction);
}

function openSource(name, instruction) {
  closeSource();
  state.source = name;
  localStorage.setItem("lookout.source", name);
  $("instruction").value = instruction || "";
  $("history").innerHTML = "";
  shownHistory.clear();
  $("live").textContent = "";
  openEvents(name);
  state.video = readVideo(name);
  if (state.audioOn) state.audio = readAudio(name);
  setStatus("watching " + name);
}

function closeSource() {
  if (state.events) state.events.close();
  for (const k of ["video", "audio"]) if (state[k]) { state[k].abort(); state[k] = null; }
  frames.length = 0;
  held.length = 0;
  cycleFrameTs.clear();
  state.shownTs = 0;
}

// --- Sync: words wait until the picture they describe is on screen ----------------------
const cycleFrameTs = new Map();  // cycle id -> capture time (s) of its window's newest frame
const held = [];  // {ts, until, show}, in arrival order
const HOLD_SLACK_MS = 2000;  // if the video stalls, words still come this long after the delay

function delayMs() { return Math.max(0, Number($("delay").value) || 0) * 1000; }

// Run `show` once the video has reached the newest frame of `cycle` (at once when live or
// when the cycle's frames are unknown, but never ahead of words already waiting).
function whenShown(cycle, show) {
  const ts = cycleFrameTs.get(cycle);
  const last = held[held.length - 1];
  if (ts && delayMs()) held.push({ ts, until: performance.now() + delayMs() + HOLD_SLACK_MS, show });
  else if (last) held.push({ ts: last.ts, until: last.until, show });
  else show();
  flushHeld();
}

function flushHeld() {
  const now = performance.now();
  const live = delayMs() === 0;
  while (held.length && (live || state.shownTs >= held[0].ts || now >= held[0].until)) held.shift().show();
  debug.held = held.length;
}

// Seconds until the video shows the newest frame of `cycle` (0 when live or unknown).
function secondsUntilShown(cycle) {
  const ts = cycleFrameTs.get(cycle);
  if (!ts || !state.shownTs || !delayMs()) return 0;
  return Math.min(delayMs() / 1000, Math.max(0, ts - state.shownTs));
}

// --- Commentary (SSE) -------------------------------------------------------------------
async function openEvents(name) {
  const es = new EventSource(await withToken(`/api/sources/${encodeURIComponent(name)}/events`, name));
  if (state.source !== name) { es.close(); return; }  // the viewer moved on meanwhile
  state.events = es;
  es.onopen = () => dot("connection", "ok");
  es.onerror = () => {
    dot("connection", es.readyState === EventSource.CLOSED ? "bad" : "warn");
    // Closed for good (an expired token answers 401): reopen with a fresh token. The new
    // stream starts with a replay of recent history; addHistory skips what is shown.
    if (es.readyState === EventSource.CLOSED && state.events === es) {
      mediaTokens.delete("media " + name);
      setTimeout(() => { if (state.events === es) openEvents(name); }, 1000);
    }
  };
  es.addEventListener("chunk", (e) => {
    const chunk = JSON.parse(e.data);
    whenShown(chunk.cycle, () => {
      if (chunk.cycle !== state.cycle) { state.cycle = chunk.cycle; $("live").textContent = ""; }
      debug.chunks++;
      $("live").textContent += chunk.text;
    });
  });
  es.addEventListener("cycle", (e) => {
    const ev = JSON.parse(e.data);
    if (ev.event === "started" && ev.frame_ts && ev.frame_ts.length) {
      cycleFrameTs.set(ev.cycle, Math.max(...ev.frame_ts));
      state.audioCycle = ev.cycle;
      if (cycleFrameTs.size > 100) cycleFrameTs.delete(cycleFrameTs.keys().next().value);
    }
    if ((ev.event === "finished" || ev.event === "interrupted") && ev.text) {
      whenShown(ev.cycle, () =>
        addHistory({ id: ev.history_id, text: ev.text, status: ev.event, kind: ev.kind, question: ev.question, at: ev.ts }));
    } else if (ev.event === "failed") setStatus("commentary failed: " + (ev.error || "unknown error"));
  });
  es.addEventListener("commentary", (e) => {
    const rec = JSON.parse(e.data);
    addHistory({ id: rec.id, text: rec.text, status: rec.status, kind: rec.kind, question: rec.question, at: rec.started_at });
  });
  es.addEventListener("notice", (e) => {
    const n = JSON.parse(e.data);
    setStatus(`${n.source}: ${n.what} ${n.detail || ""}`);
    if (n.what === "registered" || n.what === "removed") loadSources(state.source);
  });
  es.addEventListener("reconnected", () => setStatus("server reconnected to Redis; caught up from history"));
  es.addEventListener("gap", (e) => {
    // A resume after a long absence: the newest commentaries follow, older ones stay in history.
    const gap = JSON.parse(e.data);
    setStatus(`${gap.skipped} older commentaries skipped while away (history before ${gap.before})`);
  });
}

const shownHistory = new Set();  // history ids already listed (a reopened stream replays)

function addHistory(item) {
  if (item.id) {
    if (shownHistory.has(item.id)) return;
    shownHistory.add(item.id);
  }
  debug.commentaries++;
  const li = document.createElement("li");
  const meta = document.createElement("span");
  meta.className = "meta";
  const when = item.at ? new Date(item.at * 1000).toLocaleTimeString() : "";
  meta.textContent = `${when}${item.status === "interrupted" ? " (interrupted)" : ""}`;
  li.append(meta, (item.kind === "answer" ? `Q: ${item.question} — A: ` : "") + item.text);
  $("history").prepend(li);
  while ($("history").children.length > 200) $("history").lastChild.remove();
}

// --- Video (MJPEG through fetch, delayed on a canvas) ------------------------------------
const frames = [];  // {at, blob} waiting for their display time
const CRLF2 = [13, 10, 13, 10];

function indexOf(buf, pattern) {
  outer: for (let i = 0; i <= buf.length - pattern.length; i++) {
    for (let j = 0; j < pattern.length; j++) if (buf[i + j] !== pattern[j]) continue outer;
    return i;
  }
  return -1;
}

function readVideo(name) {
  const ctl = new AbortController();
  (async () => {
    while (!ctl.signal.aborted) {
      try {
        const resp = await api(`/api/sources/${encodeURIComponent(name)}/mjpeg`, { signal: ctl.signal });
        if (!resp.ok) throw new Error(await errorText(resp));
        const reader = resp.body.getReader();
        let buf = new Uint8Array(0);
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          const joined = new Uint8Array(buf.length + value.length);
          joined.set(buf); joined.set(value, buf.length); buf = joined;
          for (;;) {
            const end = indexOf(buf, CRLF2);
            if (end < 0) break;
            const head = new TextDecoder().decode(buf.subarray(0, end));
            const m = /Content-Length:\s*(\d+)/i.exec(head);
            const captured = /X-Frame-Ts:\s*([\d.]+)/i.exec(head);
            const start = end + 4;
            if (!m) { buf = buf.subarray(start); continue; }
            const len = Number(m[1]);
            if (buf.length < start + len) break;
            frames.push({ at: performance.now(), ts: captured ? Number(captured[1]) : 0, blob: new Blob([buf.slice(start, start + len)], { type: "image/jpeg" }) });
            debug.frames++;
            buf = buf.subarray(start + len);
          }
        }
      } catch (err) {
        if (ctl.signal.aborted) return;
        setStatus("video: " + err.message + "; retrying");
      }
      await new Promise((r) => setTimeout(r, 1000));
    }
  })();
  return ctl;
}

async function drawLoop() {
  const now = performance.now();
  let due = null;
  while (frames.length && frames[0].at + delayMs() <= now) due = frames.shift();
  if (frames.length > 1200) frames.splice(0, frames.length - 1200);  // never hold more than 2 min
  if (due) {
    try {
      const bitmap = await createImageBitmap(due.blob);
      const canvas = $("video");
      if (canvas.width !== bitmap.width || canvas.height !== bitmap.height) {
        canvas.width = bitmap.width; canvas.height = bitmap.height;
      }
      canvas.getContext("2d").drawImage(bitmap, 0, 0);
      bitmap.close();
      debug.drawn++;
      state.shownTs = debug.shownTs = due.ts;
    } catch (err) { /* a broken JPEG: skip it */ }
  }
  flushHeld();
  requestAnimationFrame(drawLoop);
}

// --- Speech (raw PCM through fetch into Web Audio) ---------------------------------------
function readAudio(name) {
  const ctl = new AbortController();
  const rate = (state.config && state.config.sample_rate) || 48000;
  if (!state.ctx) {
    state.ctx = new AudioContext({ sampleRate: rate });
    state.gain = state.ctx.createGain();
    state.gain.connect(state.ctx.destination);
  }
  state.ctx.resume();
  applyVolume();
  (async () => {
    while (!ctl.signal.aborted) {
      try {
        const resp = await api(`/api/sources/${encodeURIComponent(name)}/audio`, { signal: ctl.signal });
        if (!resp.ok) throw new Error(await errorText(resp));
        const reader = resp.body.getReader();
        let carry = null;  // an odd byte left from the previous read
        let playAt = 0;
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          let bytes = value;
          if (carry) { bytes = new Uint8Array(value.length + 1); bytes[0] = carry; bytes.set(value, 1); carry = null; }
          if (bytes.length % 2) { carry = bytes[bytes.length - 1]; bytes = bytes.subarray(0, bytes.length - 1); }
          if (!bytes.length) continue;
          const samples = new Int16Array(bytes.slice().buffer);
          const buffer = state.ctx.createBuffer(1, samples.length, rate);
          const data = buffer.getChannelData(0);
          for (let i = 0; i < samples.length; i++) data[i] = samples[i] / 32768;
          const src = state.ctx.createBufferSource();
          src.buffer = buffer;
          src.connect(state.gain);
          // Back to back; after a gap start a little ahead so the first buffer is not cut, and
          // no sooner than the video shows the frames this speech is about.
          if (playAt < state.ctx.currentTime) {
            playAt = state.ctx.currentTime + 0.05 + secondsUntilShown(state.audioCycle);
          }
          src.start(playAt);
          playAt += buffer.duration;
          debug.audioChunks++;
          debug.audioState = state.ctx.state;
          dot("speech", "ok");
        }
      } catch (err) {
        if (ctl.signal.aborted) return;
        setStatus("speech: " + err.message + "; retrying");
      }
      await new Promise((r) => setTimeout(r, 1000));
    }
  })();
  return ctl;
}

function applyVolume() {
  if (state.gain) state.gain.gain.value = $("mute").checked ? 0 : Number($("volume").value);
}

function toggleSpeech() {
  state.audioOn = !state.audioOn;
  $("speech").textContent = state.audioOn ? "Speech on" : "Speech off";
  $("speech").classList.toggle("on", state.audioOn);
  if (state.audio) { state.audio.abort(); state.audio = null; }
  if (state.audioOn && state.source) state.audio = readAudio(state.source);
}

// --- Webcam (frames to the ingest WebSocket) ---------------------------------------------
async function toggleWebcam() {
  if (state.webcam) { state.webcam.stop(); state.webcam = null; $("webcam").classList.remove("on"); return; }
  const name = prompt("Name for your webcam source:", "webcam");
  if (!name) return;
  let stream;
  try { stream = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 360 } }); }
  catch (err) { setStatus("webcam: " + err.message); return; }
  const video = document.createElement("video");
  video.srcObject = stream; video.muted = true; await video.play();
  const canvas = document.createElement("canvas");
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  const ws = new WebSocket(await withToken(`${proto}//${location.host}/api/sources/${encodeURIComponent(name)}/ingest`, name, "ingest"));
  ws.onmessage = (e) => { const m = JSON.parse(e.data); if (m.error) setStatus("webcam: " + m.error); };
  const fps = (state.config && state.config.display_fps) || 10;
  const timer = setInterval(() => {
    if (ws.readyState !== WebSocket.OPEN || ws.bufferedAmount > 1e6) return;  // slow link: skip
    canvas.width = video.videoWidth; canvas.height = video.videoHeight;
    canvas.getContext("2d").drawImage(video, 0, 0);
    canvas.toBlob((blob) => blob && ws.send(blob), "image/jpeg", 0.8);
  }, 1000 / fps);
  ws.onopen = () => setTimeout(() => loadSources(name), 1500);
  state.webcam = { stop() { clearInterval(timer); ws.close(); stream.getTracks().forEach((t) => t.stop()); } };
  $("webcam").classList.add("on");
}

// --- Status dots ---------------------------------------------------------------------------
async function pollStatus() {
  try {
    const resp = await api("/api/status");
    if (resp.ok) {
      const { sources } = await resp.json();
      for (const opt of $("source").options) {
        const src = sources.find((x) => x.name === opt.value);
        const live = src && src.producer && src.producer.state === "live";
        opt.textContent = `${opt.value} ${live ? "●" : "○"}${src && src.worker ? " ✎" : ""}`;
      }
      const s = sources.find((x) => x.name === state.source);
      if (s) {
        const producer = s.producer && s.producer.state;
        dot("producer", producer === "live" ? "ok" : producer ? "warn" : "bad");
        dot("worker", s.worker ? "ok" : "bad");
        if (!state.audioOn) dot("speech", s.tts ? "warn" : "");
        else if (!s.tts) dot("speech", "bad");
        $("dot-producer").title = `producer: ${producer || "none"} ${s.producer ? s.producer.fps + " fps" : ""}`;
        $("dot-worker").title = `worker: ${s.worker || "none"}`;
      }
    }
  } catch (err) { dot("connection", "bad"); }
  setTimeout(pollStatus, 2000);
}

// --- Wiring -----------------------------------------------------------------------------
$("source").onchange = () => openSource($("source").value);
$("instruction-form").onsubmit = async (e) => {
  e.preventDefault();
  const resp = await api(`/api/sources/${encodeURIComponent(state.source)}/instruction`, {
    method: "PUT", body: JSON.stringify({ instruction: $("instruction").value }),
  });
  setStatus(resp.ok ? "instruction set (rev " + (await resp.json()).rev + ")" : "instruction: " + (await errorText(resp)));
};
$("ask-form").onsubmit = async (e) => {
  e.preventDefault();
  const resp = await api(`/api/sources/${encodeURIComponent(state.source)}/ask`, {
    method: "POST", body: JSON.stringify({ question: $("question").value }),
  });
  setStatus(resp.ok ? "question queued; the answer streams above" : "ask: " + (await errorText(resp)));
};
$("add-form").onsubmit = async (e) => {
  e.preventDefault();
  const name = $("add-name").value.trim();
  const resp = await api("/api/sources", { method: "POST", body: JSON.stringify({ name, url: $("add-url").value.trim() }) });
  if (!resp.ok) { setStatus("add source: " + (await errorText(resp))); return; }
  setStatus("source " + name + " added; waiting for frames");
  $("add-box").open = false;
  setTimeout(() => loadSources(name), 500);
};
$("remove").onclick = async () => {
  if (!state.source || !confirm("Remove source " + state.source + "?")) return;
  const resp = await api(`/api/sources/${encodeURIComponent(state.source)}`, { method: "DELETE" });
  if (!resp.ok) { setStatus("remove: " + (await errorText(resp))); return; }
  closeSource(); state.source = null; loadSources();
};
$("speech").onclick = toggleSpeech;
$("mute").onchange = applyVolume;
$("volume").oninput = applyVolume;
$("webcam").onclick = toggleWebcam;
$("delay").onchange = () => localStorage.setItem("lookout.delay", $("delay").value);

(async () => {
  const resp = await fetch("/api/config");
  state.config = resp.ok ? await resp.json() : {};
  $("delay").value = localStorage.getItem("lookout.delay") ?? state.config.stream_delay_init ?? 5;
  if (state.config.instruction_max_chars) $("instruction").maxLength = state.config.instruction_max_chars;
  await loadSources();
  requestAnimationFrame(drawLoop);
  pollStatus();
})();
