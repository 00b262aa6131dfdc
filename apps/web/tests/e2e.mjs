// End-to-end: open the page in headless Chromium (the system's, through playwright-core), wait
// for it to generate (or, given IMAGE, choose that image and click Stylize; given --camera, start
// Chromium's fake camera, let it stylize a few frames, take a snapshot and stop), and save what
// it made: out.bin (float32 planar RGB, what the page shows), camera.bin (with --camera: the
// last camera frame it stylized, RGBA bytes), screenshot.png and summary.json in OUT_DIR. Fails
// if any request leaves 127.0.0.1 or the page reports an error.
// --webgpu starts Chromium with WebGPU on its software adapter (SwiftShader); --switch then picks
// every other backend the page's switch offers, in turn, and saves each re-run as
// out-BACKEND.bin (summary.runs: the backend and status of every run, the first one included).
// summary.styles: the style picker's names, where the page shows it (models of several styles).
//   node tests/e2e.mjs PAGE_URL OUT_DIR [IMAGE | --camera] [--webgpu] [--switch]
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const [url, outDir, ...rest] = process.argv.slice(2);
const options = new Set(rest.filter((arg) => arg.startsWith('--')));
const camera = options.has('--camera');
const image = rest.find((arg) => !arg.startsWith('--'));
if (!url || !outDir) {
  console.error(
    'usage: node tests/e2e.mjs PAGE_URL OUT_DIR [IMAGE | --camera] [--webgpu] [--switch]',
  );
  process.exit(2);
}
const origin = new URL(url).origin;
const started = Date.now();
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  args: [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    // A generated test picture as the camera, granted without asking.
    '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream',
    // With --disable-gpu, this alone gives navigator.gpu Dawn's SwiftShader adapter.
    ...(options.has('--webgpu') ? ['--enable-unsafe-webgpu'] : []),
  ],
});
const summary = { url, requests: [], foreign: [], console: [], errors: [], runs: [] };

// The page's last result (what it shows: float32 planar RGB) written to OUT_DIR/name.
async function saveLast(page, name) {
  const result = await page.evaluate(() => {
    const { width, height, backend, rgb } = window.tn.last;
    return { width, height, backend, base64: base64(rgb) };
  });
  await writeFile(join(outDir, name), Buffer.from(result.base64, 'base64'));
  return result;
}
try {
  const page = await browser.newPage({ viewport: { width: 900, height: 900 } });
  page.on('request', (request) => {
    const target = request.url();
    summary.requests.push(target);
    if (!target.startsWith(origin) && !target.startsWith('blob:') && !target.startsWith('data:')) {
      summary.foreign.push(target);
    }
  });
  page.on('console', (message) => summary.console.push(`${message.type()}: ${message.text()}`));
  page.on('pageerror', (error) => summary.errors.push(String(error)));
  const settled = (states) =>
    page.waitForFunction(
      (wanted) => wanted.includes(document.getElementById('status')?.dataset.state),
      states,
      { timeout: 120_000 },
    );
  // Typed arrays out of the page as base64 (page.evaluate passes JSON).
  await page.addInitScript(() => {
    window.base64 = (array) => {
      const bytes = new Uint8Array(array.buffer, array.byteOffset, array.byteLength);
      let binary = '';
      for (let i = 0; i < bytes.length; i += 0x8000) {
        binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
      }
      return btoa(binary);
    };
  });
  await page.goto(url);
  if (camera) {
    await settled(['ready', 'error']);
    // Clicks while frames run: the page is busy, so allow long and wait for no navigation.
    const click = (selector) => page.click(selector, { timeout: 120_000, noWaitAfter: true });
    await click('#camera');
    await page.waitForFunction(
      () =>
        window.tn.camera.frames >= 3 || document.getElementById('status').dataset.state === 'error',
      null,
      { timeout: 120_000 },
    );
    if ((await page.getAttribute('#status', 'data-state')) === 'live') {
      summary.fps = await page.textContent('#camera-fps');
      await click('#snapshot');
      await click('#camera'); // stop: the frame shown stays
    }
  } else if (image) {
    await settled(['ready', 'error']);
    await page.setInputFiles('#image-file', image);
    await page.click('#stylize');
  }
  await settled(['done', 'error']);
  const note = async () => {
    summary.status = await page.textContent('#status');
    summary.state = await page.getAttribute('#status', 'data-state');
  };
  await note();
  summary.crossOriginIsolated = await page.evaluate(() => globalThis.crossOriginIsolated);
  summary.styles = await page.$$eval('#style-choice:not([hidden]) #style option', (options) =>
    options.map((option) => option.value),
  );
  summary.backendInfo = await page.textContent('#backend-info');
  summary.offered = await page.$$eval('input[name=backend]', (radios) =>
    radios.filter((radio) => !radio.closest('label').hidden).map((radio) => radio.value),
  );
  if (summary.state === 'done') {
    const result = await saveLast(page, 'out.bin');
    summary.width = result.width;
    summary.height = result.height;
    summary.runs.push({ backend: result.backend, status: summary.status });
    await page.waitForSelector('#download:not([hidden])');
    summary.download = await page.evaluate(async () => {
      const link = document.getElementById('download');
      const bitmap = await createImageBitmap(await (await fetch(link.href)).blob());
      return { name: link.download, width: bitmap.width, height: bitmap.height };
    });
    if (camera) {
      const frame = await page.evaluate(() => {
        const { width, height, data } = window.tn.camera.input;
        return { width, height, frames: window.tn.camera.frames, base64: base64(data) };
      });
      summary.camera = { width: frame.width, height: frame.height, frames: frame.frames };
      await writeFile(join(outDir, 'camera.bin'), Buffer.from(frame.base64, 'base64'));
    }
    const others = summary.offered.filter((backend) => backend !== result.backend);
    for (const backend of options.has('--switch') ? others : []) {
      await page.check(`input[name=backend][value=${backend}]`);
      await page.waitForFunction(
        (wanted) => {
          const state = document.getElementById('status').dataset.state;
          return state === 'error' || (state === 'done' && window.tn.last.backend === wanted);
        },
        backend,
        { timeout: 240_000 }, // WebGPU in software on a busy CPU: tens of seconds at 64x64
      );
      await note();
      if (summary.state !== 'done') break;
      await saveLast(page, `out-${backend}.bin`);
      summary.runs.push({ backend, status: summary.status });
    }
  }
  await page.screenshot({ path: join(outDir, 'screenshot.png'), fullPage: true });
} finally {
  await browser.close();
  summary.seconds = (Date.now() - started) / 1000;
  await writeFile(join(outDir, 'summary.json'), JSON.stringify(summary, null, 2));
}
const ok = summary.state === 'done' && summary.foreign.length === 0 && summary.errors.length === 0;
console.log(`${ok ? 'ok' : 'FAILED'}: ${summary.status} (${summary.seconds} s)`);
process.exit(ok ? 0 : 1);
