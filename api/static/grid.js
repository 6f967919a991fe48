// The grid: every source as a small live tile (its newest frame, refreshed each second, and
// its newest commentary); a click opens that source. Tiles poll `/frame` and `/history`
// instead of streaming: a browser opens at most six connections to one host.
import { $, ago, api, imageUrl, setStatus, sourcePath, state } from "./core.js";

const FRAME_EVERY_MS = 1000;
const TEXT_EVERY_MS = 3000;
let timer = null;
let round = 0;  // bumped on every show/hide: a refresh of an earlier showing stops
let onPick = null;

export function gridOn() { return $("grid-toggle").getAttribute("aria-pressed") === "true"; }

// Show the grid (`pick(name)` is called when a tile is clicked) or hide it.
export function showGrid(on, pick) {
  $("grid-toggle").setAttribute("aria-pressed", String(on));
  $("grid").hidden = !on;
  $("single").hidden = on;
  document.body.classList.toggle("grid-view", on);
  clearTimeout(timer);
  round++;
  onPick = pick || onPick;
  if (on) { buildTiles(); refresh(round, 0); }
  else {
    for (const img of $("grid").querySelectorAll("img")) URL.revokeObjectURL(img.src);
    $("grid").dataset.names = "";
  }
}

// (Re)make the tiles from the source list (called again when the list changes).
export function buildTiles() {
  const grid = $("grid");
  if (grid.hidden) return;
  const names = state.sources.map((s) => s.name).join(" ");
  if (grid.dataset.names === names && grid.children.length) return;
  grid.dataset.names = names;
  grid.innerHTML = "";
  if (!state.sources.length) { grid.textContent = "No sources yet: add one."; return; }
  for (const s of state.sources) {
    const tile = document.createElement("button");
    tile.type = "button";
    tile.className = "tile";
    tile.dataset.source = s.name;
    tile.title = `Open ${s.name}`;
    tile.innerHTML = '<span class="picture">no frame yet</span><span class="name"></span><span class="text">no commentary yet</span><time class="age"></time>';
    tile.querySelector(".name").textContent = s.name;
    tile.onclick = () => onPick && onPick(s.name);
    grid.append(tile);
  }
  setStatus(`${state.sources.length} sources: click one to open it`);
}

async function refresh(showing, n) {
  for (const tile of $("grid").querySelectorAll(".tile")) {
    if (showing !== round) return;
    await refreshFrame(tile);
    if (n % (TEXT_EVERY_MS / FRAME_EVERY_MS) === 0) await refreshText(tile);
  }
  if (showing === round) timer = setTimeout(() => refresh(showing, n + 1), FRAME_EVERY_MS);
}

async function refreshFrame(tile) {
  const { url } = await imageUrl(sourcePath(tile.dataset.source, "/frame"));
  if (!url) return;  // no frame yet: the tile keeps saying so, or its last picture
  const picture = tile.querySelector(".picture");
  let img = picture.querySelector("img");
  if (!img) { picture.textContent = ""; img = document.createElement("img"); img.alt = tile.dataset.source; picture.append(img); }
  else URL.revokeObjectURL(img.src);
  img.src = url;
}

async function refreshText(tile) {
  try {
    const resp = await api(sourcePath(tile.dataset.source, "/history?limit=1"));
    if (!resp.ok) return;
    const [item] = (await resp.json()).items;
    if (!item) return;
    tile.querySelector(".text").textContent = item.kind === "answer" ? `Q: ${item.question} A: ${item.text}` : item.text;
    const age = tile.querySelector(".age");
    age.dataset.at = item.started_at + item.duration_ms / 1000;
    age.textContent = ago(Number(age.dataset.at));
  } catch (err) { /* the next round tries again */ }
}
