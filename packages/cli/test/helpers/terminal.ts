/**
 * Runs the BUILT command on a real terminal (a pseudo-terminal made by pty_proxy.py) and drives it
 * as a user would: type keys, wait for what the screen shows. For behaviour that only exists on a
 * terminal, such as Ctrl-C reaching readline as a key rather than as a signal.
 */
import { spawn } from 'node:child_process';
import * as path from 'node:path';
import { assertBuilt, BIN, REPO_DIR } from './cli';

const PROXY = path.join(__dirname, 'pty_proxy.py');

export const CTRL_C = '\x03';
export const CTRL_D = '\x04';

/** Terminal output as text: escape sequences (cursor moves, line clears) and carriage returns removed. */
function plain(output: string): string {
  return output.replace(/\x1b\[[0-9;?]*[ -/]*[@-~]/g, '').replace(/\r/g, '');
}

/** The end of a long screen, for error messages. */
function tail(text: string): string {
  return text.length > 2000 ? `…${text.slice(-2000)}` : text;
}

export class TerminalSession {
  private written = '';
  /** Where the next {@link waitFor} starts looking: waits match one after another, as in expect(1). */
  private cursor = 0;
  private waiters: (() => void)[] = [];
  private ended = false;
  /** The command's exit status (124: killed after `timeoutMs`). */
  readonly exit: Promise<number | null>;
  private readonly child;

  /** `env` adds to the test's environment; a variable set to undefined is left out. */
  constructor(args: readonly string[], { env, timeoutMs = 60_000 }: { env?: Record<string, string | undefined>; timeoutMs?: number } = {}) {
    assertBuilt();
    this.child = spawn('python3', [PROXY, String(timeoutMs / 1000), process.execPath, BIN, ...args], {
      cwd: REPO_DIR,
      env: { ...process.env, GRANITEFLOW_BACKEND: 'wasm', ...env },
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    this.child.stdout.setEncoding('utf8').on('data', (d: string) => {
      this.written += d;
      this.notify();
    });
    this.exit = new Promise((resolve, reject) => {
      this.child.on('error', (err) => reject(new Error(`Cannot run python3 for the pseudo-terminal: ${err.message}`)));
      this.child.on('close', (code) => {
        this.ended = true;
        this.notify();
        resolve(code);
      });
    });
  }

  /** Everything the command wrote to the terminal, escape sequences and all. */
  get output(): string {
    return this.written;
  }

  /** Everything the terminal has shown, as text. */
  get screen(): string {
    return plain(this.written);
  }

  /** Types `keys` into the terminal. */
  type(keys: string): void {
    this.child.stdin.write(keys);
  }

  /**
   * Resolves with the first match of `pattern` in what the screen shows after the previous match;
   * rejects, with the screen so far, after `timeoutMs` or when the command ends first.
   */
  waitFor(pattern: RegExp, timeoutMs = 20_000): Promise<RegExpExecArray> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const rest = this.screen.slice(this.cursor);
        const match = pattern.exec(rest);
        if (match) {
          this.cursor += match.index + match[0].length;
          done();
          resolve(match);
        } else if (this.ended) {
          done();
          reject(new Error(`The command ended before the screen showed ${pattern}; it shows:\n${tail(rest)}`));
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`The screen did not show ${pattern} within ${timeoutMs} ms; it shows:\n${tail(this.screen.slice(this.cursor))}`));
      }, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        this.waiters = this.waiters.filter((w) => w !== check);
      };
      this.waiters.push(check);
      check();
    });
  }

  /** Kills the command if it still runs (for test cleanup). */
  kill(): void {
    if (!this.ended) this.child.kill('SIGKILL');
  }

  private notify(): void {
    for (const waiter of [...this.waiters]) waiter();
  }
}
