// Video: MJPEG read with fetch() and drawn on a canvas, held back by the video delay, so that
// words (which take a moment to generate) wait for the picture they describe. The delay is
// "auto" by default: the source's measured latency (newest frame's capture to the first
// chunk, p90 of the recent ones) plus a margin. Until the first picture is due the canvas
// says why it is empty (waiting for frames, or buffering the delay).
import { $, api, debug, errorText, setStatus, state } from "./core.js";

const MARGIN_S = 0.3;  // on top of the p90: jitter of generation and transport
const LATENCIES_KEPT = 30;
const HOLD_SLACK_MS = 2000;  // if the video stalls, words still come this long after the delay
const CRLF2 = [13, 10, 13, 10];

const frames = [];  // {at, ts, blob} waiting for their display time
const held = [];  // words waiting for their frame: {ts, until, show}, in arrival order
const cycleFrameTs = new Map();  // cycle id -> capture time (s) of its window's newest frame
const latencies = [];  // ms, newest last
let generation = 0;  // bumped on every source change: late work of the old source is dropped
let reader = null;
let lastFrameAt = 0;  // performance.now() of the last frame received
let drawnHere = 0;  // frames drawn since the source was opened

// --- Delay --------------------------------------------------------------------------------
export function isAuto() { return $("delay-auto").checked; }

function p90(values) {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.max(0, Math.ceil(sorted.length * 0.9) - 1)];
}

// The delay in seconds: measured p90 + margin when auto (the configured start value until a
// latency is known), else what the user typed.
export function delaySeconds() {
  if (!isAuto()) return Math.min(60, Math.max(0, Number($("delay").value) || 0));
  if (!latencies.length) return Number(state.config.stream_delay_init ?? 5);
  return Math.min(60, Math.round((p90(latencies) / 1000 + MARGIN_S) * 10) / 10);
}
const delayMs = () => delaySeconds() * 1000;

export function recordLatency(ms) {
  if (!Number.isFinite(ms) || ms <= 0) return;
  latencies.push(ms);
  if (latencies.length > LATENCIES_KEPT) latencies.shift();
  showDelay();
}

export function showDelay() {
  const info = $("delay-info");
  if (!isAuto()) { info.textContent = "manual"; return; }
  if (document.activeElement !== $("delay")) $("delay").value = delaySeconds();
  info.textContent = latencies.length
    ? `auto: latency p90 ${(p90(latencies) / 1000).toFixed(2)} s + ${MARGIN_S} s (${latencies.length} measured)`
    : "auto: no latency measured yet";
  debug.delay = delaySeconds();
}

// --- Sync: words wait until the picture they describe is on screen ----------------------
export function cycleStarted(cycle, frameTs) {
  if (!frameTs || !frameTs.length) return;
  cycleFrameTs.set(cycle, Math.max(...frameTs));
  if (cycleFrameTs.size > 100) cycleFrameTs.delete(cycleFrameTs.keys().next().value);
}

// Run `show` once the video has reached the newest frame of `cycle` (at once when live or
// when the cycle's frames are unknown, but never ahead of words already waiting).
export function whenShown(cycle, show) {
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
export function secondsUntilShown(cycle) {
  const ts = cycleFrameTs.get(cycle);
  if (!ts || !state.shownTs || !delayMs()) return 0;
  return Math.min(delaySeconds(), Math.max(0, ts - state.shownTs));
}

// Whether frames of the open source came in the last `seconds` (whatever sends them).
export function framesArriving(seconds = 3) {
  return lastFrameAt > 0 && performance.now() - lastFrameAt < seconds * 1000;
}

// --- Open and close ----------------------------------------------------------------------
export function openVideo(name) {
  closeVideo();
  latencies.length = 0;
  showDelay();
  const canvas = $("video");
  canvas.getContext("2d").clearRect(0, 0, canvas.width, canvas.height);  // no frame of the last source
  reader = readVideo(name, generation);
  overlay(`Waiting for the first frame of ${name}…`);
}

export function closeVideo() {
  generation++;
  if (reader) { reader.abort(); reader = null; }
  frames.length = 0;
  held.length = 0;
  cycleFrameTs.clear();
  state.shownTs = 0;
  lastFrameAt = 0;
  drawnHere = 0;
}

function overlay(text) {
  const box = $("video-state");
  box.hidden = !text;
  if (text && box.textContent !== text) box.textContent = text;
  debug.videoState = text || "playing";
}

// --- MJPEG through fetch -----------------------------------------------------------------
function indexOf(buf, pattern) {
  outer: for (let i = 0; i <= buf.length - pattern.length; i++) {
    for (let j = 0; j < pattern.length; j++) if (buf[i + j] !== pattern[j]) continue outer;
    return i;
  }
  return -1;
}

function readVideo(name, gen) {
  const ctl = new AbortController();
  (async () => {
    while (!ctl.signal.aborted) {
      try {
        const resp = await api(`/api/sources/${encodeURIComponent(name)}/mjpeg`, { signal: ctl.signal });
        if (resp.status === 404) throw new Error(`${name} has not sent a frame yet; waiting`);
        if (!resp.ok) throw new Error(await errorText(resp));
        const body = resp.body.getReader();
        let buf = new Uint8Array(0);
        for (;;) {
          const { value, done } = await body.read();
          if (done) break;
          const joined = new Uint8Array(buf.length + value.length);
          joined.set(buf); joined.set(value, buf.length); buf = joined;
          buf = takeParts(buf, gen);
        }
      } catch (err) {
        if (ctl.signal.aborted) return;
        setStatus("video: " + err.message + (err.message.endsWith("waiting") ? "" : "; retrying"));
      }
      await new Promise((r) => setTimeout(r, 1000));
    }
  })();
  return ctl;
}

// Queue every complete part in `buf`; what is left (an incomplete part) is returned.
function takeParts(buf, gen) {
  for (;;) {
    const end = indexOf(buf, CRLF2);
    if (end < 0) return buf;
    const head = new TextDecoder().decode(buf.subarray(0, end));
    const m = /Content-Length:\s*(\d+)/i.exec(head);
    const captured = /X-Frame-Ts:\s*([\d.]+)/i.exec(head);
    const start = end + 4;
    if (!m) { buf = buf.subarray(start); continue; }
    const len = Number(m[1]);
    if (buf.length < start + len) return buf;
    if (gen === generation) {
      frames.push({ at: performance.now(), ts: captured ? Number(captured[1]) : 0, blob: new Blob([buf.slice(start, start + len)], { type: "image/jpeg" }) });
      lastFrameAt = performance.now();
      debug.frames++;
    }
    buf = buf.subarray(start + len);
  }
}

// --- Drawing -----------------------------------------------------------------------------
export async function drawLoop() {
  const now = performance.now();
  const gen = generation;
  let due = null;
  while (frames.length && frames[0].at + delayMs() <= now) due = frames.shift();
  if (frames.length > 1200) frames.splice(0, frames.length - 1200);  // never hold more than 2 min
  if (due) {
    try {
      const bitmap = await createImageBitmap(due.blob);
      if (gen === generation) draw(bitmap, due.ts);  // else: the source changed meanwhile
      bitmap.close();
    } catch (err) { /* a broken JPEG: skip it */ }
  }
  if (!drawnHere && frames.length && state.source) {
    const waited = (now - frames[0].at) / 1000;
    overlay(`Buffering ${waited.toFixed(1)} of ${delaySeconds()} s: the video is held behind live so the words match it`);
  }
  flushHeld();
  requestAnimationFrame(drawLoop);
}

function draw(bitmap, ts) {
  const canvas = $("video");
  if (canvas.width !== bitmap.width || canvas.height !== bitmap.height) {
    canvas.width = bitmap.width; canvas.height = bitmap.height;
  }
  canvas.getContext("2d").drawImage(bitmap, 0, 0);
  debug.drawn++;
  drawnHere++;
  state.shownTs = debug.shownTs = ts;
  overlay("");
}
