/**
 * The load generator's side of serve_load.ts: streaming chat completions through fetch (the
 * server-sent events parsed by hand), multi-turn conversations, the server's /metrics and the
 * server process's memory sampled while they run, and the statistics the tables report.
 */
import * as fs from 'node:fs';

/** What one streamed chat completion gave the client. */
export interface TurnResult {
  /** performance.now() when the request was sent, and when its stream ended. */
  startMs: number;
  endMs: number;
  /** From sending to the first chunk with text; null when none came. */
  ttftMs: number | null;
  /** Arrival times of the chunks that carried text. */
  chunkMs: number[];
  text: string;
  promptTokens: number;
  completionTokens: number;
  cachedTokens: number;
  finishReason: string | null;
}

/** A chat message as sent. */
export interface Message {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

/** A request the server answered with an error (status and its message). */
export class RequestError extends Error {
  override name = 'RequestError';
}

/**
 * One streaming chat completion (`stream: true`, usage in the last chunk): the text, its usage and
 * when each piece of it arrived. Throws {@link RequestError} on an HTTP error or an error event.
 */
export async function streamChat(baseUrl: string, body: Record<string, unknown>, signal?: AbortSignal): Promise<TurnResult> {
  const startMs = performance.now();
  const res = await fetch(`${baseUrl}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ ...body, stream: true, stream_options: { include_usage: true } }),
    signal,
  });
  if (!res.ok || res.body === null) throw new RequestError(`HTTP ${res.status}: ${(await res.text()).slice(0, 500)}`);
  const result: TurnResult = {
    startMs,
    endMs: 0,
    ttftMs: null,
    chunkMs: [],
    text: '',
    promptTokens: 0,
    completionTokens: 0,
    cachedTokens: 0,
    finishReason: null,
  };
  const decoder = new TextDecoder();
  let buffer = '';
  let done = false;
  const onEvent = (event: string) => {
    const data = event
      .split(/\r?\n/)
      .filter((line) => line.startsWith('data:'))
      .map((line) => line.slice(5).replace(/^ /, ''))
      .join('\n');
    if (data === '') return;
    if (data === '[DONE]') {
      done = true;
      return;
    }
    const chunk = JSON.parse(data) as {
      error?: { message: string };
      choices?: { delta?: { content?: string }; finish_reason?: string | null }[];
      usage?: { prompt_tokens: number; completion_tokens: number; prompt_tokens_details?: { cached_tokens?: number } };
    };
    if (chunk.error) throw new RequestError(`stream error: ${chunk.error.message}`);
    const choice = chunk.choices?.[0];
    const content = choice?.delta?.content;
    if (content) {
      const now = performance.now();
      result.ttftMs ??= now - startMs;
      result.chunkMs.push(now);
      result.text += content;
    }
    if (choice?.finish_reason) result.finishReason = choice.finish_reason;
    if (chunk.usage) {
      result.promptTokens = chunk.usage.prompt_tokens;
      result.completionTokens = chunk.usage.completion_tokens;
      result.cachedTokens = chunk.usage.prompt_tokens_details?.cached_tokens ?? 0;
    }
  };
  const reader = res.body.getReader();
  for (;;) {
    const { value, done: ended } = await reader.read();
    if (ended) break;
    buffer += decoder.decode(value, { stream: true });
    let at: number;
    while ((at = buffer.search(/\r?\n\r?\n/)) >= 0) {
      const event = buffer.slice(0, at);
      buffer = buffer.slice(at).replace(/^\r?\n\r?\n/, '');
      onEvent(event);
    }
  }
  if (buffer.trim()) onEvent(buffer);
  if (!done) throw new RequestError('the stream ended without [DONE]');
  result.endMs = performance.now();
  return result;
}

/** Options of {@link runConversation}. */
export interface ConversationOptions {
  system: string;
  /** The user's message of each turn. */
  userTurns: readonly string[];
  maxTokens: number;
  signal?: AbortSignal;
}

/**
 * A multi-turn chat: each turn sends the whole conversation so far (the replies appended as
 * assistant messages) plus the next user message, greedy (temperature 0), as a chat client does;
 * the server resumes each turn from the state the previous one left.
 */
export async function runConversation(baseUrl: string, options: ConversationOptions): Promise<TurnResult[]> {
  const messages: Message[] = [{ role: 'system', content: options.system }];
  const turns: TurnResult[] = [];
  for (const user of options.userTurns) {
    messages.push({ role: 'user', content: user });
    const turn = await streamChat(baseUrl, { model: 'bench', messages, max_tokens: options.maxTokens, temperature: 0 }, options.signal);
    turns.push(turn);
    messages.push({ role: 'assistant', content: turn.text });
  }
  return turns;
}

/** The server's Prometheus text as name → value (unlabelled samples; labelled ones summed). */
export function parsePrometheus(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s+(\S+)$/.exec(line);
    if (m) out.set(m[1], (out.get(m[1]) ?? 0) + Number(m[3]));
  }
  return out;
}

/** A field of /proc/PID/status in bytes (VmRSS, VmHWM), or NaN off Linux. */
export function procStatusBytes(pid: number, field: 'VmRSS' | 'VmHWM'): number {
  try {
    const kb = new RegExp(`${field}:\\s+(\\d+) kB`).exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
    return kb === undefined ? NaN : Number(kb) * 1024;
  } catch {
    return NaN;
  }
}

/** Resets the peak resident set of a process to its current one (Linux `clear_refs` 5); false when not possible. */
export function resetPeakRss(pid: number): boolean {
  try {
    fs.writeFileSync(`/proc/${pid}/clear_refs`, '5');
    return true;
  } catch {
    return false;
  }
}

/** One reading of the server while a phase runs. */
export interface MetricsSample {
  /** performance.now() when /metrics answered. */
  atMs: number;
  active: number;
  queued: number;
  batchStateBytes: number;
  decodeSteps: number;
  /** Tokens of the batched decode steps, and the seconds spent in them (the server's counters). */
  decodeStepTokens: number;
  decodeSeconds: number;
  generatedTokens: number;
  rssBytes: number;
}

/** Reads /metrics and the server's RSS every `intervalMs` until stopped. */
export class MetricsSampler {
  readonly samples: MetricsSample[] = [];
  private stopped = false;
  private loop: Promise<void> | null = null;

  constructor(
    private readonly baseUrl: string,
    private readonly pid: number,
    private readonly intervalMs: number,
  ) {}

  async sample(): Promise<MetricsSample> {
    const text = await (await fetch(`${this.baseUrl}/metrics`)).text();
    const m = parsePrometheus(text);
    const s: MetricsSample = {
      atMs: performance.now(),
      active: m.get('graniteflow_active_sequences') ?? 0,
      queued: m.get('graniteflow_queued_requests') ?? 0,
      batchStateBytes: m.get('graniteflow_batch_state_bytes') ?? 0,
      decodeSteps: m.get('graniteflow_decode_steps_total') ?? 0,
      decodeStepTokens: m.get('graniteflow_decode_step_tokens_total') ?? 0,
      decodeSeconds: m.get('graniteflow_decode_seconds_total') ?? 0,
      generatedTokens: m.get('graniteflow_generated_tokens_total') ?? 0,
      rssBytes: procStatusBytes(this.pid, 'VmRSS'),
    };
    this.samples.push(s);
    return s;
  }

  start(): void {
    this.loop = (async () => {
      while (!this.stopped) {
        await this.sample().catch(() => undefined);
        await new Promise((r) => setTimeout(r, this.intervalMs));
      }
    })();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.loop;
  }
}

/**
 * Decode throughput while `full` sequences were in the batch: the tokens of the batched decode
 * steps the server ran between two readings that both saw `full` running, over the seconds the
 * server spent in those steps (its counters, so the prompts prefilled between steps do not count:
 * prefill is compute-bound and batching does not speed it up). NaN when no two consecutive
 * readings qualify.
 */
export function fullBatchDecodeRate(samples: readonly MetricsSample[], full: number): number {
  let tokens = 0;
  let seconds = 0;
  for (let i = 1; i < samples.length; i++) {
    const [a, b] = [samples[i - 1], samples[i]];
    if (a.active === full && b.active === full && b.decodeSteps > a.decodeSteps) {
      tokens += b.decodeStepTokens - a.decodeStepTokens;
      seconds += b.decodeSeconds - a.decodeSeconds;
    }
  }
  return seconds > 0 ? tokens / seconds : NaN;
}

/** The `q`-quantile (0..1) of `values`, linearly interpolated; NaN for none. */
export function quantile(values: readonly number[], q: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const at = (sorted.length - 1) * q;
  const lo = Math.floor(at);
  const hi = Math.ceil(at);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (at - lo);
}

export const median = (values: readonly number[]): number =>
  quantile(
    values.filter((v) => Number.isFinite(v)),
    0.5,
  );

/** A markdown table: numbers rounded to 3 significant digits (integers kept). */
export function markdownTable(rows: readonly (readonly (string | number)[])[]): string {
  const cell = (c: string | number) => (typeof c === 'number' ? formatNumber(c) : c);
  const [head, ...body] = rows;
  return [
    `| ${head.map(cell).join(' | ')} |`,
    `| ${head.map(() => '---').join(' | ')} |`,
    ...body.map((r) => `| ${r.map(cell).join(' | ')} |`),
  ].join('\n');
}

export function formatNumber(x: number): string {
  if (Number.isNaN(x)) return '–';
  if (!Number.isFinite(x)) return String(x);
  if (Number.isInteger(x)) return x.toLocaleString('en-US');
  const abs = Math.abs(x);
  return abs >= 100 ? Math.round(x).toLocaleString('en-US') : abs >= 10 ? x.toFixed(1) : abs >= 1 ? x.toFixed(2) : x.toPrecision(3);
}

/** Clock ticks of /proc/stat and /proc/PID/stat (USER_HZ, 100 on Linux). */
const TICKS_PER_SECOND = 100;

/** Busy CPU ticks of the whole machine (user, nice, system, irq, softirq, steal), or NaN off Linux. */
function machineBusyTicks(): number {
  try {
    const f = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
    return f[0] + f[1] + f[2] + f[5] + f[6] + f[7];
  } catch {
    return NaN;
  }
}

/** CPU ticks a process has used (all its threads: utime + stime), 0 when it is gone. */
function processTicks(pid: number): number {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return Number(f[11]) + Number(f[12]);
  } catch {
    return 0;
  }
}

/**
 * Measures the CPU other processes used (cores on average) between `start()` and `read()`: the
 * machine's busy time less that of `pids` (this process and its servers). The machine is shared,
 * and what others run there slows every figure down.
 */
export class ForeignCpu {
  private at = 0;
  private busy = 0;
  private ours = 0;

  constructor(private readonly pids: () => readonly number[]) {}

  private oursNow(): number {
    return this.pids().reduce((n, pid) => n + processTicks(pid), 0);
  }

  start(): this {
    this.at = performance.now();
    this.busy = machineBusyTicks();
    this.ours = this.oursNow();
    return this;
  }

  /** Cores used by other processes since start (NaN off Linux). */
  read(): number {
    const seconds = (performance.now() - this.at) / 1000;
    const foreign = machineBusyTicks() - this.busy - (this.oursNow() - this.ours);
    return seconds > 0 ? Math.max(0, foreign / TICKS_PER_SECOND / seconds) : NaN;
  }
}

/**
 * Waits, up to `maxMs`, for a second in which other processes use less than `threshold` cores;
 * returns the milliseconds waited and the last reading.
 */
export async function waitForQuiet(
  pids: () => readonly number[],
  threshold: number,
  maxMs: number,
): Promise<{ waitedMs: number; foreignCores: number }> {
  const start = performance.now();
  let foreignCores = NaN;
  for (;;) {
    const probe = new ForeignCpu(pids).start();
    await new Promise((r) => setTimeout(r, 1000));
    foreignCores = probe.read();
    if (!(foreignCores >= threshold) || performance.now() - start >= maxMs)
      return { waitedMs: performance.now() - start - 1000, foreignCores };
  }
}
