// Runs the code of every guide whose front matter says `test: true`: its ```ts blocks, in order, as
// one ES module (top-level await allowed) importing the workspace's built packages, through tsx,
// once per backend (GRANITEFLOW_BACKEND, which the guides' `initBackend()` reads): the front matter's
// `backends: cpu, wasm` or else cpu, wasm and native. A guide whose code throws, or exits non-zero,
// fails the run with the guide and backend named.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const docs = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const guides = path.join(docs, 'guides');
const work = path.join(docs, '.guides-run');
const TIMEOUT_MS = 10 * 60 * 1000;

/** The front matter's `key: value` lines, or {} when the file has none. */
function frontMatter(text) {
  const m = /^---\n([\s\S]*?)\n---\n/.exec(text);
  if (!m) return {};
  return Object.fromEntries(m[1].split('\n').map((line) => line.split(/:\s*/, 2)).filter((kv) => kv.length === 2));
}

function codeOf(text) {
  return [...text.matchAll(/^```ts\n([\s\S]*?)^```$/gm)].map((m) => m[1]).join('\n');
}

fs.rmSync(work, { recursive: true, force: true });
fs.mkdirSync(work, { recursive: true });
let failed = 0;
let ran = 0;
for (const file of fs.readdirSync(guides).filter((f) => f.endsWith('.md')).sort()) {
  const text = fs.readFileSync(path.join(guides, file), 'utf8');
  if (frontMatter(text).test !== 'true') continue;
  const code = codeOf(text);
  if (code.trim() === '') {
    console.error(`${file}: marked test: true but has no \`\`\`ts block`);
    failed++;
    continue;
  }
  const script = path.join(work, file.replace(/\.md$/, '.mts'));
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
console.log(`${ran} guide run(s), ${failed} failed`);
process.exit(failed > 0 || ran === 0 ? 1 : 0);
