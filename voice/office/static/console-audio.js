// A live call's audio for the supervisor console (console.html), on the audio thread.
//
// The page posts each frame of the call's audio websocket here as it came (an ArrayBuffer:
// one kind byte, then PCM16 little-endian mono at 16 kHz):
//   1: the caller;  2: the assistant's side (replies, hold audio, another person's speech);
//   3: clear: drop the assistant's side buffered so far (a reply was cut off).
// Callers and assistant each get a small jitter buffer: a stream starts to play once
// START_MS is buffered, and again after it runs dry; beyond MAX_MS buffered, its oldest audio
// is dropped so that what is heard never lags the call by more. The two are mixed and played
// at the AudioContext's rate (linear interpolation from 16 kHz: enough to listen in).
//
// The microphone goes the other way through the kiosk's worklet (/kiosk-worklet.js,
// "pcm16-downsampler"), which the console loads as well.

const RATE = 16000;
const START_MS = 60;
const MAX_MS = 3000;
const START_SAMPLES = (RATE * START_MS) / 1000;
const MAX_SAMPLES = (RATE * MAX_MS) / 1000;
const CALLER = 1;
const ASSISTANT = 2;
const CLEAR = 3;

/** One 16 kHz stream, read at any rate. Positions count samples since the stream began. */
class JitterBuffer {
  constructor() {
    this.ring = new Float32Array(MAX_SAMPLES + 2); // + the neighbour an interpolation reads
    this.written = 0;
    this.read = 0; // fractional: between two samples while resampling
    this.playing = false;
  }

  /** Append `count` PCM16 samples from `view`, starting at byte `offset`. */
  push(view, offset, count) {
    const size = this.ring.length;
    const skip = Math.max(0, count - MAX_SAMPLES); // a frame longer than the cap: its end
    for (let i = skip; i < count; i++) {
      this.ring[(this.written + i - skip) % size] = view.getInt16(offset + 2 * i, true) / 32768;
    }
    this.written += count - skip;
    if (this.written - this.read > MAX_SAMPLES) this.read = this.written - MAX_SAMPLES;
  }

  clear() {
    this.read = this.written;
    this.playing = false;
  }

  /** The next output sample, `step` input samples on; silence while (re)buffering. */
  next(step) {
    const buffered = this.written - this.read;
    if (!this.playing) {
      if (buffered < START_SAMPLES) return 0;
      this.playing = true;
    }
    if (buffered < 2) { // ran dry: wait for START_MS again
      this.playing = false;
      return 0;
    }
    const size = this.ring.length;
    const i = Math.floor(this.read);
    const a = this.ring[i % size];
    const b = this.ring[(i + 1) % size];
    const sample = a + (b - a) * (this.read - i);
    this.read += step;
    return sample;
  }
}

class CallMix extends AudioWorkletProcessor {
  constructor() {
    super();
    this.step = RATE / sampleRate; // input samples per output sample
    this.caller = new JitterBuffer();
    this.assistant = new JitterBuffer();
    this.port.onmessage = (message) => this.receive(message.data);
  }

  receive(frame) {
    const view = new DataView(frame);
    if (view.byteLength < 1) return;
    const kind = view.getUint8(0);
    const count = (view.byteLength - 1) >> 1;
    if (kind === CALLER) this.caller.push(view, 1, count);
    else if (kind === ASSISTANT) this.assistant.push(view, 1, count);
    else if (kind === CLEAR) this.assistant.clear();
  }

  process(inputs, outputs) {
    const out = outputs[0][0];
    for (let i = 0; i < out.length; i++) {
      const mixed = this.caller.next(this.step) + this.assistant.next(this.step);
      out[i] = Math.max(-1, Math.min(1, mixed));
    }
    return true; // keep playing until the page disconnects the node
  }
}

registerProcessor("call-mix", CallMix);
