// The Live tab's recorder (workbench/ui_live.py): an AudioWorklet collects the microphone's samples on the audio
// thread, and every POST_EVERY_MS the page posts what it holds, as 16-bit PCM at the audio context's rate, to
// /live/{token}/audio?seq=N&rate=R: in order, one post at a time, a retry on a failed one. A page starved of CPU
// posts later and longer, never less. Run as the recorder element's js_on_load: `element` shows the user's
// problems (one sentence each); the Record and Stop buttons call window.fireredasrLive's open, start and stop.
const POST_EVERY_MS = 250;
const MAX_POST_S = 4;  // the server takes up to 5 s a post
const RETRY_DELAYS_MS = [500, 1000, 2000, 4000];  // a post that failed is sent again after each, then given up
const WORKLET = `
class Tap extends AudioWorkletProcessor {
  constructor() {
    super();
    this.frames = [];
    this.size = 0;
    this.port.onmessage = () => { this.send(); this.port.postMessage(null); };  // flush: all, then the end
  }
  send() {
    if (!this.size) return;
    const samples = new Float32Array(this.size);
    let at = 0;
    for (const frame of this.frames) { samples.set(frame, at); at += frame.length; }
    this.port.postMessage(samples, [samples.buffer]);
    this.frames = [];
    this.size = 0;
  }
  process(inputs) {
    const channel = inputs[0][0];  // the first channel: microphones are mono, or the same sound twice
    if (channel) {
      this.frames.push(channel.slice());
      this.size += channel.length;
      if (this.size >= 2048) this.send();
    }
    return true;
  }
}
registerProcessor("fireredasr-tap", Tap);`;
const INSECURE = () => "The browser gives the microphone only to pages served over https or from localhost, and "
  + `this page came over plain http from ${location.host}: start the workbench with --share, put it behind an `
  + "https proxy, or open it through an ssh tunnel (ssh -L 7860:localhost:7860 SERVER, then http://localhost:7860).";
const DENIED = "The browser refused this page the microphone: allow it (the icon left of the address) and press "
  + "Record again.";
const NO_DEVICE = "No microphone was found: plug one in (or enable it in the system's sound settings) and press "
  + "Record again.";

class LiveRecorder {
  constructor(element) {
    this.element = element;
    this.token = null;
  }

  say(sentence) {
    const line = document.createElement("p");
    line.className = "live-error";
    line.textContent = sentence;
    this.element.replaceChildren(...(sentence ? [line] : []));
  }

  // Record, before the server's answer: the microphone and the audio context, while the click counts as the
  // user's gesture (browsers start audio only after one). Samples collect from now on.
  open() {
    this.close();
    this.say("");
    this.pending = [];
    this.pendingSize = 0;
    this.seq = 0;
    this.stopping = false;
    this.opened = navigator.mediaDevices?.getUserMedia ? this.openMicrophone() : Promise.resolve(INSECURE());
  }

  async openMicrophone() {  // null, or the sentence that says why not
    const context = this.context = new AudioContext();
    try {
      this.media = await navigator.mediaDevices.getUserMedia(
        {audio: {channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: false}});
    } catch (error) {
      if (["NotAllowedError", "SecurityError"].includes(error.name)) return DENIED;
      if (["NotFoundError", "OverconstrainedError"].includes(error.name)) return NO_DEVICE;
      return `The microphone could not be opened (${error.name}: ${error.message}): press Record again.`;
    }
    const module = URL.createObjectURL(new Blob([WORKLET], {type: "text/javascript"}));
    await context.audioWorklet.addModule(module);
    URL.revokeObjectURL(module);
    if (context !== this.context) return null;  // closed meanwhile
    this.tap = new AudioWorkletNode(context, "fireredasr-tap", {numberOfInputs: 1, numberOfOutputs: 0});
    this.tap.port.onmessage = ({data}) => data ? this.collect(data) : this.flushed?.();
    context.createMediaStreamSource(this.media).connect(this.tap);
    await context.resume();
    return null;
  }

  collect(samples) {
    this.pending.push(samples);
    this.pendingSize += samples.length;
  }

  // Record, with the server's answer: the session's token ("" when Record was refused, its sentence shown).
  async start(token) {
    const problem = await this.opened;
    if (!token || problem) {
      this.close();
      if (problem) {
        this.say(problem);
        document.querySelector("#live-stop").click();  // the session ends, empty
      }
      return;
    }
    this.token = token;
    this.rate = this.context.sampleRate;
    this.url = new URL(`live/${token}/audio`, `${window.gradio_config?.root ?? location.origin}/`.replace(/\/+$/, "/"));
    this.timer = setInterval(() => this.pump(), POST_EVERY_MS);
  }

  // Stop, before the server finishes the session: the worklet's last samples, then every post still held.
  async stop() {
    this.stopping = true;
    clearInterval(this.timer);
    if (this.tap) {
      await new Promise(done => { this.flushed = done; this.tap.port.postMessage("flush"); setTimeout(done, 1000); });
    }
    this.closeMicrophone();
    await this.sending;
    await this.pump();
    this.token = null;
  }

  pump() {  // one post at a time: a pump already running sends what came meanwhile
    this.sending ??= this.sendPending().finally(() => { this.sending = null; });
    return this.sending;
  }

  async sendPending() {
    try {
      while (this.token && this.pendingSize) await this.post(this.take(Math.round(MAX_POST_S * this.rate)));
    } catch (refusal) {
      this.fail(refusal.message);
    }
  }

  take(most) {  // up to `most` of the pending samples, as 16-bit PCM
    const pcm = new Int16Array(Math.min(most, this.pendingSize));
    let at = 0;
    while (at < pcm.length) {
      const samples = this.pending[0];
      const count = Math.min(samples.length, pcm.length - at);
      for (let i = 0; i < count; i++) pcm[at + i] = Math.max(-32768, Math.min(32767, Math.round(samples[i] * 32768)));
      at += count;
      if (count === samples.length) this.pending.shift(); else this.pending[0] = samples.subarray(count);
    }
    this.pendingSize -= pcm.length;
    return pcm;
  }

  async post(pcm) {
    this.url.search = `?seq=${this.seq}&rate=${this.rate}`;
    for (let attempt = 0; ; attempt++) {
      let answer = null;
      try {
        answer = await fetch(this.url, {method: "POST", body: pcm, headers: {"Content-Type": "application/octet-stream"}});
      } catch (error) {}  // no connection: tried again
      if (answer?.ok) {
        this.seq++;
        return;
      }
      if (answer && answer.status < 500) {
        const detail = (await answer.json().catch(() => ({}))).detail;
        throw new Error(detail ?? `The server refused the microphone's audio (HTTP ${answer.status}).`);
      }
      if (attempt === RETRY_DELAYS_MS.length) {
        throw new Error(`The microphone's audio could not be sent (${answer ? `HTTP ${answer.status}` : "no connection"},`
          + ` ${attempt + 1} tries): recording stopped; press Record to start again.`);
      }
      await new Promise(done => setTimeout(done, RETRY_DELAYS_MS[attempt]));
    }
  }

  fail(sentence) {  // recording ends here: say why, and end the session (unless Stop is doing that already)
    this.close();
    this.say(sentence);
    if (!this.stopping) document.querySelector("#live-stop").click();
  }

  closeMicrophone() {
    this.media?.getTracks().forEach(track => track.stop());
    this.context?.close();
    this.media = this.context = this.tap = null;
  }

  close() {
    clearInterval(this.timer);
    this.closeMicrophone();
    this.token = null;
    this.pending = [];
    this.pendingSize = 0;
  }
}

window.fireredasrLive = new LiveRecorder(element);
