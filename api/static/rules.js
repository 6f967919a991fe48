// Watch rules and alerts of the selected source: plain JS, its own file (index.html only
// holds the #rules-panel container and the script tag). Reads the source from the page's
// #source picker, the API key from the same localStorage entry as app.js, and polls the
// rules and alerts routes every POLL_MS (alerts are few; SSE belongs to the main page).
"use strict";
(() => {
  const POLL_MS = 2000;
  const panel = document.getElementById("rules-panel");
  if (!panel) return;
  const key = () => localStorage.getItem("lookout.key") || "";
  const tokens = new Map();  // source -> {token, expires_at}
  let source = null;
  let editing = null;  // id of the rule in the form, or null for a new one

  async function call(path, options = {}) {
    const headers = {};
    if (key()) headers.Authorization = "Bearer " + key();
    if (options.body) headers["Content-Type"] = "application/json";
    return fetch(path, Object.assign({}, options, { headers }));
  }
  // <img> cannot send a header: a media token of the source, never the key, goes in the URL.
  async function imageUrl(path) {
    if (!key() || !path) return path;
    let minted = tokens.get(source);
    if (!minted || minted.expires_at * 1000 - Date.now() < 60_000) {
      const resp = await call("/api/tokens", { method: "POST", body: JSON.stringify({ source, scope: "media" }) });
      if (!resp.ok) return path;
      minted = await resp.json();
      tokens.set(source, minted);
    }
    return path + "?token=" + encodeURIComponent(minted.token);
  }
  const el = (tag, attrs = {}, ...children) => {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs)) {
      if (name.startsWith("on")) node[name] = value; else node.setAttribute(name, value);
    }
    for (const child of children) node.append(child);  // text is text: never parsed as HTML
    return node;
  };
  const when = (ts) => (ts ? new Date(ts * 1000).toLocaleTimeString() : "never");

  panel.append(
    el("h2", {}, "Rules"),
    el("p", { id: "rules-decides", class: "rules-meta" }),
    el("ul", { id: "rules-list" }),
    el("form", { id: "rule-form" },
      el("input", { id: "rule-name", placeholder: "name (e.g. Front door)", required: "", maxlength: "80" }),
      el("input", { id: "rule-condition", placeholder: "condition (e.g. a person is visible)", required: "", maxlength: "200" }),
      el("label", {}, "fire after ", el("input", { id: "rule-fire", type: "number", min: "1", max: "100", value: "1" })),
      el("label", {}, " clear after ", el("input", { id: "rule-clear", type: "number", min: "1", max: "100", value: "2" })),
      el("label", {}, " cool-down s ", el("input", { id: "rule-cooldown", type: "number", min: "0", max: "86400", value: "60" })),
      el("input", { id: "rule-webhook", placeholder: "webhook URL (optional)", maxlength: "2048" }),
      el("button", { type: "submit", id: "rule-save" }, "Add rule"),
      el("span", { id: "rule-error", class: "rules-error" })),
    el("h2", {}, "Alerts"),
    el("ol", { id: "alerts-list" }));
  const $ = (id) => document.getElementById(id);

  function body(rule, overrides = {}) {
    return JSON.stringify(Object.assign({
      name: rule.name, condition: rule.condition, fire_after: rule.fire_after,
      clear_after: rule.clear_after, cooldown_s: rule.cooldown_s, webhook: rule.webhook,
      mqtt: rule.mqtt, muted: rule.muted,
    }, overrides));
  }
  async function change(path, method, payload) {
    const resp = await call(path, { method, body: payload });
    if (!resp.ok) {
      let text = resp.statusText;
      try { text = (await resp.json()).error || text; } catch { /* not JSON */ }
      $("rule-error").textContent = text;
      return false;
    }
    $("rule-error").textContent = "";
    await refresh();
    return true;
  }

  function ruleItem(rule) {
    const base = `/api/sources/${encodeURIComponent(source)}/rules/${rule.id}`;
    const edit = () => {
      editing = rule.id;
      $("rule-name").value = rule.name; $("rule-condition").value = rule.condition;
      $("rule-fire").value = rule.fire_after; $("rule-clear").value = rule.clear_after;
      $("rule-cooldown").value = rule.cooldown_s; $("rule-webhook").value = rule.webhook;
      $("rule-save").textContent = "Save rule";
    };
    const state = rule.muted ? "muted" : rule.active ? "ON" : "off";
    return el("li", { class: "rule " + state.toLowerCase(), "data-rule": rule.id },
      el("b", {}, rule.name), " — ", rule.condition,
      el("span", { class: "rules-meta" }, ` [${state}] last fired ${when(rule.last_fired)} `),
      el("button", { type: "button", onclick: edit }, "Edit"),
      el("button", { type: "button", onclick: () => change(base, "PUT", body(rule, { muted: !rule.muted })) }, rule.muted ? "Unmute" : "Mute"),
      el("button", { type: "button", onclick: () => change(base, "DELETE") }, "Delete"));
  }

  async function alertItem(alert) {
    const item = el("li", { class: "alert " + alert.state, "data-alert": alert.alert_id },
      el("span", { class: "rules-meta" }, when(alert.ts) + " "),
      el("b", {}, `${alert.rule} ${alert.state}`), " ", alert.text);
    if (alert.snapshot) {
      item.append(el("br"), el("img", { src: await imageUrl(alert.snapshot), alt: `snapshot of ${alert.rule}`, width: "240", loading: "lazy" }));
    }
    return item;
  }

  const shown = new Set();  // alert ids already in the list: snapshots are not reloaded
  async function refresh() {
    const picked = document.getElementById("source");
    const name = picked && picked.value;
    if (!name) return;
    if (name !== source) { source = name; shown.clear(); $("alerts-list").innerHTML = ""; editing = null; }
    const path = `/api/sources/${encodeURIComponent(source)}`;
    const [rules, alerts] = await Promise.all([call(path + "/rules"), call(path + "/alerts?limit=20")]);
    if (rules.ok) {
      const data = await rules.json();
      $("rules-decides").textContent = `Engines ${data.engines.join(", ")} can decide: ${data.decides}`;
      $("rules-list").replaceChildren(...data.rules.map(ruleItem));
    }
    if (alerts.ok) {
      const data = await alerts.json();
      for (const alert of data.alerts.slice().reverse()) {
        if (shown.has(alert.alert_id)) continue;
        shown.add(alert.alert_id);
        $("alerts-list").prepend(await alertItem(alert));
      }
    }
  }

  $("rule-form").onsubmit = async (event) => {
    event.preventDefault();
    const payload = JSON.stringify({
      name: $("rule-name").value, condition: $("rule-condition").value,
      fire_after: Number($("rule-fire").value), clear_after: Number($("rule-clear").value),
      cooldown_s: Number($("rule-cooldown").value), webhook: $("rule-webhook").value.trim(),
    });
    const path = `/api/sources/${encodeURIComponent(source)}/rules`;
    const done = editing ? await change(`${path}/${editing}`, "PUT", payload) : await change(path, "POST", payload);
    if (done) { editing = null; $("rule-form").reset(); $("rule-save").textContent = "Add rule"; }
  };
  window.lookoutRules = { refresh };
  setInterval(() => refresh().catch(() => {}), POLL_MS);
  refresh().catch(() => {});
})();
