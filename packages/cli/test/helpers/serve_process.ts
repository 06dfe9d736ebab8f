/**
 * `graniteflow serve` as a child process on 127.0.0.1 (port 0), and raw HTTP requests to it:
 * node:http rather than fetch, because fetch does not let a test set the Host header.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as http from 'node:http';
import { assertBuilt, BIN, REPO_DIR } from './cli';

export interface ServeProcess {
  child: ChildProcess;
  port: number;
  /** http://127.0.0.1:PORT */
  origin: string;
  /** What the process wrote on stderr so far. */
  stderr(): string;
  /** SIGKILLs the process (if still running) and waits for it. */
  stop(): Promise<void>;
}

/** Starts `graniteflow serve --port 0 ...args` and resolves once it prints its address. */
export function startServe(args: string[], env: Record<string, string> = {}): Promise<ServeProcess> {
  assertBuilt();
  const child = spawn(process.execPath, [BIN, 'serve', '--port', '0', ...args], {
    cwd: REPO_DIR,
    env: { ...process.env, GRANITEFLOW_BACKEND: 'wasm', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGKILL');
      await exited;
    }
  };
  return new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => {
      void stop();
      reject(new Error(`serve did not start: ${stderr}`));
    }, 30_000);
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`serve exited with ${code}: ${stderr}`));
    });
    child.stdout!.setEncoding('utf8').on('data', (d: string) => {
      out += d;
      const m = /at http:\/\/127\.0\.0\.1:(\d+)\/v1/.exec(out);
      if (m) {
        clearTimeout(timer);
        const port = Number(m[1]);
        resolve({ child, port, origin: `http://127.0.0.1:${port}`, stderr: () => stderr, stop });
      }
    });
  });
}

export interface RawResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
  /** The body parsed as JSON (undefined when it is not JSON). */
  json: unknown;
}

/** The OpenAI-style error of a response, or an exception saying what came instead. */
export function errorOf(res: RawResponse): { message: string; type: string; param: string | null; code: string | null } {
  const error = (res.json as { error?: unknown } | undefined)?.error as ReturnType<typeof errorOf> | undefined;
  if (typeof error?.message !== 'string') throw new Error(`expected an OpenAI error body, got ${res.status} ${res.body.slice(0, 300)}`);
  return error;
}

/** One HTTP request to 127.0.0.1:`port` with exactly these headers (a JSON body is sent as given). */
export function request(
  port: number,
  { method = 'GET', path = '/', headers = {}, body }: { method?: string; path?: string; headers?: Record<string, string>; body?: string },
): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method, path, headers, agent: false, timeout: 30_000 }, (res) => {
      let text = '';
      res.setEncoding('utf8').on('data', (d: string) => (text += d));
      res.on('end', () => {
        let json: unknown;
        try {
          json = JSON.parse(text);
        } catch {
          json = undefined;
        }
        resolve({ status: res.statusCode!, headers: res.headers, body: text, json });
      });
    });
    req.on('timeout', () => req.destroy(new Error(`${method} ${path} timed out`)));
    req.on('error', reject);
    req.end(body);
  });
}

/** Polls GET /health every 20 ms until `until` settles; resolves with the slowest answer, in ms. */
export async function slowestHealth(port: number, until: Promise<unknown>): Promise<number> {
  let done = false;
  void until.finally(() => (done = true)).catch(() => {});
  let slowest = 0;
  while (!done) {
    const start = performance.now();
    const res = await request(port, { path: '/health' });
    if (res.status !== 200) throw new Error(`/health answered ${res.status}`);
    slowest = Math.max(slowest, performance.now() - start);
    await new Promise((r) => setTimeout(r, 20));
  }
  return slowest;
}
