// `graniteflow download` against a loopback server that speaks the hub's file protocol; the model
// then loads from the standard cache layout, offline.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import type { AddressInfo } from 'node:net';
import { GOLDEN, runCli } from './helpers/cli';

const REPO = 'test-org/tiny-granite';
const COMMIT = 'a'.repeat(40);
const FILES = ['config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json', 'generation_config.json'];

let hub: http.Server;
let endpoint: string;
let tmp: string;
const requests: string[] = [];

beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'graniteflow-cli-download-'));
  const blobs = new Map(FILES.map((f) => [f, fs.readFileSync(path.join(GOLDEN, 'chat_tiny', f))]));
  hub = http.createServer((req, res) => {
    requests.push(`${req.method} ${req.url}`);
    const m = /^\/([^/]+\/[^/]+)\/resolve\/([^/]+)\/(.+)$/.exec(req.url ?? '');
    const body = m && m[1] === REPO ? blobs.get(decodeURIComponent(m[3])) : undefined;
    if (!body) {
      res.writeHead(404, m && m[1] !== REPO ? { 'X-Error-Code': 'RepoNotFound' } : {});
      res.end();
      return;
    }
    res.writeHead(200, {
      'X-Repo-Commit': COMMIT,
      ETag: `"${createHash('sha256').update(body).digest('hex')}"`,
      'Content-Length': body.length,
    });
    res.end(req.method === 'HEAD' ? undefined : body);
  });
  await new Promise<void>((r) => hub.listen(0, '127.0.0.1', r));
  endpoint = `http://127.0.0.1:${(hub.address() as AddressInfo).port}`;
});

afterAll(async () => {
  await new Promise((r) => hub.close(r));
  fs.rmSync(tmp, { recursive: true, force: true });
});

test('download fills the Hugging Face cache with a progress bar; the model then runs offline from it', async () => {
  const env = { HF_ENDPOINT: endpoint, HF_HUB_CACHE: path.join(tmp, 'hub') };
  const r = await runCli(['download', REPO], { env });
  expect(r.stderr).not.toMatch(/error/);
  expect(r.code).toBe(0);
  const folder = r.stdout.trim();
  expect(folder).toBe(path.join(tmp, 'hub', 'models--test-org--tiny-granite', 'snapshots', COMMIT));
  for (const f of FILES) expect(fs.existsSync(path.join(folder, f))).toBe(true);
  expect(r.stderr).toMatch(/^Downloading test-org\/tiny-granite \(\d+(\.\d)? KiB\)…$/m);
  expect(r.stderr).toMatch(/^Downloading test-org\/tiny-granite: \d+(\.\d)? KiB in [\d.]+ s$/m);

  // A second download finds everything in the cache and fetches no file again.
  const gets = requests.filter((q) => q.startsWith('GET')).length;
  const again = await runCli(['download', REPO], { env });
  expect(again.code).toBe(0);
  expect(again.stdout.trim()).toBe(folder);
  expect(requests.filter((q) => q.startsWith('GET')).length).toBe(gets);

  const expectations = JSON.parse(fs.readFileSync(path.join(GOLDEN, 'chat_tiny', 'text_expectations.json'), 'utf8')) as { cases: { prompt: string; text: string }[] };
  const c = expectations.cases[0];
  const generated = await runCli(['generate', '--offline', '--quiet', '--model', REPO, '--temperature', '0', '--max-tokens', '8', c.prompt], { env: { HF_HUB_CACHE: env.HF_HUB_CACHE } });
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
