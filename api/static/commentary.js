// Commentary and answers from the SSE stream: live words, the list of past commentaries (each
// with its age, model, tokens/s and a thumbnail of the newest frame it describes; a click on
// the thumbnail shows the window's frames), and answers set apart with their question.
import { $, ago, api, debug, forgetToken, imageUrl, setStatus, dot, sourcePath, state, withToken } from "./core.js";
import { cycleStarted, recordLatency, whenShown } from "./video.js";

const MAX_ITEMS = 200;
const shown = new Set();  // history ids already listed (a reopened stream replays)
const windows = new Map();  // cycle id -> {seqs, ts} of its frames (from `started`)
const pendingAnswers = new Map();  // job id (else cycle id) -> <li> of an answer not finished

export function openEvents(name) {
  closeEvents();
  connect(name);
}

export function closeEvents() {
  if (state.events) { state.events.close(); state.events = null; }
  for (const list of [$("history"), $("answers")]) {
    for (const img of list.querySelectorAll("img")) URL.revokeObjectURL(img.src);
    list.innerHTML = "";
  }
  $("live").textContent = "";
  shown.clear();
  windows.clear();
  pendingAnswers.clear();
}

async function connect(name) {
  const es = new EventSource(await withToken(sourcePath(name, "/events"), name));
  if (state.source !== name) { es.close(); return; }  // the viewer moved on meanwhile
  state.events = es;
  es.onopen = () => dot("connection", "ok");
  es.onerror = () => {
    dot("connection", "warn");  // reconnecting (the status poll marks the API unreachable)
    // Closed for good (an expired token answers 401): reopen with a fresh token. The new
    // stream starts with a replay of recent history; addItem skips what is shown.
    if (es.readyState === EventSource.CLOSED && state.events === es) {
      forgetToken(name);
      setTimeout(() => { if (state.events === es) connect(name); }, 1000);
    }
  };
  const on = (event, handle) => es.addEventListener(event, (e) => handle(JSON.parse(e.data)));
  on("chunk", onChunk);
  on("cycle", onCycle);
  on("commentary", (rec) => {
    addItem({
      ...rec, at: rec.started_at + rec.duration_ms / 1000,
      frames: { seqs: rec.frame_seqs || [], ts: rec.frame_ts || [] },
    });
  });
  on("notice", (n) => {
    setStatus(`${n.source}: ${n.what} ${n.detail || ""}`);
    if (n.what === "registered" || n.what === "removed") window.dispatchEvent(new Event("lookout:sources"));
  });
  on("reconnected", () => setStatus("server reconnected to Redis; caught up from history"));
  // A resume after a long absence: the newest commentaries follow, older ones stay in history.
  on("gap", (gap) => setStatus(`${gap.skipped} older commentaries skipped while away (history before ${gap.before})`));
}

function onChunk(chunk) {
  if (chunk.kind === "answer") {
    const li = answerItem(chunk.job_id || chunk.cycle, chunk.question);
    li.querySelector(".text").textContent += chunk.text;
    li.classList.remove("waiting");
    li.classList.add("streaming");
    setStatus("answering: " + (chunk.question || ""));
    return;
  }
  whenShown(chunk.cycle, () => {
    if (chunk.cycle !== state.cycle) { state.cycle = chunk.cycle; $("live").textContent = ""; }
    debug.chunks++;
    $("live").textContent += chunk.text;
  });
}

function onCycle(ev) {
  if (ev.event === "started") {
    cycleStarted(ev.cycle, ev.frame_ts);
    state.audioCycle = ev.cycle;
    windows.set(ev.cycle, { seqs: ev.frame_seqs || [], ts: ev.frame_ts || [] });
    if (windows.size > 100) windows.delete(windows.keys().next().value);
  } else if (ev.event === "first_chunk" && ev.kind !== "answer") {
    recordLatency(ev.latency_ms);
  } else if ((ev.event === "finished" || ev.event === "interrupted") && ev.text) {
    const item = { ...ev, id: ev.history_id, status: ev.event, at: ev.ts, frames: windows.get(ev.cycle) };
    if (ev.kind === "answer") addItem(item, true);  // a question is about now: no waiting
    else whenShown(ev.cycle, () => addItem(item, true));
  } else if (ev.event === "failed") {
    if (ev.kind === "answer") {
      const li = answerItem(ev.job_id || ev.cycle, ev.question);
      li.classList.remove("waiting", "streaming");
      li.querySelector(".text").textContent = "failed: " + (ev.error || "unknown error");
      pendingAnswers.delete(ev.job_id || ev.cycle);
    }
    setStatus(`${ev.kind === "answer" ? "answer" : "commentary"} failed: ${ev.error || "unknown error"}`);
  }
}

// --- Answers ------------------------------------------------------------------------------
// The <li> of the answer to job `key` (its cycle when the job id is not known), made (with
// its question) if there is none yet.
export function answerItem(key, question) {
  let li = key && pendingAnswers.get(key);
  if (li) return li;
  li = document.createElement("li");
  li.className = "answer";
  const q = document.createElement("p");
  q.className = "question";
  q.textContent = question || "";
  const meta = document.createElement("div");
  meta.className = "meta";
  const a = document.createElement("p");
  a.className = "text";
  li.append(q, meta, a);
  if (key) { li.dataset.job = key; pendingAnswers.set(key, li); }
  $("answers").prepend(li);
  while ($("answers").children.length > 50) $("answers").lastChild.remove();
  return li;
}

// --- The list ----------------------------------------------------------------------------
// `live`: just said (a replayed one leaves the footer alone).
function addItem(item, live = false) {
  if (item.id) {
    if (shown.has(item.id)) return;
    shown.add(item.id);
  }
  if (item.kind === "answer") {
    const key = item.job_id || item.cycle;
    const li = answerItem(key, item.question);
    pendingAnswers.delete(key);
    li.classList.remove("streaming", "waiting");
    li.querySelector(".text").textContent = item.text;
    fillMeta(li.querySelector(".meta"), item);
    debug.answers++;
    if (live) setStatus("answered: " + (item.question || ""));
    return;
  }
  debug.commentaries++;
  const li = document.createElement("li");
  li.className = "commentary";
  const meta = document.createElement("div");
  meta.className = "meta";
  fillMeta(meta, item);
  const text = document.createElement("p");
  text.className = "text";
  text.textContent = item.text;
  li.append(thumbnail(item), meta, text);
  $("history").prepend(li);
  while ($("history").children.length > MAX_ITEMS) {
    const img = $("history").lastChild.querySelector("img");
    if (img) URL.revokeObjectURL(img.src);
    $("history").lastChild.remove();
  }
}

// Age (kept up to date by tickAges), model, speed and how it ended.
function fillMeta(meta, item) {
  meta.innerHTML = "";
  const parts = [];
  if (item.at) {
    const time = document.createElement("time");
    time.className = "age";
    time.dataset.at = item.at;
    time.dateTime = new Date(item.at * 1000).toISOString();
    time.title = new Date(item.at * 1000).toLocaleString();
    time.textContent = ago(item.at);
    parts.push(time);
  }
  const model = span("model", item.model || modelOf(item.worker));
  model.dataset.worker = item.worker || "";  // filled in by showModels if not known yet
  parts.push(model);
  if (item.tokens && item.duration_ms > 0) {
    parts.push(span("speed", `${(item.tokens / (item.duration_ms / 1000)).toFixed(1)} tok/s`));
  }
  if (item.latency_ms > 0) parts.push(span("latency", `${(item.latency_ms / 1000).toFixed(2)} s latency`));
  if (item.status === "interrupted") parts.push(span("status", "interrupted"));
  meta.append(...parts);  // the CSS puts " · " between the parts that say something
}

function span(cls, text) {
  const el = document.createElement("span");
  el.className = cls;
  el.textContent = text;
  return el;
}

// A worker's model as its heartbeat names it (for replayed items, whose event is gone).
function modelOf(worker) {
  const beat = worker && state.workers[worker];
  if (!beat) return "";
  return (beat.checkpoint || "").replace(/\/+$/, "").split("/").pop() || beat.engine || "";
}

// Models of items listed before the workers' heartbeats were read.
export function showModels() {
  for (const el of document.querySelectorAll(".meta .model:empty")) el.textContent = modelOf(el.dataset.worker);
}

export function tickAges() {
  for (const t of document.querySelectorAll("time.age[data-at]")) t.textContent = ago(Number(t.dataset.at));
}

// --- Thumbnail and the window's frames ----------------------------------------------------
function thumbnail(item) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = "thumb";
  button.title = "Show the frames this describes";
  const source = state.source;
  if (item.id) {
    imageUrl(sourcePath(source, `/history/${encodeURIComponent(item.id)}/snapshot.jpg`)).then(({ url }) => {
      if (url) {
        const img = document.createElement("img");
        img.alt = "newest frame described";
        img.src = url;
        button.append(img);
      } else button.classList.add("none");  // not kept (or no snapshots on this server)
    });
  } else button.classList.add("none");
  button.onclick = () => showFrames(source, item);
  return button;
}

async function showFrames(source, item) {
  const dialog = $("frames-dialog");
  const list = $("frames-list");
  for (const img of list.querySelectorAll("img")) URL.revokeObjectURL(img.src);
  list.innerHTML = "";
  const { seqs = [], ts = [] } = item.frames || {};
  $("frames-title").textContent = seqs.length
    ? `The ${seqs.length} frames of: “${item.text.slice(0, 80)}”`
    : "The frames of this commentary are not known";
  if (!dialog.open) dialog.showModal();
  for (const [i, seq] of seqs.entries()) {
    const figure = document.createElement("figure");
    const caption = document.createElement("figcaption");
    const when = ts[i] ? ` · ${new Date(ts[i] * 1000).toLocaleTimeString()}` : "";
    caption.textContent = `frame ${seq}${when}`;
    figure.append(caption);
    list.append(figure);
    const query = ts[i] ? `?ts=${ts[i]}` : "";
    const { url, status } = await imageUrl(sourcePath(source, `/frames/${seq}${query}`));
    if (url) {
      const img = document.createElement("img");
      img.alt = `frame ${seq}`;
      img.src = url;
      figure.prepend(img);
    } else {
      figure.classList.add("gone");
      caption.textContent += status === 404 ? " · no longer kept (frames live ~30 s)" : " · not available";
    }
  }
}

export async function ask(question) {
  const resp = await api(sourcePath(state.source, "/ask"), { method: "POST", body: JSON.stringify({ question }) });
  if (!resp.ok) return resp;
  const { job_id } = await resp.clone().json();
  const li = answerItem(job_id, question);
  if (!li.querySelector(".text").textContent) li.classList.add("waiting");
  return resp;
}
