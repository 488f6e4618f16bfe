// The kiosk's microphone path, on the audio thread: the AudioContext's rate (often 44.1 or
// 48 kHz) down to 16 kHz mono PCM16, posted to the page in 20 ms frames (320 samples, 640 bytes)
// as transferred ArrayBuffers. The page decides which frames go to the server.
//
// Downsampling: a windowed-sinc low-pass (cut off below the new Nyquist frequency, so nothing
// above 8 kHz folds back into speech), sampled at fractional input positions with linear
// interpolation between two filtered neighbours. Any input rate works; 16 kHz in is copied.

const TARGET_RATE = 16000;
const FRAME_SAMPLES = 320; // 20 ms at 16 kHz
const TAPS = 63; // odd: the filter is centred on a sample

function lowPass(inRate, outRate) {
  // Cut-off at 90 % of the output's Nyquist frequency, in cycles per input sample.
  const cutoff = (0.45 * outRate) / inRate;
  const half = (TAPS - 1) / 2;
  const taps = new Float32Array(TAPS);
  let sum = 0;
  for (let k = 0; k < TAPS; k++) {
    const n = k - half;
    const sinc = n === 0 ? 2 * cutoff : Math.sin(2 * Math.PI * cutoff * n) / (Math.PI * n);
    const blackman =
      0.42 - 0.5 * Math.cos((2 * Math.PI * k) / (TAPS - 1)) +
      0.08 * Math.cos((4 * Math.PI * k) / (TAPS - 1));
    taps[k] = sinc * blackman;
    sum += taps[k];
  }
  for (let k = 0; k < TAPS; k++) taps[k] /= sum; // unity gain at 0 Hz
  return taps;
}

class Pcm16Downsampler extends AudioWorkletProcessor {
  constructor() {
    super();
    this.step = sampleRate / TARGET_RATE; // input samples per output sample
    this.copy = sampleRate === TARGET_RATE;
    this.taps = this.copy ? null : lowPass(sampleRate, TARGET_RATE);
    this.half = (TAPS - 1) / 2;
    // Unconsumed input, with the filter's history in front: starts with `half` zeros.
    this.input = new Float32Array(4096);
    this.length = this.half;
    this.position = this.half; // where the next output sample lies, in `input` coordinates
    this.frame = new Int16Array(FRAME_SAMPLES);
    this.filled = 0;
  }

  process(inputs) {
    const channels = inputs[0];
    if (channels && channels.length > 0) {
      // Mono: the first channel (a microphone track is mono; a stereo one is the same voice).
      if (this.copy) {
        for (const x of channels[0]) this.emit(x);
      } else {
        this.append(channels[0]);
        this.resample();
      }
    }
    return true; // keep running while the microphone is connected
  }

  append(block) {
    if (this.length + block.length > this.input.length) {
      const grown = new Float32Array((this.length + block.length) * 2);
      grown.set(this.input.subarray(0, this.length));
      this.input = grown;
    }
    this.input.set(block, this.length);
    this.length += block.length;
  }

  filtered(i) {
    const x = this.input;
    const taps = this.taps;
    const from = i - this.half;
    let sum = 0;
    for (let k = 0; k < TAPS; k++) sum += taps[k] * x[from + k];
    return sum;
  }

  resample() {
    // Output while both neighbours of `position`, with their right-hand taps, are here.
    while (Math.floor(this.position) + 1 + this.half < this.length) {
      const i = Math.floor(this.position);
      const frac = this.position - i;
      const a = this.filtered(i);
      const b = frac === 0 ? a : this.filtered(i + 1);
      this.emit(a + (b - a) * frac);
      this.position += this.step;
    }
    // Drop what no later output sample needs: keep `half` samples of history before it.
    const keepFrom = Math.max(0, Math.floor(this.position) - this.half);
    if (keepFrom > 0) {
      this.input.copyWithin(0, keepFrom, this.length);
      this.length -= keepFrom;
      this.position -= keepFrom;
    }
  }

  emit(sample) {
    const clipped = Math.max(-1, Math.min(1, sample));
    this.frame[this.filled++] = Math.round(clipped < 0 ? clipped * 0x8000 : clipped * 0x7fff);
    if (this.filled === FRAME_SAMPLES) {
      const buffer = this.frame.buffer;
      this.port.postMessage(buffer, [buffer]);
      this.frame = new Int16Array(FRAME_SAMPLES);
      this.filled = 0;
    }
  }
}

registerProcessor("pcm16-downsampler", Pcm16Downsampler);
