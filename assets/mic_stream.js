// Voice mode's microphone: raw 16-bit PCM from an AudioWorklet, over one WebSocket to the app.
//
// The page used Gradio's streamed recorder before (a WAV encoder in a worker, one HTTP request per
// chunk). In about a third of voice starts its stream ran 1.2-1.5 s behind the microphone for the
// whole session; here a chunk leaves as soon as the audio thread has MIC_CHUNK_S of it.
//
// start(config): config = {url, chunk_s, labels: {listening, thinking, speaking, connecting,
// no_microphone, disconnected}} from the voice button's handler (the url is signed for this page's
// session). The server answers each chunk when something changed: {state}, {pause} (speech may have
// begun: hold the answer's audio), {resume} (it was not speech: play on), {barge_in} (silence the
// answer now), {turn} (an utterance became a turn: the hidden #voice-turn button starts its answer),
// {warning}. The voice state line (#voice-state) shows the state in the page's language. When the player
// holds or releases the answer, the page says at which sample of its microphone stream it did:
// {speakers: 'held' | 'released', at}, so that the server's echo guard lines the answer's echo up with
// what the speakers really played (the reply's way here makes the page later than the server's event).
(() => {
  if (window.omnilingoMic) { return; }

  // The audio thread keeps whole chunks and hands each one over as 16-bit PCM.
  const WORKLET = `
class OmnilingoPcm extends AudioWorkletProcessor {
  constructor(options) {
    super();
    this.size = options.processorOptions.chunkSamples;
    this.buffer = new Int16Array(this.size);
    this.filled = 0;
  }
  process(inputs) {
    const channel = inputs[0] && inputs[0][0];
    if (channel) {
      for (let i = 0; i < channel.length; i++) {
        const s = Math.max(-1, Math.min(1, channel[i]));
        this.buffer[this.filled++] = s < 0 ? s * 0x8000 : s * 0x7fff;
        if (this.filled === this.size) {
          // end: the context's frame just after the chunk's last sample (the page's clock of the stream)
          this.port.postMessage({pcm: this.buffer.buffer, end: currentFrame + i + 1}, [this.buffer.buffer]);
          this.buffer = new Int16Array(this.size);
          this.filled = 0;
        }
      }
    }
    return true;
  }
}
registerProcessor('omnilingo-pcm', OmnilingoPcm);
`;

  // Idempotent: a start() that was overtaken by stop() releases what it had made so far.
  const release = (parts) => {
    if (parts.node) { parts.node.port.onmessage = null; parts.node.disconnect(); }
    if (parts.socket) { parts.socket.onclose = null; parts.socket.onmessage = null; parts.socket.close(); }
    if (parts.stream) { parts.stream.getTracks().forEach((t) => t.stop()); }
    if (parts.ctx && parts.ctx.state !== 'closed') { parts.ctx.close(); }
    // No server left to say whether it was speech: an answer held for it plays on.
    if (window.omnilingoPlayer) { window.omnilingoPlayer.release(); }
  };

  class MicStream {
    constructor() {
      this.run = 0;  // each start() is a new run; callbacks of an older one do nothing
      this.parts = null;
      this.labels = {};
    }

    line(text) {
      const box = document.getElementById('voice-state');
      if (!box) { return; }
      let line = box.querySelector('.omnilingo-voice-line');
      if (!line) {
        line = document.createElement('span');
        line.className = 'omnilingo-voice-line';
        box.appendChild(line);
      }
      line.textContent = text || '';
    }

    async start(config) {
      this.stop();
      if (!config || !config.url) { return; }
      const run = ++this.run;
      this.labels = config.labels || {};
      this.line(this.labels.connecting);
      const parts = this.parts = {};
      try {
        parts.stream = await navigator.mediaDevices.getUserMedia({
          audio: {channelCount: 1, echoCancellation: true, noiseSuppression: true, autoGainControl: true},
        });
        if (run !== this.run) { release(parts); return; }
        parts.ctx = new AudioContext({latencyHint: 'interactive'});
        const module = URL.createObjectURL(new Blob([WORKLET], {type: 'application/javascript'}));
        await parts.ctx.audioWorklet.addModule(module);
        URL.revokeObjectURL(module);
        if (run !== this.run) { release(parts); return; }
        const url = new URL(config.url, document.baseURI);
        url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
        parts.socket = new WebSocket(url);
        parts.socket.binaryType = 'arraybuffer';
        await new Promise((resolve, reject) => {
          parts.socket.onopen = resolve;
          parts.socket.onerror = () => reject(new Error('the connection to the app failed'));
        });
        if (run !== this.run) { release(parts); return; }
        parts.socket.send(JSON.stringify({sample_rate: parts.ctx.sampleRate}));
        parts.socket.onmessage = (e) => this.heard(JSON.parse(e.data));
        parts.socket.onclose = () => {  // the app went away: the microphone is let go, the line says so
          if (run !== this.run) { return; }
          this.parts = null;
          release(parts);
          this.line(this.labels.disconnected);
        };
        const source = parts.ctx.createMediaStreamSource(parts.stream);
        parts.node = new AudioWorkletNode(parts.ctx, 'omnilingo-pcm', {
          numberOfInputs: 1, numberOfOutputs: 0, channelCount: 1, channelCountMode: 'explicit',
          processorOptions: {chunkSamples: Math.round(parts.ctx.sampleRate * config.chunk_s)},
        });
        parts.sent = 0;  // samples sent, and the context's frame after the last of them
        parts.node.port.onmessage = (e) => {
          if (parts.socket.readyState !== WebSocket.OPEN) { return; }
          parts.socket.send(e.data.pcm);
          parts.sent += e.data.pcm.byteLength / 2;
          parts.sentEnd = e.data.end;
        };
        source.connect(parts.node);
        if (parts.ctx.state === 'suspended') { await parts.ctx.resume(); }
        this.line(this.labels.listening);
      } catch (err) {
        if (run !== this.run) { release(parts); return; }
        console.warn('voice mode: no microphone stream', err);
        this.stop();
        this.line(`${this.labels.no_microphone || ''} (${err && err.message ? err.message : err})`);
      }
    }

    // The sample of the microphone stream being recorded now: past what was sent (the main thread's
    // currentTime may not yet show the render that made the last chunk).
    position() {
      const parts = this.parts;
      if (!parts || parts.sentEnd === undefined) { return null; }
      return parts.sent + Math.max(0, Math.round(parts.ctx.currentTime * parts.ctx.sampleRate) - parts.sentEnd);
    }

    speakers(state) {
      const at = this.position();
      const socket = this.parts && this.parts.socket;
      if (at !== null && socket && socket.readyState === WebSocket.OPEN) {
        socket.send(JSON.stringify({speakers: state, at}));
      }
    }

    heard(message) {
      const player = window.omnilingoPlayer;
      if (message.pause && player && player.hold()) { this.speakers('held'); }
      if (message.resume && player && player.release()) { this.speakers('released'); }
      if (message.barge_in !== undefined && window.omnilingoQuiet) { window.omnilingoQuiet(); }
      if (message.turn !== undefined) {
        const button = document.querySelector('#voice-turn');
        if (button) { button.click(); }
      }
      if (message.state !== undefined) { this.line(this.labels[message.state] || ''); }
      if (message.warning) { this.line(message.warning); }
    }

    stop() {
      this.run++;
      const parts = this.parts;
      this.parts = null;
      this.line('');
      if (parts) { release(parts); }
    }
  }

  window.omnilingoMic = new MicStream();
})();
