// Checks the built site (apps/docs/site, from `npm run docs`) in a real browser: serves it on
// 127.0.0.1 and drives Chromium through playwright-core. Every HTML page reachable from index.html
// is loaded; a page fails on a console error, an uncaught exception, a failed or non-2xx request, or
// a sidebar that never renders. Every same-origin link is checked: its page or file must exist and
// its #fragment must be an id on the target page. The search box must find a symbol and a guide
// (SEARCHES), and screenshots of the index, a guide, an API page and the search box go to
// apps/docs/test-artifacts/ (with failures.txt; the folder ignores itself for git).
//
// Chromium: CHROMIUM_PATH, else /usr/bin/chromium (Debian: `apt-get install -y chromium`).
// SKIP_BROWSER_TEST=1 skips the whole check.
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const docs = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const site = path.join(docs, 'site');
const artifacts = path.join(docs, 'test-artifacts');
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
/** Pages loaded at once (each is a tab of the one browser). */
const CONCURRENCY = 2;
const PAGE_TIMEOUT_MS = 30 * 1000;
const TOTAL_TIMEOUT_MS = 20 * 60 * 1000;
/** What the search box must find: a query, and the text (`name`) of a result under `under/`. */
const SEARCHES = [
  { query: 'fromPretrained', name: 'fromPretrained', under: 'functions', screenshot: 'api' },
  { query: 'defineKernel', name: 'defineKernel', under: 'functions' },
  { query: 'Composing', name: 'Composing your own hybrid', under: 'documents', screenshot: 'guide' },
];
const CONTENT_TYPES = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg',
  '.gif': 'image/gif',
  '.webp': 'image/webp',
  '.ico': 'image/x-icon',
  '.woff': 'font/woff',
  '.woff2': 'font/woff2',
  '.wasm': 'application/wasm',
  '.txt': 'text/plain; charset=utf-8',
  '.md': 'text/markdown; charset=utf-8',
};

if (process.env.SKIP_BROWSER_TEST === '1') {
  console.log('browser test skipped (SKIP_BROWSER_TEST=1)');
  process.exit(0);
}

/** Ends the run: the problems found, or why the check could not run. */
function fail(message) {
  console.error(`FAIL ${message}`);
  process.exit(1);
}

if (!fs.existsSync(path.join(site, 'index.html'))) {
  fail(`${path.relative(process.cwd(), site)}/index.html does not exist: build the site first (npm run docs)`);
}
try {
  fs.accessSync(CHROMIUM, fs.constants.X_OK);
} catch {
  fail(
    `no Chromium at ${CHROMIUM}. Install it (Debian/Ubuntu: apt-get install -y chromium) or set CHROMIUM_PATH ` +
      `to a Chromium or Chrome binary; SKIP_BROWSER_TEST=1 skips this test.`,
  );
}
let chromium;
try {
  ({ chromium } = await import('playwright-core'));
} catch (e) {
  fail(`cannot load playwright-core (a devDependency of apps/docs; run npm ci at the root): ${e.message}`);
}

// ---- the static server ----

/** The file under `site` that a request path names, or null when the path leaves the site. */
function fileFor(pathname) {
  let decoded;
  try {
    decoded = decodeURIComponent(pathname);
  } catch {
    return null;
  }
  if (decoded.includes('\0')) return null;
  const file = path.resolve(site, `.${decoded.endsWith('/') ? `${decoded}index.html` : decoded}`);
  return file === site || file.startsWith(site + path.sep) ? file : null;
}

/** Serves `site`: GET and HEAD, 404 for what is missing, 403 for what lies outside it (symlinks too). */
async function serve(req, res) {
  const send = (status, body) => {
    res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8' });
    res.end(req.method === 'HEAD' ? undefined : body);
  };
  if (req.method !== 'GET' && req.method !== 'HEAD') return send(405, 'method not allowed\n');
  const { pathname } = new URL(req.url, 'http://127.0.0.1');
  let file = fileFor(pathname);
  if (file === null) return send(403, 'forbidden\n');
  try {
    if ((await fs.promises.stat(file)).isDirectory()) file = path.join(file, 'index.html');
    const real = await fs.promises.realpath(file);
    const realSite = await fs.promises.realpath(site);
    if (!real.startsWith(realSite + path.sep)) return send(403, 'forbidden\n');
    const body = await fs.promises.readFile(real);
    res.writeHead(200, {
      'content-type': CONTENT_TYPES[path.extname(real).toLowerCase()] ?? 'application/octet-stream',
      'content-length': body.length,
      'cache-control': 'no-store',
    });
    res.end(req.method === 'HEAD' ? undefined : body);
  } catch (e) {
    if (e.code === 'ENOENT' || e.code === 'ENOTDIR') return send(404, 'not found\n');
    send(500, `${e.message}\n`);
  }
}

async function startServer() {
  const server = http.createServer((req, res) => {
    serve(req, res).catch((e) => {
      res.statusCode = 500;
      res.end(String(e));
    });
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  return server;
}

/** The server's own contract: pages with their type, 404 for a missing file, nothing from outside. */
async function checkServer(origin) {
  const problems = [];
  const expect = async (p, ok, what) => {
    const res = await fetch(origin + p, { method: 'HEAD' });
    if (!ok(res)) problems.push(`server: ${p} answered ${res.status} ${res.headers.get('content-type')}, wanted ${what}`);
  };
  await expect('/index.html', (r) => r.status === 200 && r.headers.get('content-type').startsWith('text/html'), '200 text/html');
  await expect(
    '/assets/main.js',
    (r) => r.status === 200 && r.headers.get('content-type').startsWith('text/javascript'),
    '200 text/javascript',
  );
  await expect('/no-such-page.html', (r) => r.status === 404, '404');
  for (const escaping of ['/..%2fpackage.json', '/%2e%2e/package.json', '/assets/..%2f..%2fpackage.json']) {
    await expect(escaping, (r) => r.status === 403 || r.status === 404, '403 or 404');
  }
  return problems;
}

// ---- the crawl ----

/** A same-origin URL's key: its path, `/` meaning `/index.html`. */
function keyOf(url) {
  return url.pathname.endsWith('/') ? `${url.pathname}index.html` : url.pathname;
}

const isPage = (key) => key.endsWith('.html');

/** True once typedoc's script has shown the page (it hides the body until then) and built the sidebar. */
function pageReady() {
  const nav = document.getElementById('tsd-nav-container');
  return document.body.style.display !== 'none' && (nav === null || nav.childElementCount > 0);
}

/**
 * Opens a tab whose console errors, uncaught exceptions and failed requests go to `sink.problems`
 * while `sink.problems` is an array (between pages it is null and late events are dropped).
 */
async function newTab(context, origin) {
  const page = await context.newPage();
  const sink = { problems: null };
  const note = (message) => sink.problems?.push(message);
  // Chromium asks every origin for /favicon.ico by itself; typedoc's pages declare no icon.
  const favicon = `${origin}/favicon.ico`;
  page.on('console', (msg) => {
    if (msg.type() !== 'error') return;
    const { url, lineNumber } = msg.location();
    if (url === favicon) return;
    note(`console error: ${msg.text()}${url ? ` (${url}:${lineNumber + 1})` : ''}`);
  });
  page.on('pageerror', (e) => note(`uncaught exception: ${e.stack ?? e.message}`));
  page.on('requestfailed', (r) => {
    if (r.url() !== favicon) note(`request failed: ${r.url()} (${r.failure()?.errorText})`);
  });
  page.on('response', (r) => {
    if (r.status() >= 400 && r.url() !== favicon) note(`HTTP ${r.status()} for ${r.url()}`);
  });
  return { page, sink };
}

/**
 * Loads `url` in the tab and waits until typedoc's script has rendered it. Returns the HTTP status
 * and the problems seen (none are looked for on a page that is not there: that is a broken link).
 */
async function load(tab, url) {
  tab.sink.problems = [];
  const problems = tab.sink.problems;
  let status = 0;
  try {
    const res = await tab.page.goto(url, { waitUntil: 'load', timeout: PAGE_TIMEOUT_MS });
    status = res?.status() ?? 0;
    if (status !== 200) return { status, problems: [] };
    const type = res.headers()['content-type'] ?? '';
    if (!type.startsWith('text/html')) problems.push(`served as ${type}, not text/html`);
    await tab.page.waitForFunction(pageReady, null, { timeout: PAGE_TIMEOUT_MS }).catch(() => {
      problems.push(`typedoc's script never showed the page or its sidebar (${PAGE_TIMEOUT_MS / 1000} s)`);
    });
  } catch (e) {
    problems.push(`load failed: ${e.message.split('\n')[0]}`);
  }
  return { status, problems };
}

/** What a loaded page offers: its ids (the anchors a #fragment may name) and its links. */
function anatomy() {
  const ids = [...document.querySelectorAll('[id]')].map((e) => e.id);
  const names = [...document.querySelectorAll('a[name]')].map((a) => a.getAttribute('name'));
  const links = [...document.querySelectorAll('a[href]')].map((a) => ({
    href: new URL(a.getAttribute('href'), document.baseURI).href,
    text: a.textContent.replace(/\s+/g, ' ').trim().slice(0, 60),
  }));
  return { title: document.title, anchors: [...ids, ...names], links };
}

/**
 * Visits every page reachable from index.html, CONCURRENCY tabs at a time. Returns the pages (key →
 * { status, title, anchors, problems }), the same-origin links ({ from, key, fragment, text }) and the count
 * of links elsewhere.
 */
async function crawl(context, origin) {
  const pages = new Map();
  const links = [];
  let external = 0;
  const queue = ['/index.html'];
  const seen = new Set(queue);
  let busy = 0;
  const worker = async () => {
    const tab = await newTab(context, origin);
    for (;;) {
      const key = queue.shift();
      if (key === undefined) {
        if (busy === 0) break;
        await new Promise((r) => setTimeout(r, 20));
        continue;
      }
      busy++;
      try {
        const { status, problems } = await load(tab, origin + key);
        let found = { title: '', anchors: [], links: [] };
        if (status === 200) {
          try {
            found = await tab.page.evaluate(anatomy);
          } catch (e) {
            problems.push(`could not read the page: ${e.message.split('\n')[0]}`);
          }
        }
        tab.sink.problems = null;
        pages.set(key, { status, title: found.title, anchors: new Set(found.anchors), problems });
        for (const link of found.links) {
          const url = new URL(link.href);
          if (url.origin !== origin) {
            if (url.protocol === 'http:' || url.protocol === 'https:') external++;
            continue;
          }
          const target = keyOf(url);
          let fragment = url.hash.slice(1);
          try {
            fragment = decodeURIComponent(fragment);
          } catch {
            // kept as written: no id will match it, so it is reported
          }
          links.push({ from: key, key: target, fragment, text: link.text });
          if (isPage(target) && !seen.has(target)) {
            seen.add(target);
            queue.push(target);
          }
        }
      } finally {
        busy--;
      }
    }
    await tab.page.close();
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  return { pages, links, external };
}

/** Broken same-origin links: a target that is not there, or a #fragment that is no id of it. */
async function brokenLinks(origin, pages, links) {
  const files = new Map(); // non-HTML targets → HTTP status
  for (const { key } of links) {
    if (!isPage(key) && !files.has(key)) files.set(key, (await fetch(origin + key, { method: 'HEAD' })).status);
  }
  const broken = [];
  for (const link of links) {
    const where = `${link.from.slice(1)} → ${link.key.slice(1)}${link.fragment ? `#${link.fragment}` : ''} ("${link.text}")`;
    if (isPage(link.key)) {
      const target = pages.get(link.key);
      if (target.status !== 200) {
        broken.push(`${where}: ${target.status ? `HTTP ${target.status}` : 'did not load'}`);
      } else if (link.fragment && !target.anchors.has(link.fragment)) {
        broken.push(`${where}: no element with id "${link.fragment}" on the target page`);
      }
    } else if (files.get(link.key) !== 200) {
      broken.push(`${where}: HTTP ${files.get(link.key)}`);
    }
  }
  return { broken: [...new Set(broken)], files: files.size };
}

// ---- search and screenshots ----

/**
 * Types each query into typedoc's search box on index.html and follows the expected result. Returns
 * the problems and, for queries with a `screenshot` name, the page their result led to.
 */
async function checkSearch(context, origin, pages) {
  const problems = [];
  const found = {};
  const tab = await newTab(context, origin);
  const results = () =>
    tab.page.$$eval('#tsd-search-results li a', (as) => as.map((a) => ({ href: a.href, text: a.textContent.replace(/\s+/g, ' ').trim() })));
  for (const { query, name, under, screenshot } of SEARCHES) {
    const loaded = await load(tab, `${origin}/index.html`);
    const seen = loaded.problems;
    try {
      if (loaded.status !== 200) throw new Error(`index.html answered ${loaded.status}`);
      // typedoc empties the status line ("Preparing search index...") once the index is loaded.
      await tab.page.waitForFunction(() => document.getElementById('tsd-search-status')?.textContent.trim() === '', null, {
        timeout: PAGE_TIMEOUT_MS,
      });
      await tab.page.click('#tsd-search-trigger');
      await tab.page.locator('#tsd-search-input').pressSequentially(query);
      // Results follow the input after a debounce: wait for the one wanted, else report what is shown.
      const wanted = await tab.page
        .waitForFunction(
          ({ name, under }) =>
            [...document.querySelectorAll('#tsd-search-results li a')].findIndex(
              (a) => a.textContent.replace(/\s+/g, ' ').includes(name) && new URL(a.href).pathname.startsWith(`/${under}/`),
            ) + 1 || null,
          { name, under },
          { timeout: 10 * 1000 },
        )
        .then(async (handle) => (await handle.jsonValue()) - 1)
        .catch(() => -1);
      const shown = await results();
      if (wanted < 0) {
        const status = (await tab.page.textContent('#tsd-search-status')).trim();
        throw new Error(
          `no result "${name}" under ${under}/ (shown: ${shown.length ? shown.map((r) => `"${r.text}"`).join(', ') : status || 'nothing'}); ` +
            `if it was renamed, update SEARCHES in apps/docs/test/browser.mjs`,
        );
      }
      const hit = shown[wanted];
      const key = new URL(hit.href).pathname;
      if (!pages.has(key)) problems.push(`search "${query}": its result ${key.slice(1)} is not a page the crawl reached`);
      if (screenshot) found[screenshot] = key;
      if (query === SEARCHES[0].query) await tab.page.screenshot({ path: path.join(artifacts, 'search.png') });
      // Choosing the result must open its page.
      await Promise.all([
        tab.page.waitForURL(hit.href, { timeout: PAGE_TIMEOUT_MS }),
        tab.page.locator('#tsd-search-results li a').nth(wanted).click(),
      ]);
      console.log(`ok   search "${query}" → ${key.slice(1)} ("${hit.text}", ${shown.length} result(s) shown)`);
    } catch (e) {
      problems.push(`search "${query}": ${e.message.split('\n')[0]}`);
    }
    tab.sink.problems = null;
    problems.push(...seen.map((p) => `search "${query}": ${p}`));
  }
  await tab.page.close();
  return { problems, found };
}

/** Full-page screenshots of the given pages (name → key) into `artifacts`; returns the files written. */
async function screenshots(context, origin, shots) {
  const tab = await newTab(context, origin);
  const written = [];
  for (const [name, key] of Object.entries(shots)) {
    await load(tab, origin + key);
    tab.sink.problems = null;
    const file = path.join(artifacts, `${name}.png`);
    await tab.page.screenshot({ path: file, fullPage: true });
    written.push(file);
  }
  await tab.page.close();
  return written;
}

// ---- the run ----

const started = performance.now();
const watchdog = setTimeout(() => fail(`the browser test took over ${TOTAL_TIMEOUT_MS / 60000} min`), TOTAL_TIMEOUT_MS);
watchdog.unref();
fs.rmSync(artifacts, { recursive: true, force: true });
fs.mkdirSync(artifacts, { recursive: true });
fs.writeFileSync(path.join(artifacts, '.gitignore'), '# written by test/browser.mjs: nothing here is committed\n*\n');

let server;
let browser;
const failures = [];
try {
  server = await startServer();
  const origin = `http://127.0.0.1:${server.address().port}`;
  failures.push(...(await checkServer(origin)));
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'], timeout: 60 * 1000 }).catch((e) => {
    throw new Error(`could not start ${CHROMIUM}: ${e.message.split('\n')[0]}`);
  });
  console.log(`serving ${path.relative(process.cwd(), site) || '.'} at ${origin}; Chromium ${browser.version()}`);
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });

  const crawlStarted = performance.now();
  const { pages, links, external } = await crawl(context, origin);
  for (const [key, page] of [...pages].sort()) {
    for (const problem of page.problems) failures.push(`${key.slice(1)}: ${problem}`);
  }
  const { broken, files } = await brokenLinks(origin, pages, links);
  failures.push(...broken.map((b) => `broken link ${b}`));
  console.log(
    `crawled ${[...pages.values()].filter((p) => p.status === 200).length} page(s) in ` +
      `${((performance.now() - crawlStarted) / 1000).toFixed(1)} s; checked ${links.length} same-origin link(s) ` +
      `(${links.filter((l) => l.fragment).length} with a #fragment, ${files} to other files), ${broken.length} broken; ` +
      `${external} link(s) to other sites not followed`,
  );

  const search = await checkSearch(context, origin, pages);
  failures.push(...search.problems);

  const written = await screenshots(context, origin, { index: '/index.html', ...search.found });
  if (fs.existsSync(path.join(artifacts, 'search.png'))) written.push(path.join(artifacts, 'search.png'));
  for (const file of written) console.log(`screenshot ${file}`);
  for (const shot of SEARCHES.filter((s) => s.screenshot && !search.found[s.screenshot])) {
    failures.push(`no ${shot.screenshot} screenshot: its search ("${shot.query}") failed`);
  }
} catch (e) {
  failures.push(`the check itself failed: ${e.stack ?? e.message}`);
} finally {
  await browser?.close().catch(() => {});
  server?.closeAllConnections();
  await new Promise((resolve) => (server ? server.close(resolve) : resolve()));
}

const seconds = ((performance.now() - started) / 1000).toFixed(1);
fs.writeFileSync(path.join(artifacts, 'failures.txt'), failures.map((f) => `${f}\n`).join(''));
if (failures.length > 0) {
  for (const failure of failures) console.error(`FAIL ${failure}`);
  console.error(`browser test: ${failures.length} problem(s) (${seconds} s)`);
  process.exit(1);
}
console.log(`browser test passed (${seconds} s)`);
