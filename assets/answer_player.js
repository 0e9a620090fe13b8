// The spoken answer's player: each synthesized sentence arrives as a WAV in the answer-voice
// value and is scheduled on one AudioContext right behind the previous one. Decoding and starting
// a WAV takes milliseconds, where a streamed <audio> source (HLS) buffered a second or more.
//
// The value: {id, chunks: [{seq, wav (base64)}], done}. The server sends a new id for each answer
// (or replayed answer) and appends chunks; every change of the value hands all chunks so far, so a
// missed change loses nothing; done: no more chunks will come. stop() silences what is scheduled
// and ignores the rest of that id.
//
// The element #answer-player carries the events of an <audio> element (play, playing, waiting
// while the next sentence is still being written, pause, ended), so Stop, barge-in and tests see
// the player as they would see one. hold() and release() pause and resume the whole AudioContext
// (what is scheduled keeps its place) while the server tells whether the user began to speak.
(() => {
  if (window.omnilingoPlayer) { return; }
  const LEAD_S = 0.01;  // scheduling margin for the first chunk

  class AnswerPlayer {
    constructor() {
      this.ctx = null;
      this.id = null;
      this.stoppedId = null;
      this.seq = -1;
      this.nextStart = 0;
      this.sources = new Set();
      this.decoding = Promise.resolve();
      this.playing = false;
      this.waiting = false;
      this.done = false;
      this.queued = 0;  // chunks of this id received and not yet played out
      this.chunksPlayed = 0;
      this.held = false;
    }

    element() {
      let el = document.getElementById('answer-player');
      if (!el) {
        el = document.createElement('div');
        el.id = 'answer-player';
        el.hidden = true;
        document.body.appendChild(el);
      }
      return el;
    }

    emit(kind) {
      this.element().dispatchEvent(new Event(kind));
    }

    context() {
      if (!this.ctx) {
        this.ctx = new AudioContext({latencyHint: 'interactive'});
      }
      if (this.ctx.state === 'suspended' && !this.held) { this.ctx.resume(); }
      return this.ctx;
    }

    // Speech may have begun over the answer: the answer falls silent, and keeps its place.
    // True when it did (an answer was playing).
    hold() {
      if (!this.ctx || !this.playing || this.held) { return false; }
      this.held = true;
      this.ctx.suspend();
      this.emit('pause');
      return true;
    }

    // It was not speech: the answer plays on from where it was held. True when one was held.
    release() {
      if (!this.held) { return false; }
      this.held = false;
      this.ctx.resume();
      if (this.playing) { this.emit('playing'); }
      return true;
    }

    // Browsers start sound only once the page was used: a context that was made too early waits
    // for the next click or key. (It is made at the first sentence, not at a click: one made
    // before the microphone starts can keep the recorder from sending anything.)
    unlock() {
      if (this.ctx && this.ctx.state === 'suspended' && !this.held) { this.ctx.resume(); }
    }

    feed(value) {
      if (!value || value.id === undefined || value.id === null || !Array.isArray(value.chunks)) { return; }
      if (value.id === this.stoppedId) { return; }
      if (value.id !== this.id) {
        if (this.id !== null && value.id < this.id) { return; }  // an older answer arriving late
        this.silence();
        this.id = value.id;
        this.seq = -1;
        this.done = false;
      }
      for (const chunk of value.chunks) {
        if (chunk.seq > this.seq) {
          this.seq = chunk.seq;
          this.queued += 1;
          this.schedule(chunk.wav, value.id);
        }
      }
      if (value.done) {
        this.done = true;
        this.settle();
      }
    }

    // The queue ran dry: the answer is over, or its next sentence is not ready yet.
    settle() {
      if (this.queued > 0 || !this.playing) { return; }
      if (this.done) {
        this.playing = false;
        this.waiting = false;
        this.emit('ended');
      } else if (!this.waiting) {
        this.waiting = true;
        this.emit('waiting');
      }
    }

    schedule(base64, id) {
      const ctx = this.context();
      const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
      // Decoded one after the other, so that sentences keep their order.
      this.decoding = this.decoding
        .then(() => ctx.decodeAudioData(bytes.buffer))
        .then((buffer) => {
          if (id !== this.id || id === this.stoppedId) { return; }
          const ended = () => { this.queued -= 1; this.settle(); };
          const source = ctx.createBufferSource();
          source.buffer = buffer;
          source.connect(ctx.destination);
          const start = Math.max(ctx.currentTime + LEAD_S, this.nextStart);
          source.start(start);
          this.nextStart = start + buffer.duration;
          this.sources.add(source);
          this.chunksPlayed += 1;
          source.onended = () => {
            this.sources.delete(source);
            ended();
          };
          if (!this.playing || this.waiting) {
            if (!this.playing) { this.emit('play'); }
            this.playing = true;
            this.waiting = false;
            const wait = Math.max(0, (start - ctx.currentTime) * 1000);
            setTimeout(() => { if (this.sources.has(source)) { this.emit('playing'); } }, wait);
          }
        })
        .catch((err) => {
          console.warn('answer audio could not be played', err);
          if (id === this.id) { this.queued -= 1; this.settle(); }
        });
    }

    // Stop, barge-in, a new answer: what is scheduled goes silent at once.
    silence() {
      for (const source of this.sources) {
        source.onended = null;
        try { source.stop(); } catch (err) { /* already ended */ }
      }
      this.sources.clear();
      this.nextStart = 0;
      this.queued = 0;
      this.waiting = false;
      if (this.held) {  // the next answer must be heard
        this.held = false;
        this.ctx.resume();
      }
      if (this.playing) {
        this.playing = false;
        this.emit('pause');
      }
    }

    stop() {
      this.stoppedId = this.id;
      this.silence();
    }

    state() {
      return {
        id: this.id,
        paused: !this.playing || this.held,
        chunks: this.chunksPlayed,
        time: this.ctx ? this.ctx.currentTime : 0,
        context: this.ctx ? this.ctx.state : 'none',
      };
    }
  }

  const player = new AnswerPlayer();
  window.omnilingoPlayer = player;
  // Stop, barge-in and the end of voice mode: the answer and any recording playing in the chat go quiet.
  window.omnilingoQuiet = () => {
    document.querySelectorAll('audio').forEach((a) => { a.pause(); });
    player.stop();
  };
  for (const kind of ['pointerdown', 'keydown']) {
    document.addEventListener(kind, () => player.unlock(), {capture: true});
  }
})();
