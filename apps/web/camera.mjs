// Live stylization from a camera (getUserMedia), kept apart from the rest of the page: each frame
// is scaled so its longest side is at most `camera-side`, stylized with the page's style, strength
// and colour controls on its backend and drawn; the frames per second and the backend are shown,
// and Snapshot offers the frame on screen as a PNG. app.mjs calls attachCamera once.
import { BACKENDS } from './backends.mjs';
import { toImageData } from './tn.mjs';

const FPS_WINDOW = 10; // the frames per second shown are averaged over the last this many frames

// The camera's current picture, scaled (never enlarged) to at most `side` pixels per side.
function grab(video, side) {
  const scale = Math.min(1, side / Math.max(video.videoWidth, video.videoHeight));
  const width = Math.max(1, Math.round(video.videoWidth * scale));
  const height = Math.max(1, Math.round(video.videoHeight * scale));
  const context = new OffscreenCanvas(width, height).getContext('2d');
  context.drawImage(video, 0, 0, width, height);
  return context.getImageData(0, 0, width, height);
}

function draw(result) {
  const canvas = document.getElementById('output');
  if (canvas.width !== result.width || canvas.height !== result.height) {
    [canvas.width, canvas.height] = [result.width, result.height];
  }
  canvas.getContext('2d').putImageData(toImageData(result), 0, 0);
}

// `state`: the page's (network, last); `controls()`: {strength, keepColors, backend, style};
// `show(result, name)`: the page's display with its download link; `status(text, kind)`;
// `guard(work)`.
export function attachCamera({ state, controls, show, status, guard }) {
  const $ = (id) => document.getElementById(id);
  const video = $('camera-video');
  // input: the last frame stylized (ImageData), beside state.last, its result; for the tests.
  const camera = { stream: null, frames: 0, input: null };
  state.camera = camera;

  function stop() {
    if (!camera.stream) return;
    for (const track of camera.stream.getTracks()) track.stop();
    camera.stream = null;
    video.srcObject = null;
    $('camera').textContent = 'Camera';
    $('snapshot').disabled = true;
    status(`Camera stopped after ${camera.frames} frames`, 'done');
  }

  async function start() {
    const network = state.network;
    const side = Math.min(Number($('camera-side').value), network.maxSide);
    if (!navigator.mediaDevices?.getUserMedia) {
      throw new Error('this browser gives no camera to this page (it needs https or localhost)');
    }
    camera.stream = await navigator.mediaDevices.getUserMedia({ video: true, audio: false });
    video.srcObject = camera.stream;
    await video.play();
    $('camera').textContent = 'Stop';
    $('snapshot').disabled = false;
    status(`Camera on: ${network.contract.name}`, 'live');
    camera.frames = 0;
    const times = [];
    try {
      while (camera.stream) {
        const input = grab(video, side);
        const result = await network.stylize(input, controls());
        if (!camera.stream) break; // stopped meanwhile: keep the frame already shown
        draw(result);
        [camera.input, state.last] = [input, result];
        camera.frames += 1;
        await new Promise((resolve) => setTimeout(resolve)); // let clicks in between frames
        times.push(performance.now());
        if (times.length > FPS_WINDOW) times.shift();
        if (times.length > 1) {
          const fps = ((times.length - 1) * 1000) / (times.at(-1) - times[0]);
          const size = `${input.width}x${input.height}`;
          const on = BACKENDS[result.backend].label;
          $('camera-fps').textContent = `${fps.toFixed(1)} frames/s at ${size} on ${on}`;
        }
      }
    } finally {
      stop();
    }
  }

  $('camera').addEventListener('click', () => guard(() => (camera.stream ? stop() : start())));
  $('snapshot').addEventListener('click', () => {
    if (state.last) show(state.last, `camera-${state.network.contract.name}-${Date.now()}.png`);
  });
  return { stop };
}
