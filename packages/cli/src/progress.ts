/**
 * A one-line progress bar on stderr. On a terminal it redraws in place (at most ~10 times a
 * second); elsewhere (a pipe, a log file, a CI job) it writes one line when it starts and one when
 * it ends, so logs stay short. For bytes it shows the transfer speed (smoothed) and, when the total
 * is known, the time left; the last line gives the average speed and the time taken.
 */
import { formatBytes, type DownloadProgress } from '@graniteflow/granite';
import { formatDuration } from './format';

/** Where the bar is drawn: a writable stream, TTY or not. */
export interface ProgressStream {
  write(text: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

export interface ProgressBarOptions {
  /** `bytes` shows sizes (12.3 MiB / 1.2 GiB), speed and time left; `count` shows plain numbers. */
  unit?: 'bytes' | 'count';
  /** Minimum milliseconds between redraws on a terminal. */
  intervalMs?: number;
  /** Draw nothing (e.g. --quiet). */
  silent?: boolean;
  /** The clock, in milliseconds (default `Date.now`; tests pass a fake one). */
  now?: () => number;
}

/** Bytes are measured over windows of at least this many milliseconds before they count toward the speed. */
export const SPEED_SAMPLE_MS = 250;
/**
 * Time constant of the speed's exponential moving average, in milliseconds: a window of `dt`
 * milliseconds weighs `1 - exp(-dt / SPEED_TIME_CONSTANT_MS)`, so the shown speed follows a change
 * within a few seconds whatever the rate of updates, and one slow or fast burst does not swing it.
 */
export const SPEED_TIME_CONSTANT_MS = 3000;

/** Bytes per second for people: `12.3 MiB/s`. */
export function formatSpeed(bytesPerSecond: number): string {
  return `${formatBytes(bytesPerSecond)}/s`;
}

/** A progress bar for one task of known (or later known) size. */
export class ProgressBar {
  private current = 0;
  private total = 0;
  private lastDraw = -Infinity;
  private started = false;
  private finished = false;
  private readonly unit: 'bytes' | 'count';
  private readonly intervalMs: number;
  private readonly silent: boolean;
  private readonly now: () => number;
  private readonly startTime: number;
  /** Bytes that arrived while the bar ran (a resumed download's earlier bytes not counted). */
  private transferred = 0;
  /** The start of the speed window being measured: time and amount then. */
  private sampleTime = 0;
  private sampleAmount = 0;
  /** The smoothed speed in units per second; undefined until a first window is complete. */
  private speed: number | undefined;

  constructor(
    private readonly stream: ProgressStream,
    private label: string,
    options: ProgressBarOptions = {},
  ) {
    this.unit = options.unit ?? 'bytes';
    this.intervalMs = options.intervalMs ?? 100;
    this.silent = options.silent ?? false;
    this.now = options.now ?? Date.now;
    this.startTime = this.now();
  }

  private amount(n: number): string {
    return this.unit === 'bytes' ? formatBytes(n) : String(n);
  }

  /** The smoothed speed in bytes (or items) per second, once there is one. */
  get rate(): number | undefined {
    return this.speed;
  }

  /** Folds `current` at time `now` into the transferred amount and the smoothed speed. */
  private sample(current: number, now: number): void {
    if (!this.started || current < this.sampleAmount) {
      // The first update, or the amount went back (a download that starts a file over): measure
      // from here. What was there at the first update (resumed bytes) is not counted as transferred.
      this.sampleTime = now;
      this.sampleAmount = current;
      return;
    }
    const dt = now - this.sampleTime;
    if (dt < SPEED_SAMPLE_MS) return;
    const delta = current - this.sampleAmount;
    this.transferred += delta;
    const windowSpeed = (delta * 1000) / dt;
    const weight = 1 - Math.exp(-dt / SPEED_TIME_CONSTANT_MS);
    this.speed = this.speed === undefined ? windowSpeed : this.speed + weight * (windowSpeed - this.speed);
    this.sampleTime = now;
    this.sampleAmount = current;
  }

  /** Sets progress; `detail` (e.g. the tensor being read) is shown after the numbers on a terminal. */
  update(current: number, total: number, detail = ''): void {
    if (this.silent || this.finished) return;
    const now = this.now();
    this.sample(current, now);
    this.current = current;
    this.total = total;
    if (!this.started) {
      this.started = true;
      if (!this.stream.isTTY) this.stream.write(`${this.label}${total > 0 ? ` (${this.amount(total)})` : ''}…\n`);
    }
    if (!this.stream.isTTY) return;
    if (now - this.lastDraw < this.intervalMs && (total <= 0 || current < total)) return;
    this.lastDraw = now;
    this.draw(detail);
  }

  /** "12.3 MiB/s ETA 1m05s" (bytes only): the speed once measured, the time left when the total is known. */
  private speedAndEta(): string {
    if (this.unit !== 'bytes' || this.speed === undefined) return '';
    let text = formatSpeed(this.speed);
    if (this.total > 0 && this.current < this.total && this.speed > 0) {
      text += ` ETA ${formatDuration(((this.total - this.current) / this.speed) * 1000)}`;
    }
    return text;
  }

  private draw(detail: string): void {
    const columns = this.stream.columns ?? 80;
    // An unknown total (0) shows the amount so far and an empty bar.
    const fraction = this.total > 0 ? Math.min(1, this.current / this.total) : 0;
    let numbers =
      this.total > 0
        ? `${(fraction * 100).toFixed(0).padStart(3)}% ${this.amount(this.current)}/${this.amount(this.total)}`
        : this.amount(this.current);
    const speed = this.speedAndEta();
    if (speed) numbers += ` ${speed}`;
    const width = Math.max(10, Math.min(30, columns - this.label.length - numbers.length - 8));
    const filled = Math.round(fraction * width);
    let line = `${this.label} [${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${numbers}`;
    if (detail) line += ` ${detail}`;
    if (line.length > columns - 1) line = line.slice(0, columns - 1);
    // \x1b[K clears what a longer previous line left behind.
    this.stream.write(`\r${line}\x1b[K`);
  }

  /**
   * Marks the task complete: the line ends with the amount and the time taken, and for bytes the
   * average speed of what was transferred (`Downloading x: 1.2 GiB in 95.0 s (12.9 MiB/s)`).
   */
  done(message?: string): void {
    if (this.silent || this.finished) return;
    const now = this.now();
    if (this.started) this.sample(this.current, now);
    // The last window, however short, still counts toward the average.
    this.transferred += this.current - this.sampleAmount;
    this.sampleAmount = this.current;
    this.finished = true;
    if (!this.started) return;
    const elapsedMs = now - this.startTime;
    const seconds = (elapsedMs / 1000).toFixed(1);
    let text = message ?? `${this.label}: ${this.amount(Math.max(this.total, this.current))} in ${seconds} s`;
    if (message === undefined && this.unit === 'bytes' && this.transferred > 0 && elapsedMs > 0) {
      text += ` (${formatSpeed((this.transferred * 1000) / elapsedMs)})`;
    }
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
