import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  HubAuthError,
  HubNetworkError,
  OfflineCacheMissError,
  RepoNotFoundError,
  resolveCacheDir,
  resolveModelFolder,
  type DownloadProgress,
} from '../src/hub';
import { CHAT_TINY_DIR, TINY_MOE_DIR } from './helpers/golden';
import { sha256, startHubServer, type HubServer } from './helpers/hub_server';

const CHAT_FILES = ['config.json', 'generation_config.json', 'tokenizer.json', 'tokenizer_config.json', 'model.safetensors'];
const MOE_FILES = ['config.json', 'model.safetensors.index.json', 'model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors'];
const CHAT_COMMIT = 'c'.repeat(40);
const MOE_COMMIT = 'e'.repeat(40);
const MODEL_SHA = sha256(fs.readFileSync(path.join(CHAT_TINY_DIR, 'model.safetensors')));
const T = 30_000;

let server: HubServer;
const tmpDirs: string[] = [];

beforeAll(async () => {
  server = await startHubServer({
    'test-org/chat-tiny': { dir: CHAT_TINY_DIR, files: CHAT_FILES, commit: CHAT_COMMIT },
    'test-org/tiny-moe': { dir: TINY_MOE_DIR, files: MOE_FILES, commit: MOE_COMMIT },
    'test-org/private': { dir: CHAT_TINY_DIR, files: CHAT_FILES, commit: CHAT_COMMIT, token: 'secret' },
  });
});

afterAll(async () => {
  await server.close();
  for (const d of tmpDirs) fs.rmSync(d, { recursive: true, force: true });
});

beforeEach(() => server.reset());

function tempCache(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'gf-hub-'));
  tmpDirs.push(d);
  return d;
}

const opts = (cacheDir: string, extra: Parameters<typeof resolveModelFolder>[1] = {}) => ({
  cacheDir,
  endpoint: server.url,
  env: {},
  ...extra,
});

function expectSameBytes(folder: string, fixture: string, files: string[]): void {
  for (const f of files) expect(fs.readFileSync(path.join(folder, f)).equals(fs.readFileSync(path.join(fixture, f)))).toBe(true);
}

describe('resolveModelFolder: download into the HF cache', () => {
  it(
    'downloads a fresh model with the huggingface_hub cache layout, then reuses it with zero requests',
    async () => {
      const cacheDir = tempCache();
      const events: DownloadProgress[] = [];
      const folder = await resolveModelFolder('test-org/chat-tiny', opts(cacheDir, { onProgress: (p) => events.push(p) }));
      const repoRoot = path.join(cacheDir, 'models--test-org--chat-tiny');
      expect(folder).toBe(path.join(repoRoot, 'snapshots', CHAT_COMMIT));
      expectSameBytes(folder, CHAT_TINY_DIR, CHAT_FILES);

      expect(fs.readFileSync(path.join(repoRoot, 'refs', 'main'), 'utf8')).toBe(CHAT_COMMIT);
      for (const f of CHAT_FILES) {
        const link = path.join(folder, f);
        expect(fs.lstatSync(link).isSymbolicLink()).toBe(true);
        expect(fs.readlinkSync(link)).toMatch(/^\.\.\/\.\.\/blobs\/[0-9a-f]{40,64}$/);
      }
      expect(fs.readlinkSync(path.join(folder, 'model.safetensors'))).toBe(`../../blobs/${MODEL_SHA}`);
      expect(fs.readdirSync(path.join(repoRoot, 'blobs')).filter((b) => b.endsWith('.incomplete'))).toEqual([]);
      expect(fs.readdirSync(path.join(repoRoot, '.no_exist', CHAT_COMMIT)).sort()).toEqual([
        'chat_template.jinja',
        'model.safetensors.index.json',
        'special_tokens_map.json',
      ]);
      // The weights came through the CDN redirect; later requests were pinned to the commit.
      expect(server.log.some((r) => r.method === 'GET' && r.path === `/cdn/${MODEL_SHA}`)).toBe(true);
      expect(server.log.filter((r) => r.path.includes('/resolve/main/')).map((r) => r.path)).toEqual([
        '/test-org/chat-tiny/resolve/main/config.json',
      ]);

      // Progress: per file and overall, monotone, ending with an overall "done" that adds up.
      const total = CHAT_FILES.reduce((s, f) => s + fs.statSync(path.join(CHAT_TINY_DIR, f)).size, 0);
      for (const file of [null, ...CHAT_FILES]) {
        const seq = events.filter((e) => e.file === file);
        expect(seq.length).toBeGreaterThan(0);
        for (let i = 1; i < seq.length; i++) expect(seq[i].downloadedBytes).toBeGreaterThanOrEqual(seq[i - 1].downloadedBytes);
        expect(seq[seq.length - 1].done).toBe(true);
        expect(seq.filter((e) => e.done)).toHaveLength(1);
      }
      expect(events[events.length - 1]).toEqual({ file: null, downloadedBytes: total, totalBytes: total, done: true });
      expect(events.filter((e) => e.file === null && !e.done).every((e) => e.totalBytes === total)).toBe(true);

      server.log.length = 0;
      expect(await resolveModelFolder('test-org/chat-tiny', opts(cacheDir))).toBe(folder);
      expect(server.log).toEqual([]);
    },
    T,
  );

  it(
    'follows model.safetensors.index.json to every shard',
    async () => {
      const cacheDir = tempCache();
      const folder = await resolveModelFolder('test-org/tiny-moe', opts(cacheDir));
      expectSameBytes(folder, TINY_MOE_DIR, MOE_FILES);
      expect(server.log.some((r) => r.path.endsWith('/model.safetensors'))).toBe(false);
      server.log.length = 0;
      expect(await resolveModelFolder('test-org/tiny-moe', opts(cacheDir))).toBe(folder);
      expect(server.log).toEqual([]);
    },
    T,
  );

  it(
    'reuses a cache written by Python huggingface_hub without any request, online or offline',
    async () => {
      const cacheDir = tempCache();
      const commit = '0123456789abcdef0123456789abcdef01234567';
      const root = path.join(cacheDir, 'models--test-org--chat-tiny');
      fs.mkdirSync(path.join(root, 'blobs'), { recursive: true });
      fs.mkdirSync(path.join(root, 'snapshots', commit), { recursive: true });
      fs.mkdirSync(path.join(root, 'refs'), { recursive: true });
      for (const f of CHAT_FILES) {
        const bytes = fs.readFileSync(path.join(CHAT_TINY_DIR, f));
        fs.writeFileSync(path.join(root, 'blobs', sha256(bytes)), bytes);
        fs.symlinkSync(`../../blobs/${sha256(bytes)}`, path.join(root, 'snapshots', commit, f));
      }
      fs.writeFileSync(path.join(root, 'refs', 'main'), commit);
      const folder = await resolveModelFolder('test-org/chat-tiny', opts(cacheDir));
      expect(folder).toBe(path.join(root, 'snapshots', commit));
      expect(await resolveModelFolder('test-org/chat-tiny', opts(cacheDir, { offline: true }))).toBe(folder);
      expect(await resolveModelFolder('test-org/chat-tiny', opts(cacheDir, { revision: commit, offline: true }))).toBe(folder);
      expect(server.log).toEqual([]);
    },
    T,
  );

  it(
    'resumes a transfer cut off mid-file with a Range request and identical bytes',
    async () => {
      const cacheDir = tempCache();
      server.faults.cutOnce.add(MODEL_SHA);
      const folder = await resolveModelFolder('test-org/chat-tiny', opts(cacheDir));
      expectSameBytes(folder, CHAT_TINY_DIR, CHAT_FILES);
      const cdnGets = server.log.filter((r) => r.method === 'GET' && r.path === `/cdn/${MODEL_SHA}`);
      expect(cdnGets).toHaveLength(2);
      expect(cdnGets[0].range).toBeUndefined();
      expect(cdnGets[1].range).toMatch(/^bytes=[1-9]\d*-$/);
    },
    T,
  );

  it(
    'stops on abort, keeps the .incomplete file, and the next call resumes from it',
    async () => {
      const cacheDir = tempCache();
      const blobs = path.join(cacheDir, 'models--test-org--chat-tiny', 'blobs');
      server.faults.stall.add(MODEL_SHA);
      const controller = new AbortController();
      const run = resolveModelFolder(
        'test-org/chat-tiny',
        opts(cacheDir, {
          signal: controller.signal,
          onProgress: (p) => {
            if (p.file === 'model.safetensors' && p.downloadedBytes > 0) controller.abort();
          },
        }),
      );
      await expect(run).rejects.toMatchObject({ name: 'AbortError' });
      const partial = path.join(blobs, `${MODEL_SHA}.incomplete`);
      const kept = fs.statSync(partial).size;
      expect(kept).toBeGreaterThan(0);
      expect(fs.existsSync(path.join(blobs, MODEL_SHA))).toBe(false);

      server.faults.stall.clear();
      server.log.length = 0;
      const folder = await resolveModelFolder('test-org/chat-tiny', opts(cacheDir));
      expectSameBytes(folder, CHAT_TINY_DIR, CHAT_FILES);
      expect(server.log.filter((r) => r.method === 'GET').map((r) => r.range)).toEqual([`bytes=${kept}-`]);
      expect(fs.existsSync(partial)).toBe(false);
    },
    T,
  );

  it(
    'copies instead of symlinking when asked',
    async () => {
      const cacheDir = tempCache();
      const folder = await resolveModelFolder('test-org/chat-tiny', opts(cacheDir, { symlinks: false }));
      expect(fs.lstatSync(path.join(folder, 'model.safetensors')).isFile()).toBe(true);
      expectSameBytes(folder, CHAT_TINY_DIR, CHAT_FILES);
    },
    T,
  );
});

describe('resolveModelFolder: errors', () => {
  it(
    'names the repo and revision when the repo or revision does not exist',
    async () => {
      const cacheDir = tempCache();
      await expect(resolveModelFolder('test-org/nope', opts(cacheDir))).rejects.toThrow(RepoNotFoundError);
      await expect(resolveModelFolder('test-org/nope', opts(cacheDir))).rejects.toThrow(
        /Repository test-org\/nope not found .*revision "main"/,
      );
      await expect(resolveModelFolder('test-org/chat-tiny', opts(cacheDir, { revision: 'v9' }))).rejects.toThrow(
        /Revision "v9" not found in test-org\/chat-tiny/,
      );
    },
    T,
  );

  it(
    'says a token may be needed on 401, and sends the token as a Bearer header',
    async () => {
      const cacheDir = tempCache();
      await expect(resolveModelFolder('test-org/private', opts(cacheDir))).rejects.toThrow(HubAuthError);
      await expect(resolveModelFolder('test-org/private', opts(cacheDir))).rejects.toThrow(/token may be needed.*HF_TOKEN/);
      const folder = await resolveModelFolder('test-org/private', opts(cacheDir, { token: 'secret' }));
      expectSameBytes(folder, CHAT_TINY_DIR, CHAT_FILES);
      const other = tempCache();
      await resolveModelFolder('test-org/private', { cacheDir: other, env: { HF_ENDPOINT: server.url, HF_TOKEN: 'secret' } });
    },
    T,
  );

  it(
    'offline mode uses only the cache and names what is missing',
    async () => {
      const cacheDir = tempCache();
      await expect(resolveModelFolder('test-org/chat-tiny', opts(cacheDir, { offline: true }))).rejects.toThrow(OfflineCacheMissError);
      await expect(
        resolveModelFolder('test-org/chat-tiny', { cacheDir, endpoint: server.url, env: { HF_HUB_OFFLINE: '1' } }),
      ).rejects.toThrow(
        /Offline mode is on, so nothing is downloaded, and test-org\/chat-tiny \(revision "main"\) is not in the cache .*refs\/main/,
      );
      expect(server.log).toEqual([]);

      const folder = await resolveModelFolder('test-org/chat-tiny', opts(cacheDir));
      fs.rmSync(path.join(folder, 'model.safetensors'));
      server.log.length = 0;
      await expect(resolveModelFolder('test-org/chat-tiny', opts(cacheDir, { offline: true }))).rejects.toThrow(
        /is incomplete in .*missing model\.safetensors/,
      );
      expect(server.log).toEqual([]);
      // Online, only the missing link is restored (its blob is still cached): no GET.
      expect(await resolveModelFolder('test-org/chat-tiny', opts(cacheDir))).toBe(folder);
      expect(server.log.filter((r) => r.method === 'GET')).toEqual([]);
    },
    T,
  );

  it(
    'names the URL on a network failure',
    async () => {
      const closed = http.createServer();
      await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
      const { port } = closed.address() as AddressInfo;
      await new Promise<void>((r) => closed.close(() => r()));
      const err = resolveModelFolder('test-org/chat-tiny', { cacheDir: tempCache(), endpoint: `http://127.0.0.1:${port}`, env: {} });
      await expect(err).rejects.toThrow(HubNetworkError);
      await expect(
        resolveModelFolder('test-org/chat-tiny', { cacheDir: tempCache(), endpoint: `http://127.0.0.1:${port}`, env: {} }),
      ).rejects.toThrow(`Cannot reach http://127.0.0.1:${port}/test-org/chat-tiny/resolve/main/config.json`);
    },
    T,
  );

  it('returns an existing local folder as is and rejects what is neither folder nor repo id', async () => {
    expect(await resolveModelFolder(CHAT_TINY_DIR, { env: {} })).toBe(CHAT_TINY_DIR);
    await expect(resolveModelFolder('./no/such/folder', { env: {} })).rejects.toThrow(/neither an existing folder nor a hub repo id/);
    await expect(resolveModelFolder(path.join(CHAT_TINY_DIR, 'config.json'), { env: {} })).rejects.toThrow(/is a file/);
  });
});

describe('resolveCacheDir', () => {
  it('follows cacheDir, HF_HUB_CACHE, HF_HOME, XDG_CACHE_HOME, then ~/.cache', () => {
    expect(resolveCacheDir('/a', { HF_HUB_CACHE: '/b' })).toBe('/a');
    expect(resolveCacheDir(undefined, { HF_HUB_CACHE: '/b', HF_HOME: '/c' })).toBe('/b');
    expect(resolveCacheDir(undefined, { HF_HOME: '/c' })).toBe('/c/hub');
    expect(resolveCacheDir(undefined, { XDG_CACHE_HOME: '/x' })).toBe('/x/huggingface/hub');
    expect(resolveCacheDir(undefined, {})).toBe(path.join(os.homedir(), '.cache', 'huggingface', 'hub'));
  });
});
