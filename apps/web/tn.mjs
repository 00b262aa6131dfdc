// Texture Networks in the browser: read an exported ONNX model's contract from the model's own
// metadata, synthesize textures / stylize images of any size with onnxruntime-web, on the backend
// asked for (backends.mjs).
import { openSession } from './backends.mjs';

// WebAssembly has at most 4 GB of memory; activations of a 1024x1024 run take about 1.3 GB.
export const BROWSER_MAX_SIDE = 1024;
// With its exact-tiling parts a texture runs tile by tile (runtime/exact.py), in the memory of
// one TILE x TILE tile and one block of 4 x 4 tiles, up to TILED_MAX_SIDE pixels a side.
export const TILED_MAX_SIDE = 4096;
const TILE = 256;
const FEATURES = 'features'; // the coarse part's output, the fine part's first input
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

// The contract as tn_export.contract.ModelContract.to_metadata wrote it (every key is present,
// but for `tiling` and `styles`, which older exports lack).
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
    padding: get('padding'),
    // The exact-tiling parts beside the model and their reaches (runtime/exact.py), or none.
    tiling: JSON.parse(meta[PREFIX + 'tiling'] ?? '{}'),
    // A model of several styles also takes their weights, (N, styles.length), as styleInput.
    styles: JSON.parse(meta[PREFIX + 'styles'] ?? '[]'),
    styleInput: meta[PREFIX + 'style_input'] ?? 'style',
    formatVersion: int('format_version'),
  };
  if (!Array.isArray(contract.styles) || !contract.styles.every((n) => typeof n === 'string')) {
    throw new Error(`${source} has malformed tn-export metadata styles=${meta[PREFIX + 'styles']}`);
  }
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

// 'starry=0.7,mosaic=0.3' -> { starry: 0.7, mosaic: 0.3 }: tn-run --mix's syntax (styles.py's
// parse_mix), a name given twice adding up.
export function parseMix(text) {
  const mix = {};
  for (const part of text.split(',')) {
    const at = part.indexOf('=');
    const [name, value] = [part.slice(0, at).trim(), part.slice(at + 1).trim()];
    const weight = value === '' ? NaN : Number(value); // Number('') would be 0
    if (at < 0 || !name || !Number.isFinite(weight)) {
      throw new Error(`mix "${text}": each part must be NAME=WEIGHT, e.g. starry=0.7,mosaic=0.3`);
    }
    mix[name] = (mix[name] ?? 0) + weight;
  }
  return mix;
}

// The style weights (Float32Array, one per contract.styles) for `style`, as styles.py's
// style_weights: a style's name, { name: weight }, or an array of one weight per style; null
// picks the first style. Weights must be >= 0, not all 0, and are scaled to sum to 1. A model
// of one style takes no choice (null for it).
export function styleWeights(contract, style, source = 'model') {
  const names = contract.styles;
  if (!names.length) {
    if (style != null) throw new Error(`${source} holds one style: it takes no style choice`);
    return null;
  }
  const listed = names.join(', ');
  const unknown = (name) => new Error(`${source} has no style "${name}"; its styles: ${listed}`);
  let weights;
  if (style == null) {
    weights = names.map((_, i) => Number(i === 0));
  } else if (typeof style === 'string') {
    if (!names.includes(style)) throw unknown(style);
    weights = names.map((name) => Number(name === style));
  } else if (Array.isArray(style) || ArrayBuffer.isView(style)) {
    weights = Array.from(style, Number);
    if (weights.length !== names.length) {
      throw new Error(
        `${source} holds ${names.length} styles (${listed}): give ${names.length} weights, ` +
          `not ${weights.length}`,
      );
    }
  } else {
    const stray = Object.keys(style).find((name) => !names.includes(name));
    if (stray !== undefined) throw unknown(stray);
    weights = names.map((name) => Number(style[name] ?? 0));
  }
  const sum = weights.reduce((a, b) => a + b, 0);
  if (!weights.every((w) => Number.isFinite(w) && w >= 0) || !(sum > 0)) {
    const given = weights.join(', ');
    throw new Error(`style weights [${given}] must be finite, at least 0 and not all 0`);
  }
  return Float32Array.from(weights, (w) => w / sum); // in float64 first, as numpy does
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

export const range = (start, stop) => Array.from({ length: stop - start }, (_, i) => start + i);

// The `index`-th N(0, 1) noise image of `seed` at rows `ys` and columns `xs` (absolute
// positions), (depth, ys.length, xs.length): tn_export.runtime's counter-based noise (noise.py),
// so a seed gives the texture tn-run gives, whole or in tiles. Every value is computed in
// float32 steps as numpy does; log and cos may differ in the last bit.
export function gaussianNoise(seed, depth, ys, xs, index = 0) {
  const [height, width] = [ys.length, xs.length];
  const key = fmix32(seed >>> 0);
  const cols = Uint32Array.from(xs, (x) => Math.imul(x, GOLDEN) >>> 0);
  const rows = Uint32Array.from(ys, (y) => fmix32(Math.imul(y, GOLDEN) >>> 0));
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

const mod = (i, n) => ((i % n) + n) % n;

// Reach.window of runtime/exact.py: the window [w0, w1) a run of [start, stop) on an axis of
// `length` reads, on the reach's grid; the whole axis where it would cover it, unless it keeps
// its halo (the fine part of a circular model is zero-padded: its own padding is not the image's).
function reachWindow([before, after, align], start, stop, length, wrap, keepsHalo = false) {
  const w0 = Math.floor((start - before) / align) * align;
  const w1 = Math.ceil((stop + after) / align) * align;
  if (wrap && keepsHalo) return [w0, w1];
  if (w1 - w0 >= length) return [0, length];
  return wrap ? [w0, w1] : [Math.max(w0, 0), Math.min(w1, length)];
}

// The fine part's window: with wrap-around it keeps its halo (ExactTiler.fine_reach).
const fineWindow = (tiling, start, stop, length, wrap) =>
  reachWindow(tiling.fine_reach, start, stop, length, wrap, wrap);

// ExactTiler.windows: what a block's tiles read through the fine part, plus the coarse reach.
function blockWindow(tiling, start, side, length, wrap) {
  const fine = fineWindow(tiling, start, Math.min(start + side, length), length, wrap);
  return reachWindow(tiling.coarse_reach, ...fine, length, wrap);
}

// The mean of every s x s cell of a (channels, h, w) array.
function averagePool(x, channels, h, w, s) {
  const [ph, pw] = [h / s, w / s];
  const out = new Float32Array(channels * ph * pw);
  for (let c = 0; c < channels; c++) {
    for (let y = 0; y < h; y++) {
      const row = (c * ph + Math.floor(y / s)) * pw;
      for (let v = 0; v < w; v++) out[row + Math.floor(v / s)] += x[(c * h + y) * w + v];
    }
  }
  return out.map((sum) => sum / (s * s));
}

// The rows `ys` and columns `xs` of a (channels, h, w) array.
function gather(x, channels, h, w, ys, xs) {
  const out = new Float32Array(channels * ys.length * xs.length);
  let i = 0;
  for (let c = 0; c < channels; c++) {
    for (const y of ys) {
      const row = (c * h + y) * w;
      for (const v of xs) out[i++] = x[row + v];
    }
  }
  return out;
}

// The h x w region at (oy, ox) of a (3, th, tw) tile, into `rgb` (3, height, width) at (y, x).
function paste(tile, th, tw, oy, ox, h, w, rgb, height, width, y, x) {
  for (let c = 0; c < 3; c++) {
    for (let r = 0; r < h; r++) {
      const from = (c * th + oy + r) * tw + ox;
      rgb.set(tile.subarray(from, from + w), (c * height + y + r) * width + x);
    }
  }
}

export class TextureNetwork {
  constructor(bytes, contract, source) {
    this.bytes = bytes;
    this.contract = contract;
    this.source = source;
    this.sessions = new Map(); // backend -> Promise of { ort, session }, made on first use
    this.parts = null; // { coarse, fine }: the bytes of the exact-tiling parts, where loaded
    this.partSessions = new Map(); // `${part} ${backend}` -> Promise of { ort, session }
  }

  // The parts tn-export wrote beside the model (contract.tiling names them): textures of any
  // size up to TILED_MAX_SIDE then run in exact tiles.
  attachParts(coarse, fine) {
    this.parts = { coarse, fine };
  }

  partSession(part, backend) {
    const key = `${part} ${backend}`;
    if (!this.partSessions.has(key)) {
      const opened = openSession(this.parts[part], backend);
      opened.catch(() => this.partSessions.delete(key));
      this.partSessions.set(key, opened);
    }
    return this.partSessions.get(key);
  }

  // One run of a part: `feeds` maps input names to [Float32Array, dims]; the output's data.
  async runPart(part, backend, feeds, outputName) {
    const { ort, session } = await this.partSession(part, backend);
    const tensors = {};
    for (const [name, [data, dims]] of Object.entries(feeds)) {
      tensors[name] = new ort.Tensor('float32', data, dims);
    }
    const output = (await session.run(tensors))[outputName];
    const result = output.data.slice();
    for (const t of [...Object.values(tensors), output]) t.dispose?.();
    return result;
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
        const { styles, styleInput } = this.contract;
        for (const name of [inputName, ...(styles.length ? [styleInput] : [])]) {
          if (!runner.session.inputNames.includes(name)) {
            throw new Error(`${this.source} has no input "${name}"; re-export it`);
          }
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
    if (this.parts && this.contract.mode === 'texture') return TILED_MAX_SIDE;
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

  // One run of the model on one image; `weights`: the style weights (styleWeights) of a model
  // of several styles, else null.
  async run(backend, data, channels, height, width, weights = null) {
    const { ort, session } = await this.session(backend);
    const { inputName, outputName, styleInput } = this.contract;
    const feeds = { [inputName]: new ort.Tensor('float32', data, [1, channels, height, width]) };
    if (weights) feeds[styleInput] = new ort.Tensor('float32', weights, [1, weights.length]);
    const image = (await session.run(feeds))[outputName];
    const result = image.data.slice();
    for (const t of [...Object.values(feeds), image]) t.dispose?.();
    return result;
  }

  // A width x height texture: from a seed, or from given noise at the padded size
  // (1, noise_depth, padded(height), padded(width)), which is how the tests compare with Python.
  // Every result says the backend it ran on.
  // With its parts, a texture larger than BROWSER_MAX_SIDE (or any, given `tile`) runs in exact
  // tiles of `tile` pixels; the result then says how many.
  async synthesize(width, height, { seed = 0, noise = null, backend = 'wasm', tile = null } = {}) {
    if (this.contract.mode !== 'texture') {
      throw new Error(`${this.source} is a style model: choose an image to stylize`);
    }
    this.checkSize(width, height);
    const ph = this.padded(height);
    const pw = this.padded(width);
    if (!noise && this.parts && (tile || Math.max(ph, pw) > BROWSER_MAX_SIDE)) {
      const side = tile ?? TILE;
      if (!Number.isInteger(side) || side < 1 || side % this.contract.sizeMultiple) {
        throw new Error(`tile ${tile} must be a positive multiple of ${this.contract.sizeMultiple}`);
      }
      return { width, height, backend, ...(await this.tiled(width, height, seed, backend, side)) };
    }
    const count = this.contract.noiseDepth * ph * pw;
    if (noise && noise.length !== count) {
      throw new Error(`noise has ${noise.length} values, ${count} expected for ${pw}x${ph}`);
    }
    const input = noise ?? gaussianNoise(seed, this.contract.noiseDepth, range(0, ph), range(0, pw));
    const out = await this.run(backend, input, this.contract.noiseDepth, ph, pw);
    return { width, height, backend, rgb: crop(out, ph, pw, height, width) };
  }

  // runtime/exact.py's ExactTiler.tiles: the coarse part on blocks of 4 x 4 tiles (the noise
  // pooled by the split), the fine part on each tile's window; positions wrap around the padded
  // size (circular padding) or are clipped at its border. Equal to the whole image's run.
  async tiled(width, height, seed, backend, tile) {
    const { noiseDepth: depth, inputName, outputName, tiling } = this.contract;
    const [s, wrap] = [tiling.split, this.contract.padding === 'circular'];
    const [hp, wp] = [this.padded(height), this.padded(width)];
    const block = 4 * tile;
    const rgb = new Float32Array(3 * height * width);
    let tiles = 0;
    for (let by = 0; by < height; by += block) {
      for (let bx = 0; bx < width; bx += block) {
        const [cy0, cy1] = blockWindow(tiling, by, block, hp, wrap);
        const [cx0, cx1] = blockWindow(tiling, bx, block, wp, wrap);
        const [ch, cw] = [cy1 - cy0, cx1 - cx0];
        const ys = range(cy0, cy1).map((y) => mod(y, hp));
        const x = gaussianNoise(seed, depth, ys, range(cx0, cx1).map((v) => mod(v, wp)));
        const pooled = [averagePool(x, depth, ch, cw, s), [1, depth, ch / s, cw / s]];
        const features = await this.runPart('coarse', backend, { [inputName]: pooled }, FEATURES);
        const channels = features.length / ((ch / s) * (cw / s));
        for (let ty = by; ty < Math.min(by + block, hp, height); ty += tile) {
          for (let tx = bx; tx < Math.min(bx + block, wp, width); tx += tile) {
            const [ty1, tx1] = [Math.min(ty + tile, hp), Math.min(tx + tile, wp)];
            const wy = fineWindow(tiling, ty, ty1, hp, wrap);
            const wx = fineWindow(tiling, tx, tx1, wp, wrap);
            // Window positions in the block's arrays (modulo: wrap-around).
            const ry = range(...wy).map((y) => mod(y - cy0, hp));
            const rx = range(...wx).map((v) => mod(v - cx0, wp));
            const [fy, fx] = [ry, rx].map((r) => r.filter((_, i) => i % s === 0).map((v) => v / s));
            const at = gather(features, channels, ch / s, cw / s, fy, fx);
            const feeds = {
              [FEATURES]: [at, [1, channels, fy.length, fx.length]],
              [inputName]: [gather(x, depth, ch, cw, ry, rx), [1, depth, ry.length, rx.length]],
            };
            const out = await this.runPart('fine', backend, feeds, outputName);
            const [h, w] = [Math.min(ty1, height) - ty, Math.min(tx1, width) - tx];
            paste(out, ry.length, rx.length, ty - wy[0], tx - wx[0], h, w, rgb, height, width, ty, tx);
            tiles += 1;
          }
        }
      }
    }
    return { rgb, tiles };
  }

  // Stylize an ImageData (at most maxSide per side: scale it first). `strength` (0 = the photo,
  // 1 = full style) and `keepColors` as tn_export.runtime's controls (applyControls); `style`
  // picks or mixes the styles of a model that holds several (styleWeights; default: its first).
  async stylize(
    imageData,
    { strength = 1, keepColors = false, backend = 'wasm', style = null } = {},
  ) {
    if (this.contract.mode !== 'style') {
      throw new Error(`${this.source} is a texture model: generate a texture instead`);
    }
    checkStrength(strength);
    const weights = styleWeights(this.contract, style, this.source);
    const { width, height, data } = imageData;
    this.checkSize(width, height);
    const rgb = new Float32Array(3 * width * height);
    for (let i = 0; i < width * height; i++) {
      for (let c = 0; c < 3; c++) rgb[c * width * height + i] = data[4 * i + c] / 255;
    }
    const ph = this.padded(height);
    const pw = this.padded(width);
    const out = await this.run(backend, reflectPad(rgb, height, width, ph, pw), 3, ph, pw, weights);
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
// it: strength blends pixels (styles mix inside the model); keepColors moves only
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
