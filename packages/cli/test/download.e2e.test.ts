// `graniteflow download` against a loopback server that speaks the hub's file protocol; the model
// then loads from the standard cache layout, offline. Also: a hostile hub cannot write outside the
// cache, a stalled transfer ends with a clear error, two downloads at once fetch each file once,
// and offline mode (HF_HUB_OFFLINE=1 or --offline) makes no request at all.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import type { AddressInfo } from 'node:net';
import { expectCleanError, GOLDEN, runCli } from './helpers/cli';

const REPO = 'test-org/tiny-granite';
const COMMIT = 'a'.repeat(40);
const FILES = ['config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json', 'generation_config.json'];
const blobs = new Map(FILES.map((f) => [f, fs.readFileSync(path.join(GOLDEN, 'chat_tiny', f))]));
const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** How the hub misbehaves in the current test (reset after each). */
interface Misbehaviour {
  /** Headers sent instead of the hub's own on every answer for this file. */
  headers?: Record<string, Record<string, string>>;
  /** Files whose GET sends half the bytes, pauses this many ms, then sends the rest. */
  slowMs?: Record<string, number>;
  /** Files whose GET sends half the bytes and then hangs. */
  stall?: string[];
}

let hub: http.Server;
let endpoint: string;
let tmp: string;
const requests: string[] = [];
let misbehaviour: Misbehaviour = {};

beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'graniteflow-cli-download-'));
  hub = http.createServer((req, res) => {
    requests.push(`${req.method} ${req.url}`);
    const m = /^\/([^/]+\/[^/]+)\/resolve\/([^/]+)\/(.+)$/.exec(req.url ?? '');
    const file = m ? decodeURIComponent(m[3]) : '';
    const body = m && m[1] === REPO ? blobs.get(file) : undefined;
    if (!body) {
      res.writeHead(404, m && m[1] !== REPO ? { 'X-Error-Code': 'RepoNotFound' } : {});
      res.end();
      return;
    }
    res.writeHead(200, {
      'x-repo-commit': COMMIT,
      etag: `"${sha256(body)}"`,
      'content-length': String(body.length),
      ...misbehaviour.headers?.[file],
    });
    if (req.method === 'HEAD') return void res.end();
    const half = body.subarray(0, body.length >> 1);
    if (misbehaviour.stall?.includes(file)) return void res.write(half);
    const pause = misbehaviour.slowMs?.[file];
    if (pause === undefined) return void res.end(body);
    res.write(half);
    const timer = setTimeout(() => res.end(body.subarray(half.length)), pause);
    res.on('close', () => clearTimeout(timer));
  });
  await new Promise<void>((r) => hub.listen(0, '127.0.0.1', r));
  endpoint = `http://127.0.0.1:${(hub.address() as AddressInfo).port}`;
});

afterEach(() => {
  misbehaviour = {};
});

afterAll(async () => {
  hub.closeAllConnections();
  await new Promise((r) => hub.close(r));
  fs.rmSync(tmp, { recursive: true, force: true });
});

/** A fresh folder holding `cache/` and, next to it, files the hub must not reach. */
function sandbox(name: string): { root: string; cache: string } {
  const root = path.join(tmp, name);
  fs.mkdirSync(path.join(root, 'victim'), { recursive: true });
  fs.writeFileSync(path.join(root, 'victim', 'config.json'), 'precious');
  return { root, cache: path.join(root, 'cache') };
}

/** Everything under `root` except `root/cache`, with contents: what a hostile hub must not change. */
function outsideCache(root: string): string[] {
  return fs
    .readdirSync(root, { recursive: true, encoding: 'utf8' })
    .filter((rel) => rel !== 'cache' && !rel.startsWith(`cache${path.sep}`))
    .sort()
    .map((rel) => {
      const st = fs.lstatSync(path.join(root, rel));
      return st.isFile() ? `${rel} ${sha256(fs.readFileSync(path.join(root, rel)))}` : `${rel} ${st.isDirectory() ? 'dir' : 'other'}`;
    });
}

test('download fills the Hugging Face cache with a progress bar; the model then runs offline from it', async () => {
  const env = { HF_ENDPOINT: endpoint, HF_HUB_CACHE: path.join(tmp, 'hub') };
  const r = await runCli(['download', REPO], { env });
  expect(r.stderr).not.toMatch(/error/);
  expect(r.code).toBe(0);
  const folder = r.stdout.trim();
  expect(folder).toBe(path.join(tmp, 'hub', 'models--test-org--tiny-granite', 'snapshots', COMMIT));
  for (const f of FILES) expect(fs.existsSync(path.join(folder, f))).toBe(true);
  expect(r.stderr).toMatch(/^Downloading test-org\/tiny-granite \(\d+(\.\d)? KiB\)…$/m);
  expect(r.stderr).toMatch(/^Downloading test-org\/tiny-granite: \d+(\.\d)? KiB in [\d.]+ s \([\d.]+ [KMG]?i?B\/s\)$/m); // average speed

  // A second download finds everything in the cache and fetches no file again.
  const gets = requests.filter((q) => q.startsWith('GET')).length;
  const again = await runCli(['download', REPO], { env });
  expect(again.code).toBe(0);
  expect(again.stdout.trim()).toBe(folder);
  expect(requests.filter((q) => q.startsWith('GET')).length).toBe(gets);

  const expectations = JSON.parse(fs.readFileSync(path.join(GOLDEN, 'chat_tiny', 'text_expectations.json'), 'utf8')) as {
    cases: { prompt: string; text: string }[];
  };
  const c = expectations.cases[0];
  const generated = await runCli(
    ['generate', '--offline', '--quiet', '--model', REPO, '--temperature', '0', '--max-tokens', '8', c.prompt],
    { env: { HF_HUB_CACHE: env.HF_HUB_CACHE } },
  );
  expect(generated.code).toBe(0);
  expect(generated.stdout).toBe(`${c.text}\n`);

  const inspected = await runCli(['inspect', '--offline', REPO], { env: { HF_HUB_CACHE: env.HF_HUB_CACHE } });
  expect(inspected.code).toBe(0);
  expect(inspected.stdout).toContain(folder);
});

test('a repo the hub does not have: exit 1, one paragraph', async () => {
  const r = await runCli(['download', 'test-org/missing'], { env: { HF_ENDPOINT: endpoint, HF_HUB_CACHE: path.join(tmp, 'hub2') } });
  expect(r.code).toBe(1);
  expect(r.stderr).toMatch(/^graniteflow: error: Repository test-org\/missing not found/m);
  expect(r.stderr).not.toMatch(/\n\s+at /);
});

describe('a hostile hub', () => {
  test.each([
    ['ETag', { etag: '"../../../pwned"' }, /ETag "\.\.\/\.\.\/\.\.\/pwned" for config\.json/],
    ['X-Repo-Commit', { 'x-repo-commit': '../../../victim' }, /X-Repo-Commit "\.\.\/\.\.\/\.\.\/victim" for config\.json/],
  ])('sending a path as %s: exit 1, one paragraph, nothing written or deleted outside the cache', async (name, headers, message) => {
    const { root, cache } = sandbox(`hostile-${name}`);
    const before = outsideCache(root);
    misbehaviour = { headers: { 'config.json': headers } };
    const r = await runCli(['download', REPO], { env: { HF_ENDPOINT: endpoint, HF_HUB_CACHE: cache } });
    expectCleanError(r, 1);
    expect(r.stderr).toMatch(message);
    expect(outsideCache(root)).toEqual(before);
  });

  test('a --revision that is a path is refused before any request', async () => {
    const { root, cache } = sandbox('hostile-revision');
    const before = outsideCache(root);
    const count = requests.length;
    const r = await runCli(['download', REPO, '--revision', '../../../victim'], { env: { HF_ENDPOINT: endpoint, HF_HUB_CACHE: cache } });
    expectCleanError(r, 1);
    expect(r.stderr).toMatch(/Revision "\.\.\/\.\.\/\.\.\/victim" is not a valid branch, tag or commit name/);
    expect(requests.length).toBe(count);
    expect(outsideCache(root)).toEqual(before);
  });
});

test('a transfer that stalls ends with one paragraph naming the file and saying a rerun resumes; the rerun does', async () => {
  const cache = path.join(tmp, 'stall');
  misbehaviour = { stall: ['model.safetensors'] };
  const env = { HF_ENDPOINT: endpoint, HF_HUB_CACHE: cache, HF_HUB_DOWNLOAD_TIMEOUT: '0.3' };
  const r = await runCli(['download', REPO], { env });
  expectCleanError(r, 1);
  expect(r.stderr).toMatch(/graniteflow: error: .*model\.safetensors.*no data for 0\.3 s.*run again to resume/);
  misbehaviour = {};
  const start = requests.length;
  const again = await runCli(['download', REPO], { env });
  expect(again.code).toBe(0);
  expect(requests.slice(start).filter((q) => q.startsWith('GET'))).toEqual([`GET /${REPO}/resolve/${COMMIT}/model.safetensors`]);
  expect(fs.readFileSync(path.join(again.stdout.trim(), 'model.safetensors')).equals(blobs.get('model.safetensors')!)).toBe(true);
});

test('two downloads of the same repo at once fetch each file once and both succeed', async () => {
  const cache = path.join(tmp, 'concurrent');
  misbehaviour = { slowMs: { 'model.safetensors': 1500, 'tokenizer.json': 300 } };
  const start = requests.length;
  const env = { HF_ENDPOINT: endpoint, HF_HUB_CACHE: cache };
  const [a, b] = await Promise.all([runCli(['download', '--quiet', REPO], { env }), runCli(['download', '--quiet', REPO], { env })]);
  expect([a.code, b.code, a.stderr, b.stderr]).toEqual([0, 0, '', '']);
  expect(a.stdout).toBe(b.stdout);
  const gets = requests.slice(start).filter((q) => q.startsWith('GET'));
  expect(gets.sort()).toEqual(FILES.map((f) => `GET /${REPO}/resolve/${COMMIT}/${f}`).sort());
  for (const f of FILES) expect(fs.readFileSync(path.join(a.stdout.trim(), f)).equals(blobs.get(f)!)).toBe(true);
});

describe('offline mode makes no request at all', () => {
  // Any request to this hub fails the test: offline must not even look.
  let forbidden: http.Server;
  let forbiddenUrl: string;
  const contacted: string[] = [];
  let cache: string;
  const CACHED = 'test-org/cached';
  const UNCACHED = 'test-org/not-cached';

  beforeAll(async () => {
    forbidden = http.createServer((req, res) => {
      contacted.push(`${req.method} ${req.url}`);
      res.writeHead(500).end();
    });
    await new Promise<void>((r) => forbidden.listen(0, '127.0.0.1', r));
    forbiddenUrl = `http://127.0.0.1:${(forbidden.address() as AddressInfo).port}`;
    // A cache as Python's huggingface_hub writes it.
    cache = path.join(tmp, 'offline-cache');
    const root = path.join(cache, 'models--test-org--cached');
    fs.mkdirSync(path.join(root, 'blobs'), { recursive: true });
    fs.mkdirSync(path.join(root, 'snapshots', COMMIT), { recursive: true });
    fs.mkdirSync(path.join(root, 'refs'));
    for (const [f, bytes] of blobs) {
      fs.writeFileSync(path.join(root, 'blobs', sha256(bytes)), bytes);
      fs.symlinkSync(`../../blobs/${sha256(bytes)}`, path.join(root, 'snapshots', COMMIT, f));
    }
    fs.writeFileSync(path.join(root, 'refs', 'main'), COMMIT);
  });

  afterAll(async () => {
    forbidden.closeAllConnections();
    await new Promise((r) => forbidden.close(r));
  });

  afterEach(() => {
    expect(contacted.splice(0)).toEqual([]);
  });

  const ways: [string, string[], Record<string, string>][] = [
    ['HF_HUB_OFFLINE=1', [], { HF_HUB_OFFLINE: '1' }],
    ['--offline', ['--offline'], { HF_HUB_OFFLINE: '0' }],
  ];
  const commands: [string, (repo: string, flags: string[]) => string[]][] = [
    ['download', (repo, flags) => ['download', ...flags, repo]],
    ['generate', (repo, flags) => ['generate', ...flags, '--quiet', '--model', repo, '--max-tokens', '2', 'Hello']],
    ['inspect', (repo, flags) => ['inspect', ...flags, repo]],
  ];

  describe.each(ways)('with %s', (_way, flags, offlineEnv) => {
    test.each(commands)('%s uses a model already in the cache', async (_name, argv) => {
      const r = await runCli(argv(CACHED, flags), { env: { HF_ENDPOINT: forbiddenUrl, HF_HUB_CACHE: cache, ...offlineEnv } });
      expect(r.stderr).not.toMatch(/error/);
      expect(r.code).toBe(0);
    });

    test.each(commands)('%s says offline mode is on and the model is not cached', async (_name, argv) => {
      const r = await runCli(argv(UNCACHED, flags), { env: { HF_ENDPOINT: forbiddenUrl, HF_HUB_CACHE: cache, ...offlineEnv } });
      expectCleanError(r, 1);
      expect(r.stderr).toMatch(/graniteflow: error: Offline.* test-org\/not-cached .*(not in the cache|no config\.json in the cache)/);
    });
  });
});
