// End-to-end: open the page in headless Chromium (the system's, through playwright-core), wait
// for it to generate (or, given IMAGE, choose that image and click Stylize; given --camera, start
// Chromium's fake camera, let it stylize a few frames, take a snapshot and stop), and save what
// it made: out.bin (float32 planar RGB, what the page shows), camera.bin (with --camera: the
// last camera frame it stylized, RGBA bytes), screenshot.png and summary.json in OUT_DIR. Fails
// if any request leaves 127.0.0.1 or the page reports an error.
//   node tests/e2e.mjs PAGE_URL OUT_DIR [IMAGE | --camera]
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const [url, outDir, image] = process.argv.slice(2);
if (!url || !outDir) {
  console.error('usage: node tests/e2e.mjs PAGE_URL OUT_DIR [IMAGE | --camera]');
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
  ],
});
const summary = { url, requests: [], foreign: [], console: [], errors: [] };
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
  await page.goto(url);
  if (image === '--camera') {
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
  summary.status = await page.textContent('#status');
  summary.state = await page.getAttribute('#status', 'data-state');
  summary.crossOriginIsolated = await page.evaluate(() => globalThis.crossOriginIsolated);
  await page.screenshot({ path: join(outDir, 'screenshot.png'), fullPage: true });
  if (summary.state === 'done') {
    const result = await page.evaluate(() => {
      const { width, height, rgb } = window.tn.last;
      const bytes = new Uint8Array(rgb.buffer, rgb.byteOffset, rgb.byteLength);
      let binary = '';
      for (let i = 0; i < bytes.length; i += 0x8000) {
        binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
      }
      return { width, height, base64: btoa(binary) };
    });
    summary.width = result.width;
    summary.height = result.height;
    await page.waitForSelector('#download:not([hidden])');
    summary.download = await page.evaluate(async () => {
      const link = document.getElementById('download');
      const bitmap = await createImageBitmap(await (await fetch(link.href)).blob());
      return { name: link.download, width: bitmap.width, height: bitmap.height };
    });
    await writeFile(join(outDir, 'out.bin'), Buffer.from(result.base64, 'base64'));
    if (image === '--camera') {
      const frame = await page.evaluate(() => {
        const { width, height, data } = window.tn.camera.input;
        let binary = '';
        for (let i = 0; i < data.length; i += 0x8000) {
          binary += String.fromCharCode(...data.subarray(i, i + 0x8000));
        }
        return { width, height, frames: window.tn.camera.frames, base64: btoa(binary) };
      });
      summary.camera = { width: frame.width, height: frame.height, frames: frame.frames };
      await writeFile(join(outDir, 'camera.bin'), Buffer.from(frame.base64, 'base64'));
    }
  }
} finally {
  await browser.close();
  summary.seconds = (Date.now() - started) / 1000;
  await writeFile(join(outDir, 'summary.json'), JSON.stringify(summary, null, 2));
}
const ok = summary.state === 'done' && summary.foreign.length === 0 && summary.errors.length === 0;
console.log(`${ok ? 'ok' : 'FAILED'}: ${summary.status} (${summary.seconds} s)`);
process.exit(ok ? 0 : 1);
