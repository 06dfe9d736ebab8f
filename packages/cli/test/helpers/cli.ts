/** Runs the BUILT command (dist/bin.js) as a child process, as users run it. */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

export const PACKAGE_DIR = path.resolve(__dirname, '..', '..');
export const REPO_DIR = path.resolve(PACKAGE_DIR, '..', '..');
export const BIN = path.join(PACKAGE_DIR, 'dist', 'bin.js');
export const GOLDEN = path.join(REPO_DIR, 'fixtures', 'golden');

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export function assertBuilt(): void {
  if (!fs.existsSync(BIN)) {
    throw new Error(`${BIN} is missing: build first (npx tsc -b tsconfig.build.json in packages/cli, or nx run @graniteflow/cli:test).`);
  }
}

/** Runs `graniteflow ...args` to completion (killed after `timeoutMs`). */
export function runCli(
  args: string[],
  { input, env, timeoutMs = 60_000, cwd }: { input?: string; env?: Record<string, string>; timeoutMs?: number; cwd?: string } = {},
): Promise<RunResult> {
  assertBuilt();
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], {
      cwd: cwd ?? REPO_DIR,
      env: { ...process.env, GRANITEFLOW_BACKEND: 'wasm', ...env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
    child.stdin.end(input ?? '');
  });
}

/** What every runtime-error test checks: one paragraph, no stack trace. */
export function expectCleanError(r: RunResult, code: number): void {
  expect(r.code).toBe(code);
  const errorLines = r.stderr.split('\n').filter((l) => l.startsWith('graniteflow: error:'));
  expect(errorLines).toHaveLength(1);
  expect(r.stderr).not.toMatch(/\n\s+at .+\(.+:\d+:\d+\)/); // no stack frames
  expect(r.stderr).not.toMatch(/node:internal|TypeError|ReferenceError/);
}
