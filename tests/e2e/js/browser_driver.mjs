// A headless Debian Chromium driven by playwright-core, commanded by the Python tests over
// stdin/stdout: one JSON request per line {"id", "method", "params"}, one JSON answer per
// line {"id", "result"} or {"id", "error"}. Nothing is downloaded: Chromium is
// /usr/bin/chromium (or $CHROMIUM), playwright-core comes from viewer/node_modules.
//
// The browser closes when stdin closes (the Python side exits or dies), so no Chromium
// outlives its test session.
import { createInterface } from 'node:readline';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const VIEWER = resolve(dirname(fileURLToPath(import.meta.url)), '../../../viewer');
const { chromium } = await import(pathToFileURL(join(VIEWER, 'node_modules/playwright-core/index.mjs')).href);

const FLAGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--disable-dev-shm-usage',
];

// A plain launch starts Chromium on a fresh, empty profile folder that playwright makes
// and removes; each context (one per test page) then has its own cookies and storage.
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: FLAGS,
  timeout: 60000,
});

const contexts = new Map();
let nextContext = 1;

function multipartPartHeaders(body) {
  // The headers of the first part of a multipart body: what OHIF reads the transfer syntax from.
  const head = body.subarray(0, Math.min(body.length, 2048)).toString('latin1');
  const start = head.indexOf('\r\n');
  const end = head.indexOf('\r\n\r\n', start);
  if (start < 0 || end < 0) return {};
  const headers = {};
  for (const line of head.slice(start + 2, end).split('\r\n')) {
    const i = line.indexOf(':');
    if (i > 0) headers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
  }
  return headers;
}

async function newContext({ viewport = { width: 1280, height: 900 }, recordBodiesMatching = '/frames/',
                            skipTours = true } = {}) {
  const context = await browser.newContext({ viewport, ignoreHTTPSErrors: false });
  if (skipTours) {
    // OHIF's first-visit onboarding tour covers the viewer and catches clicks: mark it seen.
    await context.addInitScript(() => {
      try {
        if (!localStorage.getItem('shownTours')) localStorage.setItem('shownTours', '["basicViewerTour"]');
      } catch (error) { /* no storage on this origin */ }
    });
  }
  const page = await context.newPage();
  const state = { context, page, network: [], console: [], pending: new Set() };
  watch(state, recordBodiesMatching);
  const id = nextContext++;
  contexts.set(id, state);
  return { context: id };
}

const recordBodiesMatchingDefault = '/frames/';

// Record the page's console errors and every finished or failed request.
function watch(state, recordBodiesMatching) {
  const page = state.page;
  const started = Date.now();
  page.on('console', (message) => {
    if (['error', 'warning'].includes(message.type())) {
      state.console.push({ type: message.type(), text: message.text().slice(0, 500) });
    }
  });
  page.on('pageerror', (error) => state.console.push({ type: 'pageerror', text: String(error).slice(0, 500) }));
  page.on('requestfinished', (request) => {
    const task = (async () => {
      const response = await request.response().catch(() => null);
      if (!response) return;
      const url = request.url();
      const entry = {
        url, method: request.method(), status: response.status(), type: request.resourceType(),
        at: Date.now() - started,
        accept: (await request.allHeaders()).accept || '',
        authorization: (await request.allHeaders()).authorization || "",
        contentType: (await response.allHeaders())['content-type'] || '',
        contentEncoding: (await response.allHeaders())['content-encoding'] || '',
        contentLength: Number((await response.allHeaders())['content-length'] || -1),
      };
      if (recordBodiesMatching && url.includes(recordBodiesMatching)) {
        try {
          const body = await response.body();
          entry.bytes = body.length;
          entry.part = multipartPartHeaders(body);
        } catch (error) {
          entry.bodyError = String(error);
        }
      }
      state.network.push(entry);
    })().catch(() => { /* the page or context closed meanwhile */ });
    state.pending.add(task);
    task.finally(() => state.pending.delete(task));
  });
  page.on('requestfailed', (request) => {
    state.network.push({
      url: request.url(), method: request.method(), status: 0, type: request.resourceType(),
      at: Date.now() - started, failure: request.failure()?.errorText || 'failed',
    });
  });
}

function get(id) {
  const state = contexts.get(id);
  if (!state) throw new Error(`no context ${id}`);
  return state;
}

// Runs in the page: the viewport canvases and how many of their pixels are not background.
function canvasStats() {
  const out = [];
  for (const canvas of document.querySelectorAll('canvas.cornerstone-canvas, .viewport-element canvas')) {
    if (!canvas.width || !canvas.height) continue;
    let data;
    try {
      data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
    } catch (error) {
      out.push({ error: String(error) });
      continue;
    }
    let lit = 0, sum = 0, sumSq = 0;
    const n = data.length / 4;
    for (let i = 0; i < data.length; i += 4) {
      const v = (data[i] + data[i + 1] + data[i + 2]) / 3;
      if (v > 8) lit++;
      sum += v; sumSq += v * v;
    }
    const mean = sum / n;
    out.push({ width: canvas.width, height: canvas.height, lit, litFraction: lit / n, mean,
               std: Math.sqrt(Math.max(0, sumSq / n - mean * mean)) });
  }
  return out;
}

const methods = {
  newContext,
  async closeContext({ context }) {
    const state = get(context);
    await Promise.allSettled([...state.pending]);
    if (state.popupOf) {
      await state.page.close();  // a popup: its context belongs to the page that opened it
    } else {
      await state.context.close();
    }
    contexts.delete(context);
    return true;
  },
  // Click something that opens a new tab; the tab becomes a page of its own (same context).
  async clickPopup({ context, selector, timeout = 30000 }) {
    const state = get(context);
    const [popup] = await Promise.all([
      state.context.waitForEvent('page', { timeout }),
      state.page.click(selector, { timeout }),
    ]);
    const id = nextContext++;
    contexts.set(id, { context: state.context, page: popup, network: [], console: [], pending: new Set(),
                       popupOf: context });
    watch(contexts.get(id), recordBodiesMatchingDefault);
    return { context: id };
  },
  async goto({ context, url, waitUntil = 'domcontentloaded', timeout = 30000 }) {
    const state = get(context);
    const t0 = Date.now();
    // Chromium turns an error status with an empty body (the gate's 403) into a navigation
    // error: the document's response still tells the status.
    const documentResponse = state.page.waitForResponse(
      (r) => r.request().isNavigationRequest() && r.request().frame() === state.page.mainFrame(), { timeout });
    documentResponse.catch(() => null);
    try {
      const response = await state.page.goto(url, { waitUntil, timeout });
      return { status: response ? response.status() : 0, ms: Date.now() - t0, url: state.page.url() };
    } catch (error) {
      const response = await documentResponse.catch(() => null);
      if (!response) throw error;
      return { status: response.status(), ms: Date.now() - t0, url: state.page.url(), error: String(error).split('\n')[0] };
    }
  },
  async url({ context }) {
    return get(context).page.url();
  },
  // Wait until a viewport canvas shows an image (enough lit pixels with some contrast).
  async waitForImage({ context, timeout = 30000, minLitFraction = 0.02, since = null }) {
    const state = get(context);
    const t0 = since || Date.now();
    const deadline = Date.now() + timeout;
    let last = [];
    while (Date.now() < deadline) {
      last = await state.page.evaluate(canvasStats).catch(() => []);
      if (last.some((c) => c.litFraction >= minLitFraction && c.std > 2)) {
        return { rendered: true, ms: Date.now() - t0, canvases: last };
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    return { rendered: false, ms: Date.now() - t0, canvases: last };
  },
  async canvasStats({ context }) {
    return get(context).page.evaluate(canvasStats);
  },
  async evaluate({ context, expression, arg = null }) {
    // expression: the source of a function taking one argument.
    const fn = eval(`(${expression})`);
    return get(context).page.evaluate(fn, arg);
  },
  async waitForFunction({ context, expression, arg = null, timeout = 30000, polling = 100 }) {
    const fn = eval(`(${expression})`);
    const handle = await get(context).page.waitForFunction(fn, arg, { timeout, polling });
    return handle.jsonValue();
  },
  async waitForSelector({ context, selector, state = 'visible', timeout = 30000 }) {
    await get(context).page.waitForSelector(selector, { state, timeout });
    return true;
  },
  async waitForURL({ context, pattern, timeout = 30000 }) {
    const page = get(context).page;
    await page.waitForURL((u) => u.href.includes(pattern), { timeout });
    return page.url();
  },
  async fill({ context, selector, value }) {
    await get(context).page.fill(selector, value);
    return true;
  },
  async click({ context, selector, timeout = 30000 }) {
    await get(context).page.click(selector, { timeout });
    return true;
  },
  async dblclick({ context, selector, timeout = 30000 }) {
    await get(context).page.dblclick(selector, { timeout });
    return true;
  },
  async press({ context, key, times = 1, delay = 0 }) {
    const page = get(context).page;
    for (let i = 0; i < times; i++) {
      await page.keyboard.press(key);
      if (delay) await new Promise((r) => setTimeout(r, delay));
    }
    return true;
  },
  async text({ context, selector = 'body' }) {
    return get(context).page.innerText(selector);
  },
  async screenshot({ context, path, fullPage = false }) {
    const page = get(context).page;
    await page.bringToFront();  // a tab opened by another (a popup) renders only when in front
    await page.screenshot({ path, fullPage });
    return path;
  },
  async network({ context, clear = false }) {
    const state = get(context);
    await Promise.allSettled([...state.pending]);
    const entries = state.network.slice();
    if (clear) state.network.length = 0;
    return entries;
  },
  async console({ context }) {
    return get(context).console.slice();
  },
  async cookies({ context }) {
    return get(context).context.cookies();
  },
  async addCookies({ context, cookies }) {
    await get(context).context.addCookies(cookies);
    return true;
  },
  // Serve a replacement body for URLs containing `pattern` (e.g. another app-config.js).
  async route({ context, pattern, body, contentType = 'application/javascript' }) {
    await get(context).context.route((u) => u.href.includes(pattern),
      (route) => route.fulfill({ status: 200, body, contentType }));
    return true;
  },
  // Answer requests below `prefix` (another origin, e.g. a bare Orthanc) with what `target`
  // serves: the same OHIF files in front of a different DICOMweb server.
  async proxy({ context, prefix, target }) {
    const state = get(context);
    await state.context.route((u) => u.href.startsWith(prefix), async (route) => {
      const url = target + route.request().url().slice(prefix.length);
      const response = await state.context.request.get(url, { failOnStatusCode: false });
      await route.fulfill({ response });
    });
    return true;
  },
  // Network conditions of the page (Chrome DevTools Protocol): throughput in Mbit/s, latency.
  async throttle({ context, downloadMbit, uploadMbit = null, latencyMs = 0 }) {
    const state = get(context);
    const cdp = await state.context.newCDPSession(state.page);
    await cdp.send('Network.enable');
    await cdp.send('Network.emulateNetworkConditions', {
      offline: false, latency: latencyMs,
      downloadThroughput: downloadMbit ? downloadMbit * 125000 : -1,
      uploadThroughput: (uploadMbit || downloadMbit) ? (uploadMbit || downloadMbit) * 125000 : -1,
    });
    return true;
  },
  async request({ context, url, headers = {} }) {
    // A request with the context's cookies, as the page's own fetch would send.
    const response = await get(context).context.request.get(url, { headers, failOnStatusCode: false });
    return { status: response.status(), contentType: response.headers()['content-type'] || '',
             body: (await response.body()).toString('utf8').slice(0, 4000) };
  },
  async version() {
    return browser.version();
  },
  // A Chrome trace of the page (for benchmarks' "where does the time go"), written to path.
  async startTracing({ context, path, categories = null }) {
    await browser.startTracing(get(context).page, { path, screenshots: false,
      categories: categories || ['devtools.timeline', 'v8', 'v8.execute', 'disabled-by-default-devtools.timeline',
                                 'blink.user_timing', 'loading'] });
    return true;
  },
  async stopTracing() {
    await browser.stopTracing();
    return true;
  },
};

async function shutdown() {
  try {
    await browser.close();
  } finally {
    process.exit(0);
  }
}

// A late event of a closed page must not take the whole driver (and the test session) down.
process.on('unhandledRejection', (reason) => {
  process.stderr.write(`unhandled rejection: ${reason && reason.stack || reason}\n`);
});

const lines = createInterface({ input: process.stdin });
lines.on('line', async (line) => {
  let request;
  try {
    request = JSON.parse(line);
  } catch {
    return;
  }
  const { id, method, params } = request;
  try {
    if (!methods[method]) throw new Error(`unknown method ${method}`);
    const result = await methods[method](params || {});
    process.stdout.write(JSON.stringify({ id, result: result === undefined ? null : result }) + '\n');
  } catch (error) {
    process.stdout.write(JSON.stringify({ id, error: String(error && error.stack || error) }) + '\n');
  }
});
lines.on('close', shutdown);
process.on('SIGTERM', shutdown);
process.stdout.write(JSON.stringify({ id: 0, result: { ready: true, version: browser.version() } }) + '\n');
