// The softphone's sounds, made here rather than fetched: Twilio's SDK would otherwise download
// 15 MP3s from sdk.twilio.com whenever a Device is made, and the page's Content-Security-Policy
// lets media come from this app and blob: URLs only. Each sound is a short WAV (8 kHz, 16-bit,
// mono) built in memory: the ring of an incoming call, a rising and a falling pair of notes
// when a call starts and ends, and the real DTMF pair of each key.

const RATE = 8000;
const LEVEL = 0.22; // of full scale, shared by the frequencies sounding at once
const FADE = 0.005; // seconds of fade in and out: no click at either end

// The two frequencies (Hz) of each key (ITU-T Q.23), and the SDK's name of its sound.
const DTMF = {
  1: [697, 1209], 2: [697, 1336], 3: [697, 1477],
  4: [770, 1209], 5: [770, 1336], 6: [770, 1477],
  7: [852, 1209], 8: [852, 1336], 9: [852, 1477],
  "*": [941, 1209], 0: [941, 1336], "#": [941, 1477],
};
const DTMF_NAMES = { "*": "dtmfs", "#": "dtmfh" };

/** PCM samples (-1..1) for `parts`: [frequencies, seconds] each; no frequency is silence. */
function samples(parts) {
  const total = parts.reduce((sum, [, seconds]) => sum + Math.round(seconds * RATE), 0);
  const out = new Float32Array(total);
  let at = 0;
  for (const [frequencies, seconds] of parts) {
    const count = Math.round(seconds * RATE);
    const fade = Math.min(Math.round(FADE * RATE), Math.floor(count / 2));
    for (let i = 0; i < count && frequencies.length; i += 1) {
      const t = i / RATE;
      let value = 0;
      for (const frequency of frequencies) value += Math.sin(2 * Math.PI * frequency * t);
      const envelope = Math.min(1, i / fade, (count - 1 - i) / fade);
      out[at + i] = (value / frequencies.length) * LEVEL * envelope;
    }
    at += count;
  }
  return out;
}

/** A WAV file (RIFF, PCM 16-bit mono) of `values`. */
function wav(values) {
  const data = values.length * 2;
  const view = new DataView(new ArrayBuffer(44 + data));
  const text = (offset, string) => {
    for (let i = 0; i < string.length; i += 1) view.setUint8(offset + i, string.charCodeAt(i));
  };
  text(0, "RIFF");
  view.setUint32(4, 36 + data, true);
  text(8, "WAVE");
  text(12, "fmt ");
  view.setUint32(16, 16, true); // the fmt chunk's size
  view.setUint16(20, 1, true); // PCM
  view.setUint16(22, 1, true); // one channel
  view.setUint32(24, RATE, true);
  view.setUint32(28, RATE * 2, true); // bytes a second
  view.setUint16(32, 2, true); // bytes a frame
  view.setUint16(34, 16, true); // bits a sample
  text(36, "data");
  view.setUint32(40, data, true);
  for (let i = 0; i < values.length; i += 1) {
    view.setInt16(44 + i * 2, Math.round(Math.max(-1, Math.min(1, values[i])) * 0x7fff), true);
  }
  return new Blob([view.buffer], { type: "audio/wav" });
}

let urls = null;

/**
 * The `sounds` option of Twilio.Device: a blob: URL for each of the SDK's sound names
 * (incoming, outgoing, disconnect, dtmf0…dtmf9, dtmfs, dtmfh). Made once per page and kept:
 * the Device plays them for as long as the page lives.
 */
export function soundUrls() {
  if (urls) return urls;
  const url = (parts) => URL.createObjectURL(wav(samples(parts)));
  urls = {
    // A double ring (400 + 450 Hz), then a pause; the SDK loops it until the call is answered.
    incoming: url([[[400, 450], 0.4], [[], 0.2], [[400, 450], 0.4], [[], 2.0]]),
    outgoing: url([[[660], 0.12], [[880], 0.16]]),
    disconnect: url([[[880], 0.12], [[660], 0.12], [[440], 0.2]]),
  };
  for (const [key, pair] of Object.entries(DTMF)) {
    urls[DTMF_NAMES[key] || `dtmf${key}`] = url([[pair, 0.15]]);
  }
  return urls;
}
