// Reply audio for the kiosk page (kiosk.js): PCM16 frames from the server played back to back
// on one Web Audio context, stopped at once on barge-in, with what was played counted per turn.
"use strict";

/** Plays reply frames back to back on one AudioContext; `clear()` silences it at once. */
class KioskPlayer {
  /** `rate`: the reply audio's sample rate (Hz); `leadS`: how far ahead of now a reply
   * starts after a gap (s), so its first frame plays whole. */
  constructor(ctx, rate, leadS) {
    this.ctx = ctx;
    this.rate = rate;
    this.leadS = leadS;
    this.output = ctx.createGain();
    this.output.connect(ctx.destination);
    this.analyser = ctx.createAnalyser();
    this.analyser.fftSize = 512;
    this.output.connect(this.analyser);
    this.queue = []; // {source, start, end, turn}: scheduled and not yet ended
    this.nextTime = 0; // where the next frame starts, in ctx.currentTime seconds
    this.settled = new Map(); // turn → ms played by sources that ended or were stopped
    this.onidle = () => {};
  }

  play(turn, data) {
    const view = new DataView(data);
    const count = data.byteLength >> 1;
    if (count === 0) return;
    const buffer = this.ctx.createBuffer(1, count, this.rate);
    const samples = buffer.getChannelData(0);
    for (let i = 0; i < count; i++) samples[i] = view.getInt16(2 * i, true) / 32768;
    const source = this.ctx.createBufferSource();
    source.buffer = buffer;
    source.connect(this.output);
    // Back to back; after a gap (the server was late, or a new reply), a little ahead of now.
    const start = Math.max(this.nextTime, this.ctx.currentTime + this.leadS);
    const item = {source, start, end: start + buffer.duration, turn};
    source.onended = () => this.ended(item);
    source.start(start);
    this.queue.push(item);
    this.nextTime = item.end;
  }

  ended(item) {
    const index = this.queue.indexOf(item);
    if (index < 0) return;
    this.queue.splice(index, 1);
    this.settle(item, item.end);
    if (this.queue.length === 0) this.onidle();
  }

  settle(item, at) {
    const ms = 1000 * Math.min(Math.max(at - item.start, 0), item.end - item.start);
    this.settled.set(item.turn, (this.settled.get(item.turn) || 0) + ms);
  }

  /** Stop everything now and drop what is scheduled; returns the ms dropped unplayed. */
  clear() {
    const now = this.ctx.currentTime;
    let dropped = 0;
    for (const item of this.queue) {
      item.source.onended = null;
      item.source.stop();
      item.source.disconnect();
      this.settle(item, now);
      dropped += 1000 * (item.end - Math.max(now, item.start));
    }
    const had = this.queue.length > 0;
    this.queue = [];
    this.nextTime = 0;
    if (had) this.onidle();
    return Math.round(dropped);
  }

  get playing() {
    return this.queue.length > 0;
  }

  playedMs(turn) {
    const now = this.ctx.currentTime;
    let ms = 0;
    for (const [t, settled] of this.settled) if (turn === undefined || t === turn) ms += settled;
    for (const item of this.queue) {
      if (turn !== undefined && item.turn !== turn) continue;
      ms += 1000 * Math.min(Math.max(now - item.start, 0), item.end - item.start);
    }
    return Math.round(ms);
  }

  bufferedMs() {
    const now = this.ctx.currentTime;
    let ms = 0;
    for (const item of this.queue) ms += 1000 * (item.end - Math.max(now, item.start));
    return Math.round(ms);
  }

  /** RMS of what the speakers get right now (the last ~10 ms), 0 when silent. */
  level() {
    const data = new Float32Array(this.analyser.fftSize);
    this.analyser.getFloatTimeDomainData(data);
    let sum = 0;
    for (const x of data) sum += x * x;
    return Math.sqrt(sum / data.length);
  }
}

window.KioskPlayer = KioskPlayer;
