/**
 * llama.cpp as the benchmark's yardstick: the same weights as a graniteflow checkpoint, written as
 * GGUF by `exportGguf`, measured by llamacpp_bench.mjs through node-llama-cpp (what a Node user
 * would pick instead). node-llama-cpp is not a dependency: it is used from the folder it is
 * installed in (GRANITEFLOW_LLAMACPP_DIR, default $TMPDIR/llamacpp).
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { exportGguf, type GgufExportFormat } from '../src';

/** What llamacpp_bench.mjs prints. */
export interface LlamaCppMeasurement {
  model: string;
  threads: number;
  loadSeconds: number;
  /** Tokens per second by prompt length (128 and 512). */
  prefill: Record<string, number>;
  decode: number;
  peakRssGiB: number;
}

/** One format's run: the measurement and the GGUF it ran. */
export interface LlamaCppRun extends LlamaCppMeasurement {
  format: GgufExportFormat;
  ggufBytes: number;
  exportSeconds: number;
}

export interface LlamaCppBenchOptions {
  /** Folder holding node_modules/node-llama-cpp (default: {@link llamaCppDir}). */
  llamaDir?: string;
  /** Threads for llama.cpp (default 2, the machine's cores). */
  threads?: number;
  /** Where the GGUFs are written, one at a time, each deleted after its run (default: a temporary folder). */
  workDir?: string;
  /** Kill a run that takes longer (default 15 minutes). */
  timeoutMs?: number;
  /** The measuring script (default bench/llamacpp_bench.mjs, the anchor's method). */
  script?: string;
}

const RESOLVE_HOOK = path.join(__dirname, 'llamacpp_resolve.mjs');
const BENCH_SCRIPT = path.join(__dirname, 'llamacpp_bench.mjs');

/** The node-llama-cpp folder to use, or null (with the reason) when there is none. */
export function llamaCppDir(): { dir: string } | { reason: string } {
  const dir = process.env.GRANITEFLOW_LLAMACPP_DIR || path.join(os.tmpdir(), 'llamacpp');
  if (!fs.existsSync(path.join(dir, 'node_modules', 'node-llama-cpp', 'package.json'))) {
    return { reason: `node-llama-cpp is not installed in ${dir} (npm i -E node-llama-cpp@3.21.1 there, or set GRANITEFLOW_LLAMACPP_DIR)` };
  }
  return { dir };
}

/**
 * Writes the checkpoint in `checkpointDir` as a GGUF in each of `formats` (the same weights, 2-D
 * ones in that format) and measures each in llama.cpp, one after the other, in a child process
 * started in the node-llama-cpp folder.
 */
export async function benchLlamaCpp(
  checkpointDir: string,
  formats: readonly GgufExportFormat[],
  options: LlamaCppBenchOptions = {},
): Promise<LlamaCppRun[]> {
  const found = options.llamaDir !== undefined ? { dir: options.llamaDir } : llamaCppDir();
  if ('reason' in found) throw new Error(found.reason);
  const threads = options.threads ?? 2;
  const workDir = options.workDir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'graniteflow-gguf-'));
  const ownWorkDir = options.workDir === undefined;
  const runs: LlamaCppRun[] = [];
  try {
    for (const format of formats) {
      const gguf = path.join(workDir, `${path.basename(checkpointDir)}-${format}.gguf`);
      const t0 = performance.now();
      const written = await exportGguf(checkpointDir, gguf, { format });
      const exportSeconds = (performance.now() - t0) / 1000;
      try {
        const child = spawnSync(process.execPath, ['--import', RESOLVE_HOOK, options.script ?? BENCH_SCRIPT, gguf, String(threads)], {
          cwd: found.dir,
          env: { ...process.env, GRANITEFLOW_LLAMACPP_DIR: found.dir },
          encoding: 'utf8',
          stdio: ['ignore', 'pipe', 'pipe'],
          timeout: options.timeoutMs ?? 15 * 60_000,
          maxBuffer: 16 << 20,
        });
        if (child.status !== 0) {
          throw new Error(
            `llama.cpp (${format}) failed: exit ${child.status}${child.signal ? `, signal ${child.signal}` : ''}: ${(child.stderr ?? '').slice(-1500)}`,
          );
        }
        const measured = JSON.parse(child.stdout.trim().split('\n').pop()!) as LlamaCppMeasurement;
        runs.push({ ...measured, format, ggufBytes: written.bytes, exportSeconds });
      } finally {
        fs.rmSync(gguf, { force: true });
      }
    }
  } finally {
    if (ownWorkDir) fs.rmSync(workDir, { recursive: true, force: true });
  }
  return runs;
}
