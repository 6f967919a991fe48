// LiveKit on the page (docs/livekit.md): "Watch over LiveKit" joins the chosen source's room
// and plays its video and speech, with the commentary from the room's data messages (topic
// "lookout", the same JSON as the SSE stream); "Send my camera over LiveKit" publishes this
// browser's camera into the room, where the bridge makes it the source's producer.
// The LiveKit client is the pinned npm bundle served from /static/vendor/ (never a CDN),
// loaded only when an option is used. The room token comes from
// POST /api/sources/NAME/livekit-token with the API key the page already keeps.
"use strict";
(() => {
  const SDK_URL = "/static/vendor/livekit-client.umd.js";
  const TOPIC = "lookout";
  const box = document.getElementById("livekit-box");
  if (!box) return;
  // For tests and curious users: what this module did last.
  const lk = (window.lookoutLivekit = { state: "idle", tokenRequests: 0, sdkLoaded: false, error: "", data: 0, grant: null });
  box.innerHTML = `
    <button id="lk-watch" type="button">Watch over LiveKit</button>
    <button id="lk-camera" type="button">Send my camera over LiveKit</button>
    <span id="lk-status"></span>
    <video id="lk-video" autoplay playsinline muted hidden></video>
    <audio id="lk-audio" autoplay></audio>
    <div id="lk-text" aria-live="polite"></div>`;
  const $ = (id) => document.getElementById(id);
  let room = null;

  function status(text) { $("lk-status").textContent = text; }
  function chosenSource() { const s = document.getElementById("source"); return s ? s.value : ""; }

  async function requestToken(source, publish) {
    lk.tokenRequests++;
    const headers = { "Content-Type": "application/json" };
    const key = localStorage.getItem("lookout.key");
    if (key) headers.Authorization = "Bearer " + key;
    const resp = await fetch(`/api/sources/${encodeURIComponent(source)}/livekit-token`, {
      method: "POST", headers, body: JSON.stringify({ publish }),
    });
    let body = {};
    try { body = await resp.json(); } catch { /* not JSON: use the status text */ }
    if (!resp.ok) throw new Error(body.error || resp.statusText);
    return body;
  }

  let sdkPromise = null;
  function loadSdk() {
    if (window.LivekitClient) return Promise.resolve(window.LivekitClient);
    if (!sdkPromise) {
      sdkPromise = new Promise((resolve, reject) => {
        const script = document.createElement("script");
        script.src = SDK_URL;
        script.onload = () => (window.LivekitClient ? resolve(window.LivekitClient) : reject(new Error("the LiveKit client did not load")));
        script.onerror = () => { sdkPromise = null; reject(new Error("the LiveKit client is not installed (python -m lookout.vendor)")); };
        document.head.appendChild(script);
      });
    }
    return sdkPromise;
  }

  function onData(payload, participant, kind, topic) {
    if (topic !== TOPIC) return;
    let msg;
    try { msg = JSON.parse(new TextDecoder().decode(payload)); } catch { return; }
    lk.data++;
    const text = $("lk-text");
    if (msg.type === "cycle" && msg.event === "started") text.textContent = "";
    else if (msg.type === "text") text.textContent += msg.text;
    else if (msg.type === "notice" && msg.what === "camera_refused") status("camera refused: " + msg.detail);
  }

  function leave() {
    if (room) { room.disconnect(); room = null; }
    $("lk-video").hidden = true;
    for (const id of ["lk-watch", "lk-camera"]) $(id).classList.remove("on");
    lk.state = "idle";
  }

  async function join(publish) {
    const button = $(publish ? "lk-camera" : "lk-watch");
    if (room && button.classList.contains("on")) { leave(); status(""); return; }
    leave();
    const source = chosenSource();
    if (!source) { status("choose a source first"); return; }
    lk.error = "";
    try {
      lk.state = "token";
      status("asking for a room token…");
      const grant = (lk.grant = await requestToken(source, publish));
      lk.state = "sdk";
      const LK = await loadSdk();
      lk.sdkLoaded = true;
      lk.sdkVersion = LK.version;
      room = new LK.Room({ adaptiveStream: true, dynacast: true });
      room.on(LK.RoomEvent.TrackSubscribed, (track) => {
        if (track.kind === "video") { track.attach($("lk-video")); $("lk-video").hidden = false; }
        else if (track.kind === "audio") track.attach($("lk-audio"));
      });
      room.on(LK.RoomEvent.DataReceived, onData);
      room.on(LK.RoomEvent.Disconnected, () => { if (lk.state === "joined") status("left the room"); lk.state = "idle"; });
      lk.state = "connecting";
      status(`connecting to ${grant.room}…`);
      await room.connect(grant.url, grant.token);
      if (publish) await room.localParticipant.setCameraEnabled(true);
      lk.state = "joined";
      button.classList.add("on");
      status(publish ? `sending your camera to ${source}` : `watching ${source} over LiveKit`);
    } catch (err) {
      lk.error = err && err.message ? err.message : String(err);
      lk.state = "failed";
      if (room) { room.disconnect(); room = null; }
      status("LiveKit: " + lk.error);
    }
  }

  $("lk-watch").onclick = () => join(false);
  $("lk-camera").onclick = () => join(true);
})();
