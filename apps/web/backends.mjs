// The onnxruntime-web backends the page offers: WebGPU (the GPU, where the browser gives this page
// an adapter) and wasm (WebAssembly on the CPU, everywhere). Each backend's build of
// onnxruntime-web is imported on first use, from local files only, so a page that never runs on
// WebGPU never downloads its runtime.
const DIST = new URL('./node_modules/onnxruntime-web/dist/', import.meta.url).href;

export const BACKENDS = {
  webgpu: { label: 'WebGPU', build: 'ort.webgpu.min.mjs' },
  wasm: { label: 'wasm', build: 'ort.wasm.min.mjs' },
};

const runtimes = new Map(); // backend -> Promise of its onnxruntime-web module

function runtime(backend) {
  if (!runtimes.has(backend)) {
    runtimes.set(
      backend,
      import(DIST + BACKENDS[backend].build).then((ort) => {
        ort.env.wasm.wasmPaths = DIST; // not a CDN
        // Threads need a cross-origin isolated page (serve.py sends the COOP/COEP headers).
        ort.env.wasm.numThreads = globalThis.crossOriginIsolated
          ? Math.min(4, navigator.hardwareConcurrency || 1)
          : 1;
        return ort;
      }),
    );
  }
  return runtimes.get(backend);
}

// Whether this page can run on WebGPU: { adapter: 'vendor architecture', software } (software:
// a fallback adapter, the GPU emulated on the CPU) or { reason } (why not).
export async function probeWebGPU() {
  if (!navigator.gpu) {
    return { reason: 'this browser has no navigator.gpu (WebGPU needs https or localhost)' };
  }
  let adapter;
  try {
    adapter = await navigator.gpu.requestAdapter();
  } catch (e) {
    return { reason: `navigator.gpu.requestAdapter() failed: ${e.message ?? e}` };
  }
  if (!adapter) {
    return {
      reason:
        'the browser gives no WebGPU adapter (GPU blocked or disabled; ' +
        'Chromium on Linux needs --enable-unsafe-webgpu)',
    };
  }
  const { vendor, architecture, isFallbackAdapter } = adapter.info;
  return {
    adapter: [vendor, architecture].filter(Boolean).join(' ') || 'unnamed',
    software: Boolean(isFallbackAdapter),
  };
}

// An InferenceSession of the model on `backend` alone (no silent fall-back to another backend),
// with the onnxruntime-web module it came from: its tensors must come from that module too.
export async function openSession(bytes, backend) {
  const ort = await runtime(backend);
  const session = await ort.InferenceSession.create(bytes, {
    executionProviders: [backend],
    graphOptimizationLevel: 'all',
  });
  return { ort, session };
}
