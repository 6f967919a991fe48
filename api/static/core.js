// Shared by the page's modules: element lookup, page state, the API client with its key and
// media tokens, the footer and the status dots.

export const $ = (id) => document.getElementById(id);
// What tests read to follow the page's state (counts and the newest shown capture time).
export const debug = (window.lookoutDebug = {
  frames: 0, drawn: 0, chunks: 0, audioChunks: 0, commentaries: 0, answers: 0, held: 0, shownTs: 0,
});
export const state = {
  source: null,  // the open source's name (null in the grid)
  sources: [],  // GET /api/sources, with each one's instruction
  config: {},  // GET /api/config
  events: null,  // the open EventSource
  workers: {},  // worker id -> heartbeat, from /api/status (models of replayed items)
  cycle: null,  // the cycle whose words #live shows
  audioCycle: null,  // the newest started cycle (its speech waits for its frames)
  shownTs: 0,  // capture time of the frame on the canvas
};

// --- API keys: asked once, remembered in this browser ---------------------------------
function apiKey() { return localStorage.getItem("lookout.key") || ""; }

export async function api(path, options = {}) {
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

// URLs that cannot carry a header (EventSource, <audio>, WebSocket) get a short-lived token,
// never the key itself: keys in URLs end up in logs and browser history. A token opens the
// media of one source only (scope "media"), or also its ingest socket (scope "ingest").
const mediaTokens = new Map();  // "scope source" -> {token, expires_at}
export async function withToken(url, source, scope = "media") {
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
export function forgetToken(source, scope = "media") { mediaTokens.delete(scope + " " + source); }

export async function errorText(resp) {
  try { const body = await resp.json(); return body.error || resp.statusText; } catch { return resp.statusText; }
}

// An image the API serves, as an object URL (fetched with the key); null with the status
// when it is not there (a trimmed frame, a snapshot not kept).
export async function imageUrl(path) {
  try {
    const resp = await api(path);
    if (!resp.ok) return { url: null, status: resp.status };
    return { url: URL.createObjectURL(await resp.blob()), status: resp.status };
  } catch (err) { return { url: null, status: 0 }; }
}

export const sourcePath = (name, rest = "") => `/api/sources/${encodeURIComponent(name)}${rest}`;
export function setStatus(text) { $("status").textContent = text; }
export function dot(name, cls, title) {
  const el = $("dot-" + name);
  el.className = "dot " + (cls || "");
  if (title) el.title = title;
}

// "3 s ago", "4 min ago": the age of an epoch time (seconds), never negative.
export function ago(at) {
  const s = Math.max(0, Math.round(Date.now() / 1000 - at));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  return `${Math.floor(s / 3600)} h ago`;
}
