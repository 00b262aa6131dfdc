// Texture Networks in the browser: read an exported ONNX model's contract from the model's own
// metadata, synthesize textures / stylize images of any size with onnxruntime-web, on the backend
// asked for (backends.mjs).
import { openSession } from './backends.mjs';

// WebAssembly has at most 4 GB of memory; activations of a 1024x1024 run take about 1.3 GB.
export const BROWSER_MAX_SIDE = 1024;
export const MIN_SIDE = 16; // as tn_export.runtime: smaller outputs are padding more than picture

const PREFIX = 'tn_export.';

// onnxruntime-web does not expose an ONNX model's metadata_props, so read them from the file:
// ModelProto field 14 (repeated StringStringEntryProto {1: key, 2: value}). Other fields, the
// graph and its weights included, are skipped by their length without being decoded.
export function readMetadata(bytes) {
  let pos = 0;
  const varint = () => {
    let value = 0;
    let scale = 1;
    let byte;
    do {
      if (pos >= bytes.length) throw new Error('truncated protobuf');
      byte = bytes[pos++];
      value += (byte & 0x7f) * scale;
      scale *= 128;
    } while (byte & 0x80);
    return value;
  };
  const skip = (wire) => {
    if (wire === 0) varint();
    else if (wire === 1) pos += 8;
    else if (wire === 2) {
      const length = varint(); // read before `pos +=`, which would capture the old position
      pos += length;
    }
    else if (wire === 5) pos += 4;
    else throw new Error(`unexpected protobuf wire type ${wire}`);
    if (pos > bytes.length) throw new Error('truncated protobuf');
  };
  const decoder = new TextDecoder();
  const props = {};
  while (pos < bytes.length) {
    const key = varint();
    if (key >>> 3 !== 14 || (key & 7) !== 2) {
      skip(key & 7);
      continue;
    }
    const end = varint() + pos;
    const entry = ['', ''];
    while (pos < end) {
      const inner = varint();
      const field = inner >>> 3;
      if ((inner & 7) === 2 && (field === 1 || field === 2)) {
        const length = varint();
        entry[field - 1] = decoder.decode(bytes.subarray(pos, pos + length));
        pos += length;
      } else {
        skip(inner & 7);
      }
    }
    props[entry[0]] = entry[1];
  }
  return props;
}

// The contract as tn_export.contract.ModelContract.to_metadata wrote it (every key is present).
export function readContract(bytes, source) {
  let meta;
  try {
    meta = readMetadata(bytes);
  } catch (e) {
    throw new Error(`${source} is not an ONNX file (${e.message}); export it with tn-export`);
  }
  const get = (key) => {
    const value = meta[PREFIX + key];
    if (value === undefined) {
      throw new Error(`${source} lacks tn-export metadata "${key}"; re-export it with tn-export`);
    }
    return value;
  };
  if (meta[PREFIX + 'mode'] === undefined) {
    throw new Error(`${source} has no tn-export metadata (not exported by tn-export?)`);
  }
  const int = (key) => {
    const value = Number(get(key));
    if (!Number.isInteger(value) || value < 1) {
      throw new Error(`${source} has malformed tn-export metadata ${key}=${get(key)}`);
    }
    return value;
  };
  const contract = {
    mode: get('mode'),
    noiseDepth: int('noise_depth'),
    sizeMultiple: int('size_multiple'),
    minSize: int('min_size'),
    maxSize: int('max_size'),
    inputName: get('input_name'),
    outputName: get('output_name'),
    layout: get('layout'),
    channelOrder: get('channel_order'),
    name: get('name'),
    description: get('description'),
    formatVersion: int('format_version'),
  };
  if (contract.formatVersion > 1) {
    throw new Error(`${source} was exported by a newer tn-export; update this page`);
  }
  if (contract.layout !== 'NCHW' || contract.channelOrder !== 'RGB') {
    throw new Error(`${source} is ${contract.layout} ${contract.channelOrder}; NCHW RGB expected`);
  }
  if (!['texture', 'style'].includes(contract.mode)) {
    throw new Error(`${source} has an unknown mode "${contract.mode}"`);
  }
  return contract;
}

// murmur3's 32-bit finaliser on a uint32 (tn_export/runtime/noise.py's fmix32).
function fmix32(h) {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

const GOLDEN = 0x9e3779b9;
const SECOND = 0x85ebca6b;
const TWO_PI = Math.fround(2 * Math.PI);

// A uniform in (0, 1) from a hash's 24 high bits, rounded as numpy's float32 sum rounds it.
const uniform = (h) => Math.fround((h >>> 8) + 0.5) * 2 ** -24;

// The `index`-th N(0, 1) noise image of `seed`, (depth, height, width) from position (0, 0):
// tn_export.runtime's counter-based noise (noise.py), so a seed gives the texture tn-run gives.
// Every value is computed in float32 steps as numpy does; log and cos may differ in the last bit.
export function gaussianNoise(seed, depth, height, width, index = 0) {
  const key = fmix32(seed >>> 0);
  const cols = Uint32Array.from({ length: width }, (_, x) => Math.imul(x, GOLDEN) >>> 0);
  const rows = Uint32Array.from({ length: height }, (_, y) => fmix32(Math.imul(y, GOLDEN) >>> 0));
  const out = new Float32Array(depth * height * width);
  for (let c = 0; c < depth; c++) {
    const channel = fmix32((key ^ Math.imul(index * depth + c, GOLDEN)) >>> 0);
    for (let y = 0; y < height; y++) {
      const row = fmix32((channel + rows[y]) >>> 0);
      const at = (c * height + y) * width;
      for (let x = 0; x < width; x++) {
        const h = fmix32((row ^ cols[x]) >>> 0);
        const radius = Math.fround(Math.sqrt(Math.fround(-2 * Math.fround(Math.log(uniform(h))))));
        const angle = Math.fround(uniform(fmix32((h + SECOND) >>> 0)) * TWO_PI);
        out[at + x] = radius * Math.fround(Math.cos(angle));
      }
    }
  }
  return out;
}

// Reflect-pad (no edge repeat, as numpy's "reflect") a CHW image to height x width.
function reflectPad(rgb, h, w, height, width) {
  const mirror = (i, n) => {
    const period = 2 * (n - 1);
    if (period === 0) return 0;
    const r = i % period;
    return r < n ? r : period - r;
  };
  const out = new Float32Array(3 * height * width);
  for (let c = 0; c < 3; c++) {
    for (let y = 0; y < height; y++) {
      const row = (c * h + mirror(y, h)) * w;
      for (let x = 0; x < width; x++) out[(c * height + y) * width + x] = rgb[row + mirror(x, w)];
    }
  }
  return out;
}

function crop(rgb, height, width, h, w) {
  const out = new Float32Array(3 * h * w);
  for (let c = 0; c < 3; c++) {
    for (let y = 0; y < h; y++) {
      const from = (c * height + y) * width;
      out.set(rgb.subarray(from, from + w), (c * h + y) * w);
    }
  }
  return out;
}

export class TextureNetwork {
  constructor(bytes, contract, source) {
    this.bytes = bytes;
    this.contract = contract;
    this.source = source;
    this.sessions = new Map(); // backend -> Promise of { ort, session }, made on first use
  }

  // The model's contract from `bytes`, and its session on `backend` (so a broken file fails here).
  static async load(bytes, source, backend) {
    const network = new TextureNetwork(bytes, readContract(bytes, source), source);
    await network.session(backend);
    return network;
  }

  session(backend) {
    if (!this.sessions.has(backend)) {
      const opened = openSession(this.bytes, backend).then((runner) => {
        const { inputName, outputName } = this.contract;
        if (!runner.session.inputNames.includes(inputName)) {
          throw new Error(`${this.source} has no input "${inputName}"; re-export it`);
        }
        if (!runner.session.outputNames.includes(outputName)) {
          throw new Error(`${this.source} has no output "${outputName}"; re-export it`);
        }
        return runner;
      });
      opened.catch(() => this.sessions.delete(backend)); // a failed backend may be tried again
      this.sessions.set(backend, opened);
    }
    return this.sessions.get(backend);
  }

  get maxSide() {
    return Math.min(this.contract.maxSize, BROWSER_MAX_SIDE);
  }

  // The smallest size the model runs that holds `length` pixels.
  padded(length) {
    const { sizeMultiple: m, minSize } = this.contract;
    return Math.max(Math.ceil(length / m) * m, minSize);
  }

  checkSize(width, height) {
    for (const [name, value] of [['width', width], ['height', height]]) {
      if (!Number.isInteger(value) || value < MIN_SIDE || value > this.maxSide) {
        throw new Error(`${name} ${value} must be a whole number from ${MIN_SIDE} to ${this.maxSide}`);
      }
    }
  }

  async run(backend, data, channels, height, width) {
    const { ort, session } = await this.session(backend);
    const { inputName, outputName } = this.contract;
    const input = new ort.Tensor('float32', data, [1, channels, height, width]);
    const outputs = await session.run({ [inputName]: input });
    const image = outputs[outputName];
    const result = image.data.slice();
    input.dispose?.();
    image.dispose?.();
    return result;
  }

  // A width x height texture: from a seed, or from given noise at the padded size
  // (1, noise_depth, padded(height), padded(width)), which is how the tests compare with Python.
  // Every result says the backend it ran on.
  async synthesize(width, height, { seed = 0, noise = null, backend = 'wasm' } = {}) {
    if (this.contract.mode !== 'texture') {
      throw new Error(`${this.source} is a style model: choose an image to stylize`);
    }
    this.checkSize(width, height);
    const ph = this.padded(height);
    const pw = this.padded(width);
    const count = this.contract.noiseDepth * ph * pw;
    if (noise && noise.length !== count) {
      throw new Error(`noise has ${noise.length} values, ${count} expected for ${pw}x${ph}`);
    }
    const input = noise ?? gaussianNoise(seed, this.contract.noiseDepth, ph, pw);
    const out = await this.run(backend, input, this.contract.noiseDepth, ph, pw);
    return { width, height, backend, rgb: crop(out, ph, pw, height, width) };
  }

  // Stylize an ImageData (at most maxSide per side: scale it first). `strength` (0 = the photo,
  // 1 = full style) and `keepColors` as tn_export.runtime's controls (applyControls).
  async stylize(imageData, { strength = 1, keepColors = false, backend = 'wasm' } = {}) {
    if (this.contract.mode !== 'style') {
      throw new Error(`${this.source} is a texture model: generate a texture instead`);
    }
    checkStrength(strength);
    const { width, height, data } = imageData;
    this.checkSize(width, height);
    const rgb = new Float32Array(3 * width * height);
    for (let i = 0; i < width * height; i++) {
      for (let c = 0; c < 3; c++) rgb[c * width * height + i] = data[4 * i + c] / 255;
    }
    const ph = this.padded(height);
    const pw = this.padded(width);
    const out = await this.run(backend, reflectPad(rgb, height, width, ph, pw), 3, ph, pw);
    const styled = crop(out, ph, pw, height, width);
    return { width, height, backend, rgb: applyControls(styled, rgb, { strength, keepColors }) };
  }
}

export function checkStrength(strength) {
  if (typeof strength !== 'number' || !(strength >= 0 && strength <= 1)) {
    throw new Error(`strength must be from 0 (the photo) to 1 (full style), not ${strength}`);
  }
}

// BT.601 luma weights (YCbCr as JPEG defines it), as tn_export/runtime/controls.py.
const LUMA = [0.299, 0.587, 0.114];

// The delivered planar RGB from the raw stylized output and the photo, as controls.py computes
// it: these models have no conditional norms, so strength blends pixels; keepColors moves only
// the luminance Y (each channel keeps its offset from Y, which is what keeps Cb and Cr), within
// the range where no channel leaves [0, 1].
export function applyControls(styled, photo, { strength = 1, keepColors = false } = {}) {
  if (strength === 1 && !keepColors) return styled;
  const plane = photo.length / 3;
  const out = new Float32Array(photo.length);
  const clip = (v, low = 0, high = 1) => Math.min(high, Math.max(low, v));
  const luma = (rgb, i, f = (v) => v) =>
    LUMA[0] * f(rgb[i]) + LUMA[1] * f(rgb[plane + i]) + LUMA[2] * f(rgb[2 * plane + i]);
  for (let i = 0; i < plane; i++) {
    if (!keepColors) {
      for (let j = i; j < photo.length; j += plane) {
        out[j] = photo[j] + strength * (clip(styled[j]) - photo[j]);
      }
      continue;
    }
    const y = luma(photo, i);
    const offsets = [photo[i] - y, photo[plane + i] - y, photo[2 * plane + i] - y];
    const wanted = y + strength * (luma(styled, i, clip) - y);
    const moved = clip(wanted, -Math.min(...offsets), 1 - Math.max(...offsets));
    for (let c = 0; c < 3; c++) out[c * plane + i] = offsets[c] + moved;
  }
  return out;
}

// Planar RGB in [0, 1] -> ImageData for a canvas.
export function toImageData({ width, height, rgb }) {
  const pixels = new Uint8ClampedArray(4 * width * height);
  const plane = width * height;
  for (let i = 0; i < plane; i++) {
    pixels[4 * i] = rgb[i] * 255;
    pixels[4 * i + 1] = rgb[plane + i] * 255;
    pixels[4 * i + 2] = rgb[2 * plane + i] * 255;
    pixels[4 * i + 3] = 255;
  }
  return new ImageData(pixels, width, height);
}
