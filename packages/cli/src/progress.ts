/**
 * A one-line progress bar on stderr. On a terminal it redraws in place (at most ~10 times a
 * second); elsewhere (a pipe, a log file, a CI job) it writes one line when it starts and one when
 * it ends, so logs stay short.
 */
import { formatBytes, type DownloadProgress } from '@graniteflow/granite';

/** Where the bar is drawn: a writable stream, TTY or not. */
export interface ProgressStream {
  write(text: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

export interface ProgressBarOptions {
  /** `bytes` shows sizes (12.3 MiB / 1.2 GiB), `count` shows plain numbers. */
  unit?: 'bytes' | 'count';
  /** Minimum milliseconds between redraws on a terminal. */
  intervalMs?: number;
  /** Draw nothing (e.g. --quiet). */
  silent?: boolean;
}

/** A progress bar for one task of known (or later known) size. */
export class ProgressBar {
  private current = 0;
  private total = 0;
  private lastDraw = 0;
  private started = false;
  private finished = false;
  private readonly unit: 'bytes' | 'count';
  private readonly intervalMs: number;
  private readonly silent: boolean;
  private readonly startTime = Date.now();

  constructor(
    private readonly stream: ProgressStream,
    private label: string,
    options: ProgressBarOptions = {},
  ) {
    this.unit = options.unit ?? 'bytes';
    this.intervalMs = options.intervalMs ?? 100;
    this.silent = options.silent ?? false;
  }

  private amount(n: number): string {
    return this.unit === 'bytes' ? formatBytes(n) : String(n);
  }

  /** Sets progress; `detail` (e.g. the tensor being read) is shown after the numbers on a terminal. */
  update(current: number, total: number, detail = ''): void {
    if (this.silent || this.finished) return;
    this.current = current;
    this.total = total;
    if (!this.started) {
      this.started = true;
      if (!this.stream.isTTY) this.stream.write(`${this.label}${total > 0 ? ` (${this.amount(total)})` : ''}…\n`);
    }
    if (!this.stream.isTTY) return;
    const now = Date.now();
    if (now - this.lastDraw < this.intervalMs && (total <= 0 || current < total)) return;
    this.lastDraw = now;
    this.draw(detail);
  }

  private draw(detail: string): void {
    const columns = this.stream.columns ?? 80;
    // An unknown total (0) shows the amount so far and an empty bar.
    const fraction = this.total > 0 ? Math.min(1, this.current / this.total) : 0;
    const numbers =
      this.total > 0 ? `${(fraction * 100).toFixed(0).padStart(3)}% ${this.amount(this.current)}/${this.amount(this.total)}` : this.amount(this.current);
    const width = Math.max(10, Math.min(30, columns - this.label.length - numbers.length - 8));
    const filled = Math.round(fraction * width);
    let line = `${this.label} [${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${numbers}`;
    if (detail) line += ` ${detail}`;
    if (line.length > columns - 1) line = line.slice(0, columns - 1);
    // \x1b[K clears what a longer previous line left behind.
    this.stream.write(`\r${line}\x1b[K`);
  }

  /** Marks the task complete: the bar shows 100% and the elapsed time, and the line ends. */
  done(message?: string): void {
    if (this.silent || this.finished) return;
    this.finished = true;
    if (!this.started) return;
    const seconds = ((Date.now() - this.startTime) / 1000).toFixed(1);
    const text = message ?? `${this.label}: ${this.amount(Math.max(this.total, this.current))} in ${seconds} s`;
    this.stream.write(this.stream.isTTY ? `\r${text}\x1b[K\n` : `${text}\n`);
  }
}

/**
 * A hub download's progress events drawn as one bar labelled `Downloading <name>`: the overall
 * events (file null) drive it, the per-file events name the file being fetched, and a download
 * that found everything in the cache draws nothing.
 */
export function downloadProgressBar(stream: ProgressStream, name: string, silent: boolean): (p: DownloadProgress) => void {
  const bar = new ProgressBar(stream, `Downloading ${name}`, { silent });
  let currentFile = '';
  return (p) => {
    if (p.file !== null) {
      currentFile = p.file;
      return;
    }
    if (p.done && p.downloadedBytes === 0) return; // everything was already in the cache
    bar.update(p.downloadedBytes, p.totalBytes ?? 0, currentFile);
    if (p.done) bar.done();
  };
}
