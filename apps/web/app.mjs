// The page: pick (or pass ?model=URL) an exported model, generate or stylize, show, download.
// Query parameters, all optional: model=URL (default models/red_peppers.onnx), size=WxH, seed=N,
// noise=URL (raw little-endian float32 noise at the padded size), run=1 (generate on load),
// strength=0..1 and keep-colors=1 (style models' controls), backend=webgpu|wasm (default WebGPU
// where this page gets an adapter, else wasm), tile=N (exact tiles of N pixels, where the model's
// tiling parts load from beside its URL; by default only textures over 1024 pixels are tiled),
// style=NAME or mix=NAME=W,NAME=W (models of several styles, as tn-run's --style and --mix; the
// page blends two styles at a time).
import { BACKENDS, probeWebGPU } from './backends.mjs';
import { attachCamera } from './camera.mjs';
import { TextureNetwork, parseMix, styleWeights, toImageData } from './tn.mjs';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
// rerun: the last generate or stylize, done again when the backend changes.
const state = { network: null, last: null, image: null, backend: 'wasm', rerun: null };
window.tn = state; // for tests and the console
const label = (backend) => BACKENDS[backend].label;

function status(text, kind) {
  $('status').textContent = text;
  $('status').dataset.state = kind;
}

async function guard(work) {
  try {
    await work();
  } catch (e) {
    console.error(e);
    status(String(e.message ?? e), 'error');
  }
}

// The exact-tiling parts beside a model fetched from `url`, where its contract names them and
// they are there (a model picked from a file comes alone: whole images only).
async function fetchParts(network, url) {
  const { coarse, fine } = network.contract.tiling;
  if (!coarse || !fine) return;
  const beside = (suffix) => url.replace(/\.onnx$/, suffix);
  const parts = await Promise.all([coarse, fine].map((suffix) => fetch(beside(suffix))));
  if (parts.every((r) => r.ok)) {
    const bytes = await Promise.all(parts.map(async (r) => new Uint8Array(await r.arrayBuffer())));
    network.attachParts(...bytes);
  }
}

async function openModel(bytes, source, url = null) {
  status(`Loading ${source} on ${label(state.backend)}…`, 'busy');
  const network = await TextureNetwork.load(bytes, source, state.backend);
  if (url) await fetchParts(network, url);
  const c = network.contract;
  [state.network, state.rerun] = [network, null];
  $('model-info').textContent =
    `${c.name}: ${c.mode} model, sides multiples of ${c.sizeMultiple} from ${c.minSize} ` +
    `to ${c.maxSize} (here up to ${network.maxSide}${network.parts ? ', in exact tiles' : ''})` +
    (c.description ? `: ${c.description}` : '');
  $('texture-controls').hidden = c.mode !== 'texture';
  $('style-controls').hidden = c.mode !== 'style';
  $('camera-controls').hidden = c.mode !== 'style';
  for (const id of ['width', 'height', 'max-side']) $(id).max = network.maxSide;
  // The style pickers: the first style, blended with the second by 0 (models of several styles).
  $('style-choice').hidden = c.styles.length < 2;
  for (const [id, selected] of [['style', 0], ['style-mix', 1]]) {
    const options = c.styles.map((name, i) => new Option(name, name, false, i === selected));
    $(id).replaceChildren(...options);
  }
  setMix(0);
  $('max-side').value = Math.min(Number($('max-side').value), network.maxSide);
  status(`Ready: ${c.name} on ${label(state.backend)}`, 'ready');
}

// The switch: WebGPU is offered where the browser gives this page an adapter, else the page says
// why not. The starting backend is ?backend=, else WebGPU on a real GPU, else wasm (a software
// adapter emulates a GPU on the CPU, far slower than wasm running there directly).
async function chooseBackend() {
  const webgpu = await probeWebGPU();
  $('backend-webgpu-label').hidden = !webgpu.adapter;
  const note = webgpu.software ? ' (software, so wasm by default)' : '';
  $('backend-info').textContent = webgpu.adapter
    ? `WebGPU adapter: ${webgpu.adapter}${note}`
    : `WebGPU unavailable: ${webgpu.reason}`;
  const fastest = webgpu.adapter && !webgpu.software ? 'webgpu' : 'wasm';
  const wanted = params.get('backend') ?? fastest;
  if (!Object.hasOwn(BACKENDS, wanted)) {
    throw new Error(`backend=${wanted} is unknown: choose ${Object.keys(BACKENDS).join(' or ')}`);
  }
  if (wanted === 'webgpu' && !webgpu.adapter) {
    throw new Error(`backend=webgpu: WebGPU unavailable: ${webgpu.reason}`);
  }
  state.backend = wanted;
  document.querySelector(`input[name=backend][value=${wanted}]`).checked = true;
}

// The chosen backend, with the model's session on it opened first (once per backend), so the
// time a run reports is the run's own.
async function backendReady() {
  const backend = state.backend;
  if (!state.network.sessions.has(backend)) {
    status(`Opening ${state.network.contract.name} on ${label(backend)}…`, 'busy');
  }
  await state.network.session(backend);
  return backend;
}

function show(result, name) {
  state.last = result;
  const canvas = $('output');
  canvas.width = result.width;
  canvas.height = result.height;
  canvas.getContext('2d').putImageData(toImageData(result), 0, 0);
  canvas.toBlob((blob) => {
    const link = $('download');
    if (link.href.startsWith('blob:')) URL.revokeObjectURL(link.href);
    link.href = URL.createObjectURL(blob);
    link.download = name;
    link.hidden = false;
  }, 'image/png');
}

async function generate(noise = null) {
  state.rerun = () => generate(noise);
  const width = Number($('width').value);
  const height = Number($('height').value);
  const seed = Number($('seed').value);
  const backend = await backendReady();
  status(`Generating ${width}x${height} on ${label(backend)}…`, 'busy');
  const start = performance.now();
  const tile = params.has('tile') ? Number(params.get('tile')) : null;
  const result = await state.network.synthesize(width, height, { seed, noise, backend, tile });
  show(result, `${state.network.contract.name}-${width}x${height}-seed${seed}.png`);
  const ms = Math.round(performance.now() - start);
  const tiles = result.tiles ? ` in ${result.tiles} exact tiles` : '';
  status(`Generated ${width}x${height}${tiles} on ${label(result.backend)} in ${ms} ms`, 'done');
}

// The chosen picture scaled (never enlarged) so its longest side is at most `max-side`.
async function pictureData(file) {
  const bitmap = await createImageBitmap(file, { imageOrientation: 'from-image' });
  const limit = Math.min(Number($('max-side').value), state.network.maxSide);
  const scale = Math.min(1, limit / Math.max(bitmap.width, bitmap.height));
  const width = Math.max(1, Math.round(bitmap.width * scale));
  const height = Math.max(1, Math.round(bitmap.height * scale));
  const canvas = new OffscreenCanvas(width, height);
  const context = canvas.getContext('2d');
  context.drawImage(bitmap, 0, 0, width, height);
  return context.getImageData(0, 0, width, height);
}

function setMix(t) {
  $('mix').value = t;
  $('mix-value').textContent = Number($('mix').value).toFixed(2);
}

// The style pickers' weights: 1 - mix for the style picked, mix for the one blended in (the
// same style twice is that style alone); null for a model of one style.
function styleChoice() {
  const names = state.network.contract.styles;
  if (!names.length) return null;
  const weights = names.map(() => 0);
  const mix = Number($('mix').value);
  weights[names.indexOf($('style').value)] += 1 - mix;
  weights[names.indexOf($('style-mix').value)] += mix;
  return weights;
}

// ?style= or ?mix= onto the pickers, checked as tn-run checks --style and --mix.
function chooseStyle(style, mix) {
  const { contract, source } = state.network;
  if (style !== null && mix !== null) throw new Error('give style= or mix=, not both');
  const choice = mix === null ? style : parseMix(mix);
  styleWeights(contract, choice, source);
  const parts = typeof choice === 'string' ? [[choice, 1]] : Object.entries(choice);
  const used = parts.filter(([, weight]) => weight > 0);
  if (used.length > 2) throw new Error(`mix=${mix}: the page blends two styles at a time`);
  const [[picked, a], [blended, b] = [picked, 0]] = used; // one style: blended with itself by 0
  [$('style').value, $('style-mix').value] = [picked, blended];
  setMix(b / (a + b));
}

// The style controls and the backend, as TextureNetwork.stylize takes them.
function controls() {
  const strength = Number($('strength').value);
  const style = styleChoice();
  return { strength, keepColors: $('keep-colors').checked, backend: state.backend, style };
}

async function stylize() {
  state.rerun = stylize;
  const data = await pictureData(state.image);
  const backend = await backendReady();
  const size = `${data.width}x${data.height}`;
  status(`Stylizing ${size} on ${label(backend)}…`, 'busy');
  const start = performance.now();
  const result = await state.network.stylize(data, { ...controls(), backend });
  const stem = state.image.name.replace(/\.[^.]*$/, '');
  show(result, `${stem}-${state.network.contract.name}.png`);
  const ms = Math.round(performance.now() - start);
  status(`Stylized ${size} on ${label(result.backend)} in ${ms} ms`, 'done');
}

async function fetchBytes(url) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
  return new Uint8Array(await response.arrayBuffer());
}

$('model-file').addEventListener('change', (event) =>
  guard(async () => {
    const file = event.target.files[0];
    if (file) await openModel(new Uint8Array(await file.arrayBuffer()), file.name);
  }),
);
$('generate').addEventListener('click', () => guard(() => generate()));
$('image-file').addEventListener('change', (event) => {
  state.image = event.target.files[0] ?? null;
  $('stylize').disabled = !state.image;
});
$('stylize').addEventListener('click', () => guard(stylize));
$('strength').addEventListener('input', () => {
  $('strength-value').textContent = $('strength').value;
});
$('mix').addEventListener('input', () => setMix($('mix').value));
attachCamera({ state, controls, show, status, guard });
// A live camera takes the new backend from its next frame on; otherwise the last run is redone.
for (const radio of document.querySelectorAll('input[name=backend]')) {
  radio.addEventListener('change', () =>
    guard(async () => {
      state.backend = radio.value;
      if (!state.network || state.camera.stream) return;
      if (state.rerun) await state.rerun();
      else {
        await backendReady();
        status(`Ready: ${state.network.contract.name} on ${label(state.backend)}`, 'ready');
      }
    }),
  );
}

guard(async () => {
  await chooseBackend();
  const size = params.get('size')?.match(/^(\d+)x(\d+)$/);
  if (size) [$('width').value, $('height').value] = [size[1], size[2]];
  if (params.has('seed')) $('seed').value = params.get('seed');
  if (params.has('strength')) $('strength').value = params.get('strength');
  $('strength-value').textContent = $('strength').value;
  $('keep-colors').checked = params.get('keep-colors') === '1';
  const url = params.get('model') ?? 'models/red_peppers.onnx';
  const response = await fetch(url);
  if (!response.ok) {
    if (params.has('model')) throw new Error(`${url}: HTTP ${response.status}`);
    status('Choose an exported .onnx model (tn-export --format onnx).', 'idle');
    return;
  }
  await openModel(new Uint8Array(await response.arrayBuffer()), url.split('/').pop(), url);
  if (params.has('style') || params.has('mix')) chooseStyle(params.get('style'), params.get('mix'));
  if (params.get('run') === '1' || params.has('noise')) {
    const noise = params.has('noise') ? await fetchBytes(params.get('noise')) : null;
    // Copy into an aligned buffer: the fetched bytes are exactly float32, little-endian.
    await generate(noise && new Float32Array(noise.slice().buffer));
  }
});
