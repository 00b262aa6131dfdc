// The page: pick (or pass ?model=URL) an exported model, generate or stylize, show, download.
// Query parameters, all optional: model=URL (default models/red_peppers.onnx), size=WxH, seed=N,
// noise=URL (raw little-endian float32 noise at the padded size), run=1 (generate on load),
// strength=0..1 and keep-colors=1 (style models' controls).
import { attachCamera } from './camera.mjs';
import { TextureNetwork, toImageData } from './tn.mjs';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const state = { network: null, last: null, image: null };
window.tn = state; // for tests and the console

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

async function openModel(bytes, source) {
  status(`Loading ${source}…`, 'busy');
  const network = await TextureNetwork.load(bytes, source);
  const c = network.contract;
  state.network = network;
  $('model-info').textContent =
    `${c.name}: ${c.mode} model, sides multiples of ${c.sizeMultiple} from ${c.minSize} ` +
    `to ${c.maxSize} (here up to ${network.maxSide})` + (c.description ? `: ${c.description}` : '');
  $('texture-controls').hidden = c.mode !== 'texture';
  $('style-controls').hidden = c.mode !== 'style';
  $('camera-controls').hidden = c.mode !== 'style';
  for (const id of ['width', 'height', 'max-side']) $(id).max = network.maxSide;
  $('max-side').value = Math.min(Number($('max-side').value), network.maxSide);
  status(`Ready: ${c.name}`, 'ready');
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
  const width = Number($('width').value);
  const height = Number($('height').value);
  const seed = Number($('seed').value);
  status(`Generating ${width}x${height}…`, 'busy');
  const start = performance.now();
  const result = await state.network.synthesize(width, height, { seed, noise });
  show(result, `${state.network.contract.name}-${width}x${height}-seed${seed}.png`);
  const ms = Math.round(performance.now() - start);
  status(`Generated ${width}x${height} in ${ms} ms`, 'done');
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

// The style controls as TextureNetwork.stylize takes them.
function controls() {
  return { strength: Number($('strength').value), keepColors: $('keep-colors').checked };
}

async function stylize() {
  const data = await pictureData(state.image);
  status(`Stylizing ${data.width}x${data.height}…`, 'busy');
  const start = performance.now();
  const result = await state.network.stylize(data, controls());
  const stem = state.image.name.replace(/\.[^.]*$/, '');
  show(result, `${stem}-${state.network.contract.name}.png`);
  status(`Stylized ${data.width}x${data.height} in ${Math.round(performance.now() - start)} ms`, 'done');
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
attachCamera({ state, controls, show, status, guard });

guard(async () => {
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
  await openModel(new Uint8Array(await response.arrayBuffer()), url.split('/').pop());
  if (params.get('run') === '1' || params.has('noise')) {
    const noise = params.has('noise') ? await fetchBytes(params.get('noise')) : null;
    // Copy into an aligned buffer: the fetched bytes are exactly float32, little-endian.
    await generate(noise && new Float32Array(noise.slice().buffer));
  }
});
