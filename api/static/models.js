// Who serves what, and how fast: GET /api/models every few seconds, drawn into #models-box.
// Its own file (the page's app.js belongs elsewhere); it only reads the API key app.js keeps.
// Every value goes in with textContent: model ids and worker names come from outside.
(() => {
  "use strict";
  const box = document.getElementById("models-box");
  if (!box) return;
  const PERIOD_MS = 5000;

  function el(tag, text, cls) {
    const node = document.createElement(tag);
    if (text !== undefined) node.textContent = String(text);
    if (cls) node.className = cls;
    return node;
  }

  function table(headings, rows) {
    const t = el("table", undefined, "models-table");
    const head = t.createTHead().insertRow();
    for (const h of headings) head.appendChild(el("th", h));
    const body = t.createTBody();
    for (const cells of rows) {
      const tr = body.insertRow();
      for (const cell of cells) {
        const td = tr.insertCell();
        if (cell instanceof Node) td.appendChild(cell); else td.textContent = String(cell);
      }
    }
    return t;
  }

  function switchText(w) {
    const s = w.switch;
    if (!s || s.state === "done") return "";
    if (s.state === "failed") return "switch to " + s.model + " failed: " + s.error;
    return s.state + " to " + s.model;
  }

  function render(data) {
    const workers = data.workers.map((w) => [
      w.worker,
      w.engine,
      w.model || "-",
      w.modalities.join(", "),
      w.speech ? "yes" : "no",
      w.tokens_per_s ? w.tokens_per_s.toFixed(1) : "-",
      w.sources.join(", ") || "-",
      switchText(w),
    ]);
    const models = data.models.map((m) => {
      const served = m.workers.length > 0;
      return [
        m.model,
        served ? m.workers.join(", ") : el("span", "nobody serves it", "models-unserved"),
        m.sources.join(", ") || "-",
        m.server_lists ? "yes" : "no",
      ];
    });
    const summary = el("summary", "Models: " + data.models.length + " served or required, " + data.workers.length + " workers");
    const open = box.querySelector("details")?.open ?? false;
    const details = el("details");
    details.open = open;
    details.append(
      summary,
      table(["worker", "engine", "model", "modalities", "speech", "tokens/s", "sources", "switch"], workers),
      table(["model", "served by", "required by", "on a server's /models"], models),
    );
    box.replaceChildren(details);
  }

  async function refresh() {
    const headers = {};
    const key = localStorage.getItem("lookout.key");
    if (key) headers.Authorization = "Bearer " + key;
    try {
      const resp = await fetch("/api/models", { headers });
      if (resp.ok) render(await resp.json());
      else box.dataset.error = String(resp.status);
    } catch (err) {
      box.dataset.error = String(err);
    }
  }

  refresh();
  setInterval(refresh, PERIOD_MS);
})();
