// Runs the runnable code of the guides (apps/docs/guides/*.md) and of the READMEs (the root's and
// every package's): in each file, the blocks fenced as ```ts runnable, in order, as one ES module
// (top-level await allowed) importing the workspace's built packages, through tsx, once per backend
// (GRANITEFLOW_BACKEND, which `initBackend()` and `fromPretrained` read): a guide's front matter
// `backends: cpu, wasm`, or else cpu, wasm and native. Other blocks (```ts without `runnable`, ```sh)
// are shown only. A file whose code throws, or exits non-zero, fails the run with the file and
// backend named. `node test/run_guides.mjs serving` runs only the files whose path contains "serving".
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const docs = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const root = path.resolve(docs, '../..');
const guides = path.join(docs, 'guides');
const only = process.argv[2];
const work = path.join(docs, '.guides-run');
const TIMEOUT_MS = 10 * 60 * 1000;

/** The front matter's `key: value` lines, or {} when the file has none. */
function frontMatter(text) {
  const m = /^---\n([\s\S]*?)\n---\n/.exec(text);
  if (!m) return {};
  return Object.fromEntries(
    m[1]
      .split('\n')
      .map((line) => line.split(/:\s*/, 2))
      .filter((kv) => kv.length === 2),
  );
}

function codeOf(text) {
  return [...text.matchAll(/^```ts runnable\n([\s\S]*?)^```$/gm)].map((m) => m[1]).join('\n');
}

/** Every markdown file whose runnable blocks are run: the guides, then the READMEs. */
function documents() {
  const guideFiles = fs
    .readdirSync(guides)
    .filter((f) => f.endsWith('.md'))
    .sort()
    .map((f) => path.join(guides, f));
  const packages = path.join(root, 'packages');
  const readmes = [
    path.join(root, 'README.md'),
    ...fs
      .readdirSync(packages)
      .sort()
      .map((p) => path.join(packages, p, 'README.md')),
  ];
  return [...guideFiles, ...readmes.filter((f) => fs.existsSync(f))];
}

fs.rmSync(work, { recursive: true, force: true });
fs.mkdirSync(work, { recursive: true });
let failed = 0;
let ran = 0;
for (const document of documents()) {
  const file = path.relative(root, document);
  if (only !== undefined && !file.includes(only)) continue;
  const text = fs.readFileSync(document, 'utf8');
  const code = codeOf(text);
  if (code.trim() === '') continue;
  const script = path.join(work, file.replace(/[\\/]/g, '__').replace(/\.md$/, '.mts'));
  fs.writeFileSync(script, code);
  const backends = (frontMatter(text).backends ?? 'cpu, wasm, native').split(',').map((b) => b.trim());
  for (const backend of backends) {
    const started = performance.now();
    const run = spawnSync(process.execPath, ['--import', 'tsx', script], {
      cwd: docs,
      encoding: 'utf8',
      timeout: TIMEOUT_MS,
      env: { ...process.env, GRANITEFLOW_BACKEND: backend },
    });
    const seconds = ((performance.now() - started) / 1000).toFixed(1);
    ran++;
    if (run.status === 0) {
      console.log(`ok   ${file} on ${backend} (${seconds} s)${run.stdout.trim() ? `\n${run.stdout.trim().replace(/^/gm, '     ')}` : ''}`);
    } else {
      failed++;
      const why = run.error ? run.error.message : run.signal ? `killed by ${run.signal}` : `exit ${run.status}`;
      console.error(`FAIL ${file} on ${backend} (${why}, ${seconds} s)\n${run.stdout}${run.stderr}`);
    }
  }
}
fs.rmSync(work, { recursive: true, force: true });
console.log(`${ran} run(s) of guide and README code, ${failed} failed`);
process.exit(failed > 0 || ran === 0 ? 1 : 0);
