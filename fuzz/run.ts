/**
 * Seeded mutation fuzzing of the safetensors reader and the config parser (fuzz/README.md).
 *
 *   npm run fuzz                          every target, FUZZ_SECONDS (default 60) each
 *   npm run fuzz -- config                one target
 *   npm run fuzz -- --replay FILE --target NAME   run one saved input here, with its stack trace
 *
 * FUZZ_SEED repeats a run; FUZZ_INPUT_BUDGET_MS (default 5000) is the longest one input may take.
 * Each target runs in a child process with a capped heap, so a hang or an allocation blow-up is
 * caught as a crash too. A crash writes its input under fuzz/crashes/ and exits 1.
 */
import { fork } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Random, randomRunSeed } from './random';
import { REPO, TARGETS, type FuzzTarget } from './targets';
import type { WorkerMessage } from './worker';

const CRASH_DIR = path.join(REPO, 'fuzz', 'crashes');
/** Heap of a child: far above what any input needs, far below what the machine has. */
const CHILD_HEAP_MB = 1024;
/** Loading the packages takes seconds on a busy machine; no input is running yet. */
const STARTUP_BUDGET_MS = 60_000;

function positiveNumber(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n) || n <= 0) {
    console.error(`fuzz: ${name} must be a positive number, got "${raw}"`);
    process.exit(2);
  }
  return n;
}

interface Crash {
  kind: 'crash' | 'hang' | 'died';
  index: number;
  detail: string;
}

/** Writes the input of a crash (rebuilt from its seed and index) and what happened to it. */
function saveCrash(target: FuzzTarget, seed: number, crash: Crash): string {
  fs.mkdirSync(CRASH_DIR, { recursive: true });
  const base = path.join(CRASH_DIR, `${target.name}-seed${seed}-input${crash.index}`);
  fs.writeFileSync(`${base}.bin`, target.generate(Random.forInput(seed, target.name, crash.index)));
  fs.writeFileSync(
    `${base}.txt`,
    `target ${target.name}, seed ${seed}, input ${crash.index}: ${crash.kind}\n\n${crash.detail}\n\n` +
      `replay: npm run fuzz -- --replay ${path.relative(REPO, `${base}.bin`)} --target ${target.name}\n`,
  );
  return `${base}.bin`;
}

function runTarget(target: FuzzTarget, seed: number, seconds: number, inputBudgetMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const child = fork(path.join(__dirname, 'worker.ts'), [target.name, String(seed), String(seconds)], {
      execArgv: [...process.execArgv, `--max-old-space-size=${CHILD_HEAP_MB}`],
      stdio: ['ignore', 'inherit', 'pipe', 'ipc'],
    });
    let stderr = '';
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr = (stderr + d).slice(-4000)));
    let current = -1;
    let lastSign = Date.now();
    let budget = STARTUP_BUDGET_MS;
    let finished: WorkerMessage | undefined;
    let crash: Crash | undefined;
    child.on('message', (m: WorkerMessage) => {
      lastSign = Date.now();
      if (m.kind === 'ready') budget = inputBudgetMs;
      else if (m.kind === 'start') current = m.index;
      else if (m.kind === 'crash') crash = { kind: 'crash', index: m.index, detail: m.error };
      else finished = m;
    });
    const watchdog = setInterval(() => {
      if (Date.now() - lastSign > budget && crash === undefined) {
        crash =
          current < 0
            ? { kind: 'died', index: -1, detail: `the worker did not start within ${budget} ms` }
            : { kind: 'hang', index: current, detail: `input ${current} ran longer than ${budget} ms` };
        child.kill('SIGKILL');
      }
    }, 100);
    child.on('exit', (code, signal) => {
      clearInterval(watchdog);
      if (crash === undefined && finished === undefined) {
        const oom = /heap out of memory|Allocation failed/i.test(stderr);
        crash = {
          kind: 'died',
          index: current,
          detail: `the worker exited (${signal ?? `code ${code}`})${oom ? ' out of memory' : ''} on input ${current}\n${stderr}`,
        };
      }
      if (crash !== undefined) {
        const file = crash.index >= 0 ? saveCrash(target, seed, crash) : undefined;
        console.log(
          `fuzz ${target.name}: CRASH (${crash.kind}) on input ${crash.index} of seed ${seed}${file ? `; input saved to ${path.relative(REPO, file)}` : ''}`,
        );
        console.log(
          crash.detail
            .split('\n')
            .slice(0, 12)
            .map((l) => `  ${l}`)
            .join('\n'),
        );
        if (file) console.log(`  replay: npm run fuzz -- --replay ${path.relative(REPO, file)} --target ${target.name}`);
        resolve(false);
        return;
      }
      const done = finished as Extract<WorkerMessage, { kind: 'done' }>;
      const rejected =
        Object.entries(done.rejected)
          .map(([k, v]) => `${v} ${k}`)
          .join(', ') || 'none';
      console.log(
        `fuzz ${target.name}: seed ${seed}, ${seconds} s: ${done.inputs} inputs, ${done.accepted} accepted, rejected: ${rejected} ` +
          `(${done.distinctMessages} distinct messages); no crash`,
      );
      resolve(true);
    });
  });
}

/** Runs one saved input in this process, printing the outcome or the full error. */
function replay(file: string, targetName: string | undefined): number {
  const target = targetName === undefined ? undefined : TARGETS[targetName];
  if (target === undefined) {
    console.error(`fuzz: --replay needs --target, one of ${Object.keys(TARGETS).join(', ')}`);
    return 2;
  }
  const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'graniteflow-fuzz-replay-'));
  try {
    const input = path.join(scratch, target.fileName);
    fs.copyFileSync(file, input);
    const outcome = target.check(input);
    console.log(outcome.kind === 'accepted' ? 'accepted' : `rejected (${outcome.errorClass}): ${outcome.message}`);
    return 0;
  } catch (err) {
    console.error(err);
    return 1;
  } finally {
    fs.rmSync(scratch, { recursive: true, force: true });
  }
}

async function main(): Promise<number> {
  const args = process.argv.slice(2);
  const replayAt = args.indexOf('--replay');
  if (replayAt >= 0) {
    const targetAt = args.indexOf('--target');
    return replay(args[replayAt + 1], targetAt >= 0 ? args[targetAt + 1] : undefined);
  }
  const names = args.length > 0 ? args : Object.keys(TARGETS);
  const unknown = names.filter((n) => !(n in TARGETS));
  if (unknown.length > 0) {
    console.error(`fuzz: unknown target ${unknown.join(', ')}; targets: ${Object.keys(TARGETS).join(', ')}`);
    return 2;
  }
  const seconds = positiveNumber('FUZZ_SECONDS', 60);
  const inputBudgetMs = positiveNumber('FUZZ_INPUT_BUDGET_MS', 5000);
  const seed = process.env.FUZZ_SEED ? Number(process.env.FUZZ_SEED) >>> 0 : randomRunSeed();
  console.log(`fuzz: seed ${seed} (FUZZ_SEED=${seed} repeats this run), ${seconds} s per target, ${inputBudgetMs} ms per input`);
  let clean = true;
  for (const name of names) clean = (await runTarget(TARGETS[name], seed, seconds, inputBudgetMs)) && clean;
  return clean ? 0 : 1;
}

main().then((code) => process.exit(code));
