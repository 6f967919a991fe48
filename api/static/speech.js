// Speech: Ogg/Opus in an <audio> element where the API serves it (`/audio?format=opus`), else
// the raw 48 kHz PCM stream scheduled back to back in Web Audio (held back like the words).
// One request decides which: its Content-Type says what the server sent; a 409 says the
// server's speech (TTS) is off.
import { $, api, debug, dot, errorText, setStatus, sourcePath, state, withToken } from "./core.js";
import { secondsUntilShown } from "./video.js";

let reading = null;  // AbortController of the PCM reader or of the deciding request
let ctx = null;
let gain = null;

export function speechOn() { return $("speech").getAttribute("aria-pressed") === "true"; }

// The toggle's state is aria-pressed (a constant label "Speech" with ✓ when on); the title
// says what a click does.
export function setSpeech(on) {
  const button = $("speech");
  button.setAttribute("aria-pressed", String(on));
  button.title = on ? "Speech is on: click to stop it" : "Speech is off: click to hear the commentary";
  stopSpeech();
  if (on && state.source) startSpeech(state.source);
  if (!on) dot("speech", "");
}

export function stopSpeech() {
  if (reading) { reading.abort(); reading = null; }
  const audio = $("speech-audio");
  audio.pause();
  audio.removeAttribute("src");
  audio.load();
}

export function startSpeech(name) {
  stopSpeech();
  const ctl = (reading = new AbortController());
  if (!ctx) {  // made on the click: browsers allow sound only after a gesture
    ctx = new AudioContext({ sampleRate: state.config.sample_rate || 48000 });
    gain = ctx.createGain();
    gain.connect(ctx.destination);
  }
  ctx.resume();
  applyVolume();
  (async () => {
    while (!ctl.signal.aborted) {
      try {
        const resp = await api(sourcePath(name, "/audio?format=opus"), { signal: ctl.signal });
        if (resp.status === 409) {
          dot("speech", "bad", "speech is off on the server");
          setStatus("speech: " + (await errorText(resp)));
          return;
        }
        if (!resp.ok) throw new Error(await errorText(resp));
        const type = resp.headers.get("Content-Type") || "";
        if (/ogg|opus/i.test(type)) {
          ctl.abort();  // the element opens its own request
          await playElement(name);
          return;
        }
        await playPcm(resp, ctl);
      } catch (err) {
        if (ctl.signal.aborted) return;
        setStatus("speech: " + err.message + "; retrying");
      }
      await new Promise((r) => setTimeout(r, 1000));
    }
  })();
}

async function playElement(name) {
  const audio = $("speech-audio");
  audio.src = await withToken(sourcePath(name, "/audio?format=opus"), name);
  audio.onplaying = () => { dot("speech", "ok"); debug.audioElement = "playing"; };
  audio.onerror = () => setStatus("speech: the player could not play the Opus stream");
  applyVolume();
  debug.audioElement = "loading";
  try { await audio.play(); } catch (err) { setStatus("speech: " + err.message); }
}

async function playPcm(resp, ctl) {
  const rate = state.config.sample_rate || 48000;
  const body = resp.body.getReader();
  let carry = null;  // an odd byte left from the previous read
  let playAt = 0;
  for (;;) {
    const { value, done } = await body.read();
    if (done || ctl.signal.aborted) return;
    let bytes = value;
    if (carry !== null) { bytes = new Uint8Array(value.length + 1); bytes[0] = carry; bytes.set(value, 1); carry = null; }
    if (bytes.length % 2) { carry = bytes[bytes.length - 1]; bytes = bytes.subarray(0, bytes.length - 1); }
    if (!bytes.length) continue;
    const samples = new Int16Array(bytes.slice().buffer);
    const buffer = ctx.createBuffer(1, samples.length, rate);
    const data = buffer.getChannelData(0);
    for (let i = 0; i < samples.length; i++) data[i] = samples[i] / 32768;
    const src = ctx.createBufferSource();
    src.buffer = buffer;
    src.connect(gain);
    // Back to back; after a gap start a little ahead so the first buffer is not cut, and
    // no sooner than the video shows the frames this speech is about.
    if (playAt < ctx.currentTime) playAt = ctx.currentTime + 0.05 + secondsUntilShown(state.audioCycle);
    src.start(playAt);
    playAt += buffer.duration;
    debug.audioChunks++;
    debug.audioState = ctx.state;
    dot("speech", "ok");
  }
}

export function applyVolume() {
  const muted = $("mute").checked;
  const volume = Number($("volume").value);
  if (gain) gain.gain.value = muted ? 0 : volume;
  const audio = $("speech-audio");
  audio.muted = muted;
  audio.volume = volume;
}
