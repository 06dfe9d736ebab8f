// The hub download against a hub that misbehaves: hostile names in headers and listings (nothing
// may be written or deleted outside the cache), stalled transfers, wrong Content-Range answers,
// and two downloads of the same repo at once (each blob is fetched once, under a lock file).
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { resolveModelFolder } from '../src/hub';
import { CHAT_TINY_DIR } from './helpers/golden';
import { gitSha1, sha256, startHubServer, type BadRange, type HubServer } from './helpers/hub_server';

const CHAT_FILES = ['config.json', 'generation_config.json', 'tokenizer.json', 'tokenizer_config.json', 'model.safetensors'];
const COMMIT = 'c'.repeat(40);
const REPO = 'test-org/chat-tiny';
const LENIENT = 'test-org/lenient';
const bytesOf = (f: string): Buffer => fs.readFileSync(path.join(CHAT_TINY_DIR, f));
const MODEL_SHA = sha256(bytesOf('model.safetensors'));
const TOKENIZER_SHA = sha256(bytesOf('tokenizer.json'));
const T = 20_000;

let server: HubServer;
const tmpDirs: string[] = [];

beforeAll(async () => {
  server = await startHubServer({
    [REPO]: { dir: CHAT_TINY_DIR, files: CHAT_FILES, commit: COMMIT },
    // Answers any revision name, as a hostile hub would, so the client's own checks are what stop it.
    [LENIENT]: { dir: CHAT_TINY_DIR, files: CHAT_FILES, commit: COMMIT, anyRevision: true },
  });
});

afterAll(async () => {
  await server.close();
  for (const d of tmpDirs) fs.rmSync(d, { recursive: true, force: true });
});

beforeEach(() => server.reset());

/** A tmp folder holding the cache and, next to it, a victim folder the hub must not reach. */
function sandbox(): { root: string; cacheDir: string } {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'gf-hub-sandbox-'));
  tmpDirs.push(root);
  fs.mkdirSync(path.join(root, 'victim'));
  fs.writeFileSync(path.join(root, 'victim', 'config.json'), 'precious');
  fs.writeFileSync(path.join(root, 'victim.txt'), 'precious too');
  return { root, cacheDir: path.join(root, 'cache') };
}

/** Every entry of `root` outside `root/cache`, with its kind and content hash: what must not change. */
function outsideCache(root: string): string[] {
  const out: string[] = [];
  const walk = (dir: string): void => {
    for (const name of fs.readdirSync(dir).sort()) {
      const p = path.join(dir, name);
      const rel = path.relative(root, p);
      if (rel === 'cache') continue;
      const st = fs.lstatSync(p);
      if (st.isSymbolicLink()) out.push(`${rel} -> ${fs.readlinkSync(p)}`);
      else if (st.isDirectory()) {
        out.push(`${rel}/`);
        walk(p);
      } else out.push(`${rel} ${createHash('sha256').update(fs.readFileSync(p)).digest('hex')}`);
    }
  };
  walk(root);
  return out;
}

const opts = (cacheDir: string, extra: Parameters<typeof resolveModelFolder>[1] = {}) => ({
  cacheDir,
  endpoint: server.url,
  env: {},
  ...extra,
});

function expectSameBytes(folder: string): void {
  for (const f of CHAT_FILES) expect(fs.readFileSync(path.join(folder, f)).equals(bytesOf(f))).toBe(true);
}

describe('a hostile hub cannot reach outside the cache', () => {
  it.each([
    ['ETag', 'config.json', { etag: '"../../../pwned"' }],
    ['ETag', 'config.json', { etag: 'W/"../../../victim/config.json"' }],
    ['ETag', 'tokenizer.json', { etag: '"not-a-sha"' }],
    ['X-Linked-Etag', 'model.safetensors', { 'x-linked-etag': '"../../../pwned"' }],
    ['X-Linked-Etag', 'model.safetensors', { 'x-linked-etag': `"${'a'.repeat(63)}/"` }],
  ])(
    'refuses an %s that is not a sha (%s: %j)',
    async (header, file, headers) => {
      const { root, cacheDir } = sandbox();
      const before = outsideCache(root);
      server.faults.headers.set(file, headers);
      const run = resolveModelFolder(LENIENT, opts(cacheDir));
      await expect(run).rejects.toMatchObject({ name: 'HubResponseError' });
      await expect(resolveModelFolder(LENIENT, opts(cacheDir))).rejects.toThrow(
        new RegExp(`${header}.*${file.replace('.', '\\.')}.*40- or 64-hex-digit`, 'i'),
      );
      expect(outsideCache(root)).toEqual(before);
    },
    T,
  );

  it(
    'refuses an X-Repo-Commit that is not a commit hash, before writing anything',
    async () => {
      const { root, cacheDir } = sandbox();
      const before = outsideCache(root);
      server.faults.headers.set('config.json', { 'x-repo-commit': '../../../victim' });
      await expect(resolveModelFolder(LENIENT, opts(cacheDir))).rejects.toThrow(
        /X-Repo-Commit "\.\.\/\.\.\/\.\.\/victim" .*config\.json.*40 hex digits/,
      );
      expect(outsideCache(root)).toEqual(before);
      expect(fs.readFileSync(path.join(root, 'victim', 'config.json'), 'utf8')).toBe('precious');
      expect(fs.existsSync(cacheDir)).toBe(false);
    },
    T,
  );

  it(
    'refuses a commit hash on a later file that is a path, even when the first one was sound',
    async () => {
      const { root, cacheDir } = sandbox();
      const before = outsideCache(root);
      server.faults.headers.set('tokenizer.json', { 'x-repo-commit': '../../../victim' });
      await expect(resolveModelFolder(LENIENT, opts(cacheDir))).rejects.toMatchObject({ name: 'HubResponseError' });
      expect(outsideCache(root)).toEqual(before);
    },
    T,
  );

  it.each([
    '../../../victim',
    '../x',
    '..',
    '/main',
    'main/',
    'a//b',
    'a\\b',
    'a\0b',
    '.hidden',
    'a/.b',
    'x.lock',
    'a..b',
    'a@{1}',
    'a b',
    'a:b',
  ])('rejects revision %j before any request or write', async (revision) => {
    const { root, cacheDir } = sandbox();
    const before = outsideCache(root);
    await expect(resolveModelFolder(LENIENT, opts(cacheDir, { revision }))).rejects.toThrow(
      /[Rr]evision .* is not a valid branch, tag or commit name/,
    );
    expect(server.log).toEqual([]);
    expect(outsideCache(root)).toEqual(before);
  });

  it(
    'accepts revision names with slashes, stored under refs/ as huggingface_hub does',
    async () => {
      const { cacheDir } = sandbox();
      const folder = await resolveModelFolder(LENIENT, opts(cacheDir, { revision: 'refs/pr/1' }));
      expectSameBytes(folder);
      expect(fs.readFileSync(path.join(cacheDir, 'models--test-org--lenient', 'refs', 'refs', 'pr', '1'), 'utf8')).toBe(COMMIT);
    },
    T,
  );

  it.each(['test--org/chat-tiny', 'test-org/chat..tiny', 'test-org/chat-tiny.git', 'test-org/-chat', `test-org/${'x'.repeat(97)}`])(
    'rejects repo id %j as huggingface_hub does, before any request',
    async (repoId) => {
      const { root, cacheDir } = sandbox();
      await expect(resolveModelFolder(repoId, opts(cacheDir))).rejects.toMatchObject({ name: 'HubError' });
      expect(server.log).toEqual([]);
      expect(fs.readdirSync(root).sort()).toEqual(['victim', 'victim.txt']);
    },
  );

  it.each([
    '../../../pwned.safetensors',
    '/tmp/pwned.safetensors',
    'a//b.safetensors',
    './x.safetensors',
    'a/../b.safetensors',
    'x\\..\\y.safetensors',
    '',
  ])('rejects shard name %j from the index without requesting it', async (shard) => {
    const { root, cacheDir } = sandbox();
    const before = outsideCache(root);
    const repoDir = path.join(root, 'repo');
    fs.mkdirSync(repoDir);
    fs.copyFileSync(path.join(CHAT_TINY_DIR, 'config.json'), path.join(repoDir, 'config.json'));
    fs.writeFileSync(path.join(repoDir, 'model.safetensors.index.json'), JSON.stringify({ weight_map: { 'lm_head.weight': shard } }));
    const hostile = await startHubServer({
      'evil/index': { dir: repoDir, files: ['config.json', 'model.safetensors.index.json'], commit: COMMIT, anyRevision: true },
    });
    try {
      await expect(resolveModelFolder('evil/index', { cacheDir, endpoint: hostile.url, env: {} })).rejects.toThrow(
        /model\.safetensors\.index\.json .*invalid shard file name/,
      );
      expect(hostile.log.filter((r) => r.path.endsWith('.safetensors'))).toEqual([]);
    } finally {
      await hostile.close();
    }
    expect(outsideCache(root).filter((e) => !e.startsWith('repo'))).toEqual(before);
  });
});

describe('stalled transfers and wrong Content-Range answers', () => {
  it(
    'gives up on a transfer that stalls (idle timeout) and resumes it with a Range request on the retry',
    async () => {
      const { cacheDir } = sandbox();
      server.faults.stallOnce.add(MODEL_SHA);
      const folder = await resolveModelFolder(REPO, opts(cacheDir, { idleTimeoutMs: 300 }));
      expectSameBytes(folder);
      const gets = server.log.filter((r) => r.method === 'GET' && r.path === `/cdn/${MODEL_SHA}`);
      expect(gets.map((g) => g.range ?? 'whole')).toEqual(['whole', `bytes=${bytesOf('model.safetensors').length >> 1}-`]);
    },
    T,
  );

  it(
    'names the file and URL when every attempt stalls (HF_HUB_DOWNLOAD_TIMEOUT), keeps the partial file, and the next run resumes',
    async () => {
      const { cacheDir } = sandbox();
      server.faults.stall.add(MODEL_SHA);
      const started = Date.now();
      const run = resolveModelFolder(REPO, opts(cacheDir, { env: { HF_HUB_DOWNLOAD_TIMEOUT: '0.3' } }));
      await expect(run).rejects.toMatchObject({ name: 'HubNetworkError' });
      expect(Date.now() - started).toBeLessThan(10_000);
      await expect(resolveModelFolder(REPO, opts(cacheDir, { env: { HF_HUB_DOWNLOAD_TIMEOUT: '0.3' } }))).rejects.toThrow(
        new RegExp(`model\\.safetensors .*${server.url}/cdn/${MODEL_SHA}.*no data for 0\\.3 s.*partial file is kept; run again to resume`),
      );
      const partial = path.join(cacheDir, 'models--test-org--chat-tiny', 'blobs', `${MODEL_SHA}.incomplete`);
      const kept = fs.statSync(partial).size;
      expect(kept).toBeGreaterThan(0);

      server.reset();
      const folder = await resolveModelFolder(REPO, opts(cacheDir));
      expectSameBytes(folder);
      expect(server.log.filter((r) => r.method === 'GET').map((r) => r.range)).toEqual([`bytes=${kept}-`]);
    },
    T,
  );

  it(
    'times out a request the hub never answers, naming its URL',
    async () => {
      const { cacheDir } = sandbox();
      server.faults.silent.add('config.json');
      await expect(resolveModelFolder(REPO, opts(cacheDir, { idleTimeoutMs: 300 }))).rejects.toThrow(
        `No answer from ${server.url}/${REPO}/resolve/main/config.json within 0.3 s`,
      );
    },
    T,
  );

  it.each<BadRange>(['wrong-start', 'wrong-total', 'missing'])(
    'restarts from zero when a resumed transfer answers with a bad Content-Range (%s), never appending wrong bytes',
    async (kind) => {
      const { cacheDir } = sandbox();
      // Half of tokenizer.json (not an LFS file: no sha256 would catch wrong bytes) left by an earlier run.
      const body = bytesOf('tokenizer.json');
      const blobs = path.join(cacheDir, 'models--test-org--chat-tiny', 'blobs');
      fs.mkdirSync(blobs, { recursive: true });
      fs.writeFileSync(path.join(blobs, `${gitSha1(body)}.incomplete`), body.subarray(0, body.length >> 1));
      server.faults.badRangeOnce.set(TOKENIZER_SHA, kind);
      const folder = await resolveModelFolder(REPO, opts(cacheDir));
      expectSameBytes(folder);
      const gets = server.log.filter((r) => r.method === 'GET' && r.path.endsWith('/tokenizer.json'));
      expect(gets.map((g) => g.range ?? 'whole')).toEqual([`bytes=${body.length >> 1}-`, 'whole']);
    },
    T,
  );
});

describe('concurrent downloads of one repo', () => {
  const locksDir = (cacheDir: string): string => path.join(cacheDir, '.locks', 'models--test-org--chat-tiny');

  it(
    'fetches each blob once when two downloads run at the same time, under .locks/<repo>/<etag>.lock',
    async () => {
      const { cacheDir } = sandbox();
      server.faults.slow.set(MODEL_SHA, 400);
      server.faults.slow.set(TOKENIZER_SHA, 100);
      const lockSeen: unknown[] = [];
      const onProgress = (p: { file: string | null; downloadedBytes: number }): void => {
        const lock = path.join(locksDir(cacheDir), `${MODEL_SHA}.lock`);
        if (p.file === 'model.safetensors' && p.downloadedBytes > 0 && lockSeen.length === 0 && fs.existsSync(lock)) {
          lockSeen.push(JSON.parse(fs.readFileSync(lock, 'utf8')));
        }
      };
      const [a, b] = await Promise.all([
        resolveModelFolder(REPO, opts(cacheDir, { onProgress })),
        resolveModelFolder(REPO, opts(cacheDir, { onProgress })),
      ]);
      expect(a).toBe(b);
      expectSameBytes(a);
      expect(server.count('GET', `/cdn/${MODEL_SHA}`)).toBe(1);
      for (const f of CHAT_FILES.filter((f) => !f.endsWith('.safetensors'))) expect(server.count('GET', `/resolve/${COMMIT}/${f}`)).toBe(1);
      expect(lockSeen).toEqual([expect.objectContaining({ pid: process.pid, host: os.hostname() })]);
      expect(fs.readdirSync(locksDir(cacheDir))).toEqual([]);
    },
    T,
  );

  it(
    'waits for a lock held by a live process, then uses what it downloaded',
    async () => {
      const { cacheDir } = sandbox();
      fs.mkdirSync(locksDir(cacheDir), { recursive: true });
      const lock = path.join(locksDir(cacheDir), `${MODEL_SHA}.lock`);
      fs.writeFileSync(lock, JSON.stringify({ pid: process.pid, host: os.hostname() }));
      let getsWhileLocked = -1;
      const release = setTimeout(() => {
        getsWhileLocked = server.count('GET', `/cdn/${MODEL_SHA}`);
        fs.rmSync(lock);
      }, 600);
      try {
        const folder = await resolveModelFolder(REPO, opts(cacheDir));
        expectSameBytes(folder);
      } finally {
        clearTimeout(release);
      }
      expect(getsWhileLocked).toBe(0);
      expect(server.count('GET', `/cdn/${MODEL_SHA}`)).toBe(1);
    },
    T,
  );

  it(
    'takes over a stale lock: one left by a process that died, or an old empty one (huggingface_hub leaves those)',
    async () => {
      const dead = spawnSync(process.execPath, ['-e', '']).pid;
      for (const content of [JSON.stringify({ pid: dead, host: os.hostname() }), '']) {
        const { cacheDir } = sandbox();
        fs.mkdirSync(locksDir(cacheDir), { recursive: true });
        const lock = path.join(locksDir(cacheDir), `${MODEL_SHA}.lock`);
        fs.writeFileSync(lock, content);
        if (content === '') fs.utimesSync(lock, new Date(Date.now() - 3_600_000), new Date(Date.now() - 3_600_000));
        const started = Date.now();
        expectSameBytes(await resolveModelFolder(REPO, opts(cacheDir)));
        expect(Date.now() - started).toBeLessThan(5_000);
        expect(fs.existsSync(lock)).toBe(false);
      }
    },
    T,
  );
});
