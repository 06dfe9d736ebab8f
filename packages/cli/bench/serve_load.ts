/**
 * Load test of `graniteflow serve` (`npm run bench -w @graniteflow/cli`): concurrent streaming
 * clients holding multi-turn chats against one server, on loopback only, bounded in requests and
 * in time. Two random-weight models at the real widths, cut to the same depth: a hybrid (the
 * first 10 of H-Micro's 40 layers: 9 Mamba + 1 attention, the released 9:1 mix) and an
 * all-attention one of similar size (the first 10 of granite-4.0-micro's 40 attention layers),
 * both as q4_0 packed checkpoints, memory-mapped, on the native backend (2 threads here).
 *
 * Each server runs in a child process of its own (`--serve`), so its peak RSS is its alone and the
 * load generator (fetch + SSE parsing, in this process) does not share its event loop. The servers
 * run with the CLI's default of 8 generations batched (`parallel`; more clients wait in its queue)
 * and 32 saved conversation states. For 1, 4, 8 and 16 clients, each holding a chat of 2 turns
 * (the second sends the conversation so far, the reply appended, so the server resumes the state
 * the first left), greedy, 32 new tokens a turn, repeated (median of up to 3 runs, as many as the
 * time cap allows; ratios against the 1-client phase of the same run): aggregate tokens per
 * second, time to first token and per-token latency (gaps between streamed tokens) p50 / p95 on
 * the client side, the decode throughput while the batch is full (tokens ÷ seconds in the batched
 * decode steps, the server's counters), state
 * bytes per session (/metrics batch state ÷ active sequences) and the server's peak RSS (VmHWM,
 * reset before each phase). The machine is shared: before each phase the bench waits (at most
 * 15 s) for other processes to go quiet, and reports the CPU they took meanwhile.
 *
 * Then, first in the run, the state of sessions at 4K tokens, in a fresh server per model: a
 * 4K-token conversation is prefilled once, 8 sessions resume from it and decode together, and the
 * batch's state ÷ 8 is held to the arithmetic (conv + SSM state of the Mamba layers, keys and
 * values of the attention layers, computed here from the config fields) and to what the server
 * reports in /health.
 *
 * Writes bench-results/serve_load.json and bench-results/serve_load.svg; prints markdown tables.
 *
 * Environment: SERVE_BENCH_QUICK=1 (a smoke run: 1 and 4 clients, 8 tokens a turn, one run,
 * sessions of 512 tokens), SERVE_BENCH_SECONDS (time cap of the whole bench, default 600: a run
 * starts only if one as long as the last still fits; requests running at the cap are aborted),
 * SERVE_BENCH_CLIENTS (default 1,4,8,16), SERVE_BENCH_PARALLEL (8), SERVE_BENCH_REPS (3),
 * SERVE_BENCH_TURNS (2), SERVE_BENCH_MAX_TOKENS (32), SERVE_BENCH_LAYERS (10),
 * SERVE_BENCH_PROBE_TOKENS (4096), SERVE_BENCH_PROBE_SESSIONS (8).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { initBackend } from '@graniteflow/core';
import {
  estimateMemory,
  fromPretrained,
  parseConfig,
  preset,
  writeRandomPackedCheckpoint,
  type GraniteMoeHybridConfig,
} from '@graniteflow/granite';
import { createServer, type ServerOptions } from '../src/server/server';
import {
  ForeignCpu,
  fullBatchDecodeRate,
  markdownTable,
  median,
  MetricsSampler,
  parsePrometheus,
  procStatusBytes,
  quantile,
  resetPeakRss,
  runConversation,
  streamChat,
  waitForQuiet,
  type MetricsSample,
  type TurnResult,
} from './serve_load_client';
import { panelsSvg, type Series } from './serve_load_svg';

const MiB = 2 ** 20;
const GiB = 2 ** 30;

function envNumber(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n) || n <= 0) throw new RangeError(`${name} must be a positive number, got '${raw}'.`);
  return n;
}

const QUICK = process.env.SERVE_BENCH_QUICK === '1';

const SETTINGS = {
  quick: QUICK,
  clients: (process.env.SERVE_BENCH_CLIENTS ?? (QUICK ? '1,4' : '1,4,8,16')).split(',').map(Number),
  reps: envNumber('SERVE_BENCH_REPS', QUICK ? 1 : 3),
  turns: envNumber('SERVE_BENCH_TURNS', 2),
  /** Generations decoded together (the server's default); more clients wait in its queue. */
  parallel: envNumber('SERVE_BENCH_PARALLEL', 8),
  maxTokens: envNumber('SERVE_BENCH_MAX_TOKENS', QUICK ? 8 : 32),
  layers: envNumber('SERVE_BENCH_LAYERS', 10),
  seconds: envNumber('SERVE_BENCH_SECONDS', 600),
  probeTokens: envNumber('SERVE_BENCH_PROBE_TOKENS', QUICK ? 512 : 4096),
  probeSessions: envNumber('SERVE_BENCH_PROBE_SESSIONS', QUICK ? 4 : 8),
  /** New tokens of each probe session: few enough that the batch's key/value storage never grows past its headroom of 64 positions. */
  probeMaxTokens: QUICK ? 8 : 24,
  /** Context of every server: /health's perSequenceBytes is one sequence of this many tokens. */
  contextLength: 4096,
  format: 'q4_0' as const,
  /** Per request, besides the bench's cap. */
  requestTimeoutMs: 300_000,
  sampleMs: 250,
  /** Before each phase, wait at most this long for other processes to use less than a quarter core. */
  quietWaitMs: QUICK ? 3000 : 15_000,
};

interface ModelCase {
  key: 'hybrid' | 'attention';
  name: string;
  base: string;
}

const MODELS: ModelCase[] = [
  { key: 'hybrid', name: 'hybrid (H-Micro widths)', base: 'granite-4.0-h-micro' },
  { key: 'attention', name: 'all-attention (Micro widths)', base: 'granite-4.0-micro' },
];

/** The first `layers` layers of a preset: its widths and its mix of layer kinds, less depth. */
function sliceConfig(base: string, layers: number): GraniteMoeHybridConfig {
  const full = preset(base);
  return parseConfig({ ...full, time_step_limit: null, num_hidden_layers: layers, layer_types: full.layer_types.slice(0, layers) });
}

/** Bytes of state one sequence of `tokens` positions holds, by arithmetic on the config (float32). */
export function stateArithmetic(
  cfg: GraniteMoeHybridConfig,
  tokens: number,
): { convBytes: number; ssmBytes: number; kvBytes: number; totalBytes: number } {
  const mamba = cfg.layer_types.filter((t) => t === 'mamba').length;
  const attention = cfg.layer_types.filter((t) => t === 'attention').length;
  // Mamba-2: the causal conv keeps the last d_conv − 1 inputs of x, B and C; the SSM state is
  // heads × head_dim × d_state.
  const convChannels = cfg.mamba_n_heads * cfg.mamba_d_head + 2 * cfg.mamba_n_groups * cfg.mamba_d_state;
  const convBytes = 4 * mamba * (cfg.mamba_d_conv - 1) * convChannels;
  const ssmBytes = 4 * mamba * cfg.mamba_n_heads * cfg.mamba_d_head * cfg.mamba_d_state;
  // Keys and values: KV heads × head dim (hidden / attention heads) per position, per attention layer.
  const kvBytes = 4 * attention * 2 * cfg.num_key_value_heads * (cfg.hidden_size / cfg.num_attention_heads) * tokens;
  return { convBytes, ssmBytes, kvBytes, totalBytes: convBytes + ssmBytes + kvBytes };
}

function describe(cfg: GraniteMoeHybridConfig): string {
  const attentionAt = cfg.layer_types.flatMap((t, i) => (t === 'attention' ? [i] : []));
  const mamba = cfg.layer_types.length - attentionAt.length;
  const hd = cfg.hidden_size / cfg.num_attention_heads;
  const kinds =
    mamba === 0
      ? `${cfg.num_hidden_layers} attention (${cfg.position_embedding_type})`
      : `${mamba} Mamba + ${attentionAt.length} attention at ${attentionAt.join(', ')} (${cfg.position_embedding_type})`;
  const mambaPart = mamba
    ? `, Mamba ${cfg.mamba_n_heads} heads × ${cfg.mamba_d_head}, d_state ${cfg.mamba_d_state}, d_conv ${cfg.mamba_d_conv}`
    : '';
  return `hidden ${cfg.hidden_size}, ${cfg.num_hidden_layers} layers: ${kinds}; attention ${cfg.num_attention_heads} heads / ${cfg.num_key_value_heads} KV × ${hd}${mambaPart}; MLP ${cfg.shared_intermediate_size}; vocab ${cfg.vocab_size}`;
}

// ---------------------------------------------------------------------------------------------
// The server, in a child process

/** `--serve DIR OPTIONS_JSON`: loads the model and serves it on a free loopback port until stdin closes. */
async function serveChild(dir: string, optionsJson: string): Promise<void> {
  const options = JSON.parse(optionsJson) as ServerOptions;
  await initBackend('native');
  const model = await fromPretrained(dir, { backend: 'native', contextLength: options.contextLength });
  const server = createServer(model, { ...options, modelId: 'bench' });
  const address = await server.listen(0, '127.0.0.1');
  process.stdout.write(`${JSON.stringify({ port: address.port, pid: process.pid, weights: model.weightsSource })}\n`);
  process.stdin.on('end', () => {
    void server.close().finally(() => {
      model.dispose();
      process.exit(0);
    });
  });
  process.stdin.resume();
}

interface ServerHandle {
  child: ChildProcess;
  pid: number;
  baseUrl: string;
  weights: unknown;
  stop(): Promise<void>;
}

const children = new Set<ChildProcess>();
/** This process and its servers: what is not "other processes" in the CPU accounting. */
const ourPids = () => [process.pid, ...[...children].flatMap((c) => (c.pid !== undefined && c.exitCode === null ? [c.pid] : []))];
process.on('exit', () => {
  for (const c of children) c.kill('SIGKILL');
});

async function startServer(dir: string, options: ServerOptions): Promise<ServerHandle> {
  const child = spawn(process.execPath, [...process.execArgv, __filename, '--serve', dir, JSON.stringify(options)], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  children.add(child);
  // A killed server's stdin may be written to (ended) after it is gone.
  child.stdin!.on('error', () => {});
  const info = await new Promise<{ port: number; pid: number; weights: unknown }>((resolve, reject) => {
    let buffer = '';
    const onData = (data: Buffer) => {
      buffer += data.toString('utf8');
      for (const line of buffer.split('\n')) {
        if (line.startsWith('{"port"')) {
          child.stdout!.off('data', onData);
          child.off('exit', onExit);
          resolve(JSON.parse(line));
          return;
        }
      }
    };
    const onExit = (code: number | null) => reject(new Error(`the server process exited (${code}) before listening`));
    child.stdout!.on('data', onData);
    child.once('exit', onExit);
  });
  // Drain the rest of its stdout.
  child.stdout!.resume();
  return {
    child,
    pid: info.pid,
    baseUrl: `http://127.0.0.1:${info.port}`,
    weights: info.weights,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      child.stdin!.end();
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
      children.delete(child);
    },
  };
}

// ---------------------------------------------------------------------------------------------
// The load phases

const TOPICS = [
  'the water cycle',
  'how bridges carry loads',
  'the history of the printing press',
  'why the sky is blue',
  'how vaccines work',
  'sorting algorithms',
  'the rules of chess',
  'volcanoes',
  'the migration of birds',
  'compound interest',
  'how a compiler works',
  'the tides',
  'photosynthesis',
  'the Roman aqueducts',
  'how batteries store energy',
  'plate tectonics',
];

function systemText(client: number): string {
  return `You are assistant number ${client + 1} in a load test of a chat server. Answer in a few short sentences and keep to the topic.`;
}

function userTurns(client: number, rep: number, turns: number): string[] {
  return Array.from({ length: turns }, (_, t) => {
    const topic = TOPICS[(client * 3 + t + rep * 5) % TOPICS.length];
    return t === 0
      ? `Please explain ${topic} (client ${client + 1}, run ${rep + 1}).`
      : `Thank you. Now tell me more about ${topic}, turn ${t + 1}.`;
  });
}

/** What one phase (one model, one client count, one run) measured. */
interface PhaseResult {
  model: ModelCase['key'];
  clients: number;
  rep: number;
  wallSeconds: number;
  requests: number;
  failedConversations: number;
  errors: string[];
  completionTokens: number;
  promptTokens: number;
  cachedTokens: number;
  /** Of the prompt tokens of turns after the first, the share resumed from saved states. */
  laterTurnsCachedShare: number;
  aggregateTokensPerSecond: number;
  fullBatchDecodeTokensPerSecond: number;
  ttftP50Ms: number;
  ttftP95Ms: number;
  itlP50Ms: number;
  itlP95Ms: number;
  tpotMedianMs: number;
  maxActive: number;
  /** Batch state ÷ active sequences, averaged over readings with every client in the batch (else with the most). */
  stateBytesPerSession: number;
  stateSampledAtActive: number;
  peakRssBytes: number;
  finishReasons: Record<string, number>;
  /** CPU other processes on the machine used meanwhile (cores, on average), and how long the phase waited for them to quiet down. */
  foreignCores: number;
  quietWaitSeconds: number;
}

function summarizePhase(
  model: ModelCase['key'],
  clients: number,
  rep: number,
  wallMs: number,
  conversations: PromiseSettledResult<TurnResult[]>[],
  samples: MetricsSample[],
  peakRssBytes: number,
  cpu: { foreignCores: number; quietWaitSeconds: number },
): PhaseResult {
  const turns: TurnResult[] = [];
  const later: TurnResult[] = [];
  const errors: string[] = [];
  for (const c of conversations) {
    if (c.status === 'fulfilled') {
      turns.push(...c.value);
      later.push(...c.value.slice(1));
    } else errors.push(String((c.reason as Error)?.message ?? c.reason));
  }
  const ttft = turns.map((t) => t.ttftMs).filter((v): v is number => v !== null);
  const itl = turns.flatMap((t) => t.chunkMs.slice(1).map((at, i) => at - t.chunkMs[i]));
  const tpot = turns
    .filter((t) => t.completionTokens > 1 && t.chunkMs.length > 1)
    .map((t) => (t.chunkMs[t.chunkMs.length - 1] - t.chunkMs[0]) / (t.completionTokens - 1));
  const completionTokens = turns.reduce((n, t) => n + t.completionTokens, 0);
  const laterPrompt = later.reduce((n, t) => n + t.promptTokens, 0);
  const maxActive = Math.max(0, ...samples.map((s) => s.active));
  const full = Math.min(clients, SETTINGS.parallel);
  const stateAt = samples.some((s) => s.active === full) ? full : maxActive;
  const stateSamples = samples
    .filter((s) => s.active === stateAt && stateAt > 0 && s.batchStateBytes > 0)
    .map((s) => s.batchStateBytes / s.active);
  const finishReasons: Record<string, number> = {};
  for (const t of turns) finishReasons[t.finishReason ?? 'none'] = (finishReasons[t.finishReason ?? 'none'] ?? 0) + 1;
  return {
    model,
    clients,
    rep,
    wallSeconds: wallMs / 1000,
    requests: turns.length,
    failedConversations: errors.length,
    errors,
    completionTokens,
    promptTokens: turns.reduce((n, t) => n + t.promptTokens, 0),
    cachedTokens: turns.reduce((n, t) => n + t.cachedTokens, 0),
    laterTurnsCachedShare: laterPrompt ? later.reduce((n, t) => n + t.cachedTokens, 0) / laterPrompt : NaN,
    aggregateTokensPerSecond: completionTokens / (wallMs / 1000),
    fullBatchDecodeTokensPerSecond: fullBatchDecodeRate(samples, full),
    ttftP50Ms: quantile(ttft, 0.5),
    ttftP95Ms: quantile(ttft, 0.95),
    itlP50Ms: quantile(itl, 0.5),
    itlP95Ms: quantile(itl, 0.95),
    tpotMedianMs: quantile(tpot, 0.5),
    maxActive,
    stateBytesPerSession: stateSamples.length ? stateSamples.reduce((a, b) => a + b, 0) / stateSamples.length : NaN,
    stateSampledAtActive: stateAt,
    peakRssBytes,
    finishReasons,
    ...cpu,
  };
}

async function runPhase(
  server: ServerHandle,
  model: ModelCase['key'],
  clients: number,
  rep: number,
  signal: AbortSignal,
): Promise<PhaseResult> {
  // The machine is shared: wait a little for other work to pass, and measure what remains.
  const quiet = await waitForQuiet(ourPids, 0.25, SETTINGS.quietWaitMs);
  const foreign = new ForeignCpu(ourPids).start();
  resetPeakRss(server.pid);
  const sampler = new MetricsSampler(server.baseUrl, server.pid, SETTINGS.sampleMs);
  await sampler.sample();
  sampler.start();
  const start = performance.now();
  const conversations = await Promise.allSettled(
    Array.from({ length: clients }, (_, c) =>
      runConversation(server.baseUrl, {
        system: systemText(c),
        userTurns: userTurns(c, rep, SETTINGS.turns),
        maxTokens: SETTINGS.maxTokens,
        signal: AbortSignal.any([signal, AbortSignal.timeout(SETTINGS.requestTimeoutMs)]),
      }),
    ),
  );
  const wallMs = performance.now() - start;
  await sampler.stop();
  await sampler.sample().catch(() => undefined);
  const cpu = { foreignCores: foreign.read(), quietWaitSeconds: quiet.waitedMs / 1000 };
  return summarizePhase(model, clients, rep, wallMs, conversations, sampler.samples, procStatusBytes(server.pid, 'VmHWM'), cpu);
}

/** A few short chats, one then two at once, so that the timed phases find the weights packed and the batch path warm. */
async function warmUp(server: ServerHandle): Promise<void> {
  const chat = (i: number) => runConversation(server.baseUrl, { system: systemText(i), userTurns: ['Warm-up: say hello.'], maxTokens: 8 });
  await chat(0);
  await Promise.all([chat(1), chat(2)]);
}

// ---------------------------------------------------------------------------------------------
// State of sessions at a long context

const WORDS =
  'the of and to in is that it for on was with as by at from this be are or an which not have has had but all were when there can more one their about would been into some could time these other than then only its over such also after many most made may well very where through long'.split(
    ' ',
  );

/** `count` words of plain prose, the same every run. */
function filler(count: number): string {
  let state = 12345;
  const out: string[] = [];
  for (let i = 0; i < count; i++) {
    state = (state * 1103515245 + 12345) % 2 ** 31;
    out.push(WORDS[state % WORDS.length]);
    if (i % 14 === 13) out[out.length - 1] += '.';
  }
  return out.join(' ');
}

async function tokenCount(baseUrl: string, content: string): Promise<number> {
  const res = await fetch(`${baseUrl}/tokenize`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ content }),
  });
  if (!res.ok) throw new Error(`/tokenize: HTTP ${res.status}`);
  return ((await res.json()) as { tokens: number[] }).tokens.length;
}

/** A system message of about `target` tokens (this tokenizer's), found by a few /tokenize calls. */
async function calibrateSystem(baseUrl: string, target: number): Promise<{ text: string; tokens: number }> {
  let words = target;
  let tokens = await tokenCount(baseUrl, filler(words));
  for (let i = 0; i < 8 && (tokens > target || tokens < target - 24); i++) {
    words = Math.max(1, Math.floor((words * target) / tokens) - (tokens > target ? 1 : 0));
    tokens = await tokenCount(baseUrl, filler(words));
  }
  return { text: filler(words), tokens };
}

interface ProbeResult {
  model: ModelCase['key'];
  contextLength: number;
  sessions: number;
  seedPromptTokens: number;
  seedSeconds: number;
  /** The first session, run alone: its prompt and how much of it was resumed. */
  sessionPromptTokens: number;
  sessionCachedTokens: number;
  /** Tokens a session holds at most while measured (its prompt + the tokens it may generate). */
  sessionTokens: number;
  /** graniteflow_batch_state_bytes ÷ active sequences with the most sessions seen in the batch (the largest reading). */
  measuredBytesPerSession: number;
  measuredAtActive: number;
  /** /health state.perSequenceBytes (one sequence of the server's context length). */
  healthPerSequenceBytes: number;
  metricsPerSequenceBytes: number;
  arithmetic: ReturnType<typeof stateArithmetic>;
  arithmeticAtSessionTokens: ReturnType<typeof stateArithmetic>;
  peakRssBytes: number;
  /** CPU other processes used during the probe (cores, on average). */
  foreignCores: number;
  errors: string[];
}

/**
 * A conversation of about `contextLength` tokens is prefilled once (max_tokens 1, so its saved
 * state holds exactly the prompt); one chat extending it runs alone (its usage shows the resume);
 * then `sessions` more run at once, each resuming that state, and the batch's state is read from
 * /metrics while all of them are in it. The server is then killed rather than left to finish
 * them: only the reading matters, and sequences leaving a batch of long states are slow (see the
 * README: selectRows).
 */
async function probeState(model: ModelCase, dir: string, cfg: GraniteMoeHybridConfig, signal: AbortSignal): Promise<ProbeResult> {
  const sessions = SETTINGS.probeSessions;
  const contextLength = SETTINGS.probeTokens;
  const server = await startServer(dir, {
    parallel: sessions,
    maxQueue: sessions,
    contextLength,
    cacheEntries: 2 * sessions + 2,
    cacheBytes: 8 * GiB,
    maxStateBytes: 8 * GiB,
  });
  const errors: string[] = [];
  const foreign = new ForeignCpu(ourPids).start();
  try {
    // Room for the turn added by each session, its new tokens and the 64 positions of headroom
    // the batch gives each attention layer's storage.
    const system = await calibrateSystem(server.baseUrl, contextLength - 64 - SETTINGS.probeMaxTokens - 60);
    const health = (await (await fetch(`${server.baseUrl}/health`)).json()) as { state: { perSequenceBytes: number } };
    const perSeqMetric =
      parsePrometheus(await (await fetch(`${server.baseUrl}/metrics`)).text()).get('graniteflow_state_per_sequence_bytes') ?? NaN;
    const base = [
      { role: 'system', content: system.text },
      { role: 'user', content: 'Read the notes above.' },
    ];
    const session = (i: number, sessionSignal: AbortSignal) =>
      streamChat(
        server.baseUrl,
        {
          messages: [
            ...base,
            { role: 'assistant', content: seed.text },
            { role: 'user', content: `Session ${i + 1}: summarise the notes in one line.` },
          ],
          max_tokens: SETTINGS.probeMaxTokens,
          temperature: 0,
        },
        sessionSignal,
      );
    const t0 = performance.now();
    const seed = await streamChat(server.baseUrl, { messages: base, max_tokens: 1, temperature: 0 }, signal);
    const seedSeconds = (performance.now() - t0) / 1000;
    const first = await session(0, signal);
    const stop = new AbortController();
    const sessionSignal = AbortSignal.any([signal, stop.signal, AbortSignal.timeout(SETTINGS.requestTimeoutMs)]);
    let settled = 0;
    const running = Array.from({ length: sessions }, (_, i) => session(i + 1, sessionSignal).finally(() => settled++));
    const sampler = new MetricsSampler(server.baseUrl, server.pid, 0);
    let full = 0;
    while (full < 3 && settled < sessions && !signal.aborted) {
      const reading = await sampler.sample();
      if (reading.active === sessions) full++;
      await new Promise((r) => setTimeout(r, 40));
    }
    const peakRssBytes = procStatusBytes(server.pid, 'VmHWM');
    server.child.kill('SIGKILL');
    stop.abort();
    for (const r of await Promise.allSettled(running)) {
      if (r.status === 'rejected' && !stop.signal.aborted) errors.push(String((r.reason as Error)?.message ?? r.reason));
    }
    const mostActive = Math.max(0, ...sampler.samples.map((s) => s.active));
    const readings = sampler.samples.filter((s) => s.active === mostActive && s.batchStateBytes > 0);
    const sessionTokens = first.promptTokens + SETTINGS.probeMaxTokens;
    return {
      model: model.key,
      contextLength,
      sessions,
      seedPromptTokens: seed.promptTokens,
      seedSeconds,
      sessionPromptTokens: first.promptTokens,
      sessionCachedTokens: first.cachedTokens,
      sessionTokens,
      measuredBytesPerSession: readings.length ? Math.max(...readings.map((s) => s.batchStateBytes / s.active)) : NaN,
      measuredAtActive: mostActive,
      healthPerSequenceBytes: health.state.perSequenceBytes,
      metricsPerSequenceBytes: perSeqMetric,
      arithmetic: stateArithmetic(cfg, contextLength),
      arithmeticAtSessionTokens: stateArithmetic(cfg, sessionTokens),
      peakRssBytes,
      foreignCores: foreign.read(),
      errors,
    };
  } finally {
    await server.stop();
  }
}

// ---------------------------------------------------------------------------------------------
// The run

function machine(): Record<string, unknown> {
  let flags = '';
  try {
    flags = /^flags\s*:(.*)$/m.exec(fs.readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? '';
  } catch {
    // not Linux
  }
  return {
    cpu: os.cpus()[0]?.model,
    cores: os.cpus().length,
    avx512: /\bavx512f\b/.test(flags),
    arch: process.arch,
    node: process.version,
    memoryGiB: os.totalmem() / GiB,
    threads: process.env.GRANITEFLOW_THREADS ?? `${os.cpus().length} (all)`,
  };
}

/**
 * Random checkpoints have no tokenizer: the chat test fixture's (984 tokens, a Granite-shaped chat
 * template) goes in, fitting the embedding; ids past it are never sampled (vocabLimit). The
 * config's eos id (100257) lies past it too, so no reply ends early: every turn runs to
 * max_tokens, as with ignore_eos. Its added tokens are marked not special in this copy: a random
 * model greedily repeats tokens of its prompt, here the chat template's `<|end_of_role|>`, which
 * the server would drop from the stream as special; kept, every token reaches the client as text
 * (so each is timed) and the replies come back verbatim in the next turn (so turns resume).
 */
function copyTokenizer(from: string, to: string): void {
  const tokenizer = JSON.parse(fs.readFileSync(path.join(from, 'tokenizer.json'), 'utf8')) as { added_tokens?: { special?: boolean }[] };
  for (const t of tokenizer.added_tokens ?? []) t.special = false;
  fs.writeFileSync(path.join(to, 'tokenizer.json'), JSON.stringify(tokenizer));
  const config = JSON.parse(fs.readFileSync(path.join(from, 'tokenizer_config.json'), 'utf8')) as {
    added_tokens_decoder?: Record<string, { special?: boolean }>;
  };
  for (const t of Object.values(config.added_tokens_decoder ?? {})) t.special = false;
  fs.writeFileSync(path.join(to, 'tokenizer_config.json'), JSON.stringify(config, null, 2));
}

function weightFileBytes(dir: string): number {
  return fs
    .readdirSync(dir)
    .filter((f) => f.endsWith('.safetensors'))
    .reduce((n, f) => n + fs.statSync(path.join(dir, f)).size, 0);
}

async function main(): Promise<void> {
  const started = performance.now();
  const deadline = started + SETTINGS.seconds * 1000;
  const capSignal = AbortSignal.timeout(SETTINGS.seconds * 1000);
  const elapsed = () => (performance.now() - started) / 1000;
  const log = (line: string) => console.error(`[serve_load ${elapsed().toFixed(0).padStart(4)} s] ${line}`);
  const loadAtStart = os.loadavg();
  log(
    `${QUICK ? 'QUICK smoke run' : 'full run'}: ${JSON.stringify(SETTINGS)}; load average ${loadAtStart.map((l) => l.toFixed(2)).join(' ')}`,
  );
  const maxRequests = SETTINGS.reps * MODELS.length * SETTINGS.clients.reduce((n, c) => n + c, 0) * SETTINGS.turns;
  log(
    `at most ${maxRequests} timed chat requests (+ ${MODELS.length * (SETTINGS.probeSessions + 1)} for the state probe, + 3 warm-up each), capped at ${SETTINGS.seconds} s`,
  );

  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'graniteflow-serve-load-'));
  const tokenizerDir = path.join(__dirname, '..', '..', '..', 'fixtures', 'golden', 'chat_tiny');
  const models: {
    model: ModelCase;
    cfg: GraniteMoeHybridConfig;
    dir: string;
    description: string;
    parameters: number;
    weightBytes: number;
  }[] = [];
  const probes: ProbeResult[] = [];
  const phases: PhaseResult[] = [];
  const skipped: string[] = [];
  try {
    for (const model of MODELS) {
      const cfg = sliceConfig(model.base, SETTINGS.layers);
      const dir = path.join(tmp, model.key);
      const t0 = performance.now();
      await writeRandomPackedCheckpoint(dir, cfg, { format: SETTINGS.format, seed: 1 });
      copyTokenizer(tokenizerDir, dir);
      const parameters = estimateMemory(cfg, { dtype: SETTINGS.format }).parameters;
      models.push({ model, cfg, dir, description: describe(cfg), parameters, weightBytes: weightFileBytes(dir) });
      log(
        `${model.name}: wrote a random ${SETTINGS.format} checkpoint (${(parameters / 1e9).toFixed(2)} B parameters, ${(weightFileBytes(dir) / GiB).toFixed(2)} GiB) in ${((performance.now() - t0) / 1000).toFixed(1)} s: ${describe(cfg)}`,
      );
    }

    for (const m of models) {
      log(`${m.model.name}: state probe, ${SETTINGS.probeSessions} sessions at ~${SETTINGS.probeTokens} tokens`);
      const p = await probeState(m.model, m.dir, m.cfg, capSignal);
      probes.push(p);
      log(
        `${m.model.name}: seed prompt ${p.seedPromptTokens} tokens in ${p.seedSeconds.toFixed(1)} s; a session's prompt ${p.sessionPromptTokens} tokens, ${p.sessionCachedTokens} resumed; ${(p.measuredBytesPerSession / MiB).toFixed(2)} MiB a session measured (${p.measuredAtActive} active, ≤ ${p.sessionTokens} tokens), arithmetic ${(p.arithmetic.totalBytes / MiB).toFixed(2)} MiB at ${p.contextLength}, /health ${(p.healthPerSequenceBytes / MiB).toFixed(2)} MiB${p.errors.length ? `; errors: ${p.errors.join('; ')}` : ''}`,
      );
    }

    const servers = new Map<ModelCase['key'], ServerHandle>();
    try {
      for (const m of models) {
        const server = await startServer(m.dir, {
          parallel: SETTINGS.parallel,
          maxQueue: Math.max(8, Math.max(...SETTINGS.clients) - SETTINGS.parallel),
          contextLength: SETTINGS.contextLength,
          cacheEntries: 2 * Math.max(...SETTINGS.clients),
          maxStateBytes: 8 * GiB,
        });
        servers.set(m.model.key, server);
        await warmUp(server);
        log(`${m.model.name}: server up (pid ${server.pid}), warmed up`);
      }
      let lastRepSeconds = 0;
      for (let rep = 0; rep < SETTINGS.reps; rep++) {
        // A run starts only when one as long as the last still fits under the cap: runs stay whole.
        if (performance.now() + lastRepSeconds * 1000 > deadline) {
          skipped.push(`runs ${rep + 1}–${SETTINGS.reps}`);
          log(`stopping after ${rep} run(s): another (${lastRepSeconds.toFixed(0)} s) would pass the ${SETTINGS.seconds} s cap`);
          break;
        }
        const repStart = performance.now();
        for (const m of models) {
          for (const clients of SETTINGS.clients) {
            const key = `${m.model.key}/${clients}`;
            if (performance.now() > deadline) {
              skipped.push(`${key} run ${rep + 1}`);
              continue;
            }
            const r = await runPhase(servers.get(m.model.key)!, m.model.key, clients, rep, capSignal);
            phases.push(r);
            log(
              `${m.model.name}, ${clients} client(s), run ${rep + 1}: ${r.requests} requests, ${r.completionTokens} tokens in ${r.wallSeconds.toFixed(1)} s = ${r.aggregateTokensPerSecond.toFixed(1)} tok/s` +
                ` (decode steps, batch full: ${r.fullBatchDecodeTokensPerSecond.toFixed(1)}), TTFT p50 ${r.ttftP50Ms.toFixed(0)} ms, ITL p50 ${r.itlP50Ms.toFixed(0)} ms, p95 ${r.itlP95Ms.toFixed(0)} ms, state ${(r.stateBytesPerSession / MiB).toFixed(2)} MiB/session, peak RSS ${(r.peakRssBytes / GiB).toFixed(2)} GiB` +
                `; other processes ${r.foreignCores.toFixed(2)} cores${r.quietWaitSeconds > 0.5 ? ` (waited ${r.quietWaitSeconds.toFixed(0)} s for quiet)` : ''}` +
                (r.errors.length ? `; ${r.errors.length} failed: ${r.errors[0]}` : ''),
            );
          }
        }
        lastRepSeconds = (performance.now() - repStart) / 1000;
      }
    } finally {
      for (const s of servers.values()) await s.stop();
    }
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
  report({ models, probes, phases, skipped, loadAtStart, seconds: elapsed() });
}

interface ReportInput {
  models: { model: ModelCase; cfg: GraniteMoeHybridConfig; description: string; parameters: number; weightBytes: number }[];
  probes: ProbeResult[];
  phases: PhaseResult[];
  skipped: string[];
  loadAtStart: number[];
  seconds: number;
}

function report({ models, probes, phases, skipped, loadAtStart, seconds }: ReportInput): void {
  const nameOf = (key: ModelCase['key']) => MODELS.find((m) => m.key === key)!.name;
  // Per model and client count: the median over runs of each run's figure; ratios against the
  // 1-client phase of the same run.
  const summary = models.flatMap(({ model }) =>
    SETTINGS.clients.flatMap((clients) => {
      // A phase cut short (the cap, a failed request) is reported in the JSON, not in the medians.
      const runs = phases.filter((p) => p.model === model.key && p.clients === clients && p.failedConversations === 0);
      if (runs.length === 0) return [];
      const ratio = (field: 'aggregateTokensPerSecond' | 'fullBatchDecodeTokensPerSecond') =>
        median(
          runs.map((r) => {
            const base = phases.find((p) => p.model === model.key && p.clients === 1 && p.rep === r.rep && p.failedConversations === 0);
            return base ? r[field] / base[field] : NaN;
          }),
        );
      const m = (field: keyof PhaseResult) => median(runs.map((r) => r[field] as number));
      return [
        {
          model: model.key,
          clients,
          runs: runs.length,
          requests: m('requests'),
          completionTokens: m('completionTokens'),
          aggregateTokensPerSecond: m('aggregateTokensPerSecond'),
          aggregateVsOne: ratio('aggregateTokensPerSecond'),
          fullBatchDecodeTokensPerSecond: m('fullBatchDecodeTokensPerSecond'),
          fullBatchVsOne: ratio('fullBatchDecodeTokensPerSecond'),
          ttftP50Ms: m('ttftP50Ms'),
          ttftP95Ms: m('ttftP95Ms'),
          itlP50Ms: m('itlP50Ms'),
          itlP95Ms: m('itlP95Ms'),
          laterTurnsCachedShare: m('laterTurnsCachedShare'),
          stateBytesPerSession: m('stateBytesPerSession'),
          peakRssBytes: m('peakRssBytes'),
          failedConversations: runs.reduce((n, r) => n + r.failedConversations, 0),
          /** The most CPU other processes took during any of the runs. */
          foreignCoresMax: Math.max(...runs.map((r) => r.foreignCores)),
        },
      ];
    }),
  );

  const loadRows: (string | number)[][] = [
    [
      'model',
      'clients',
      'runs',
      'requests / run',
      'tokens / run',
      'aggregate tok/s',
      '× 1 client',
      'decode tok/s in decode steps, batch full',
      '× 1 client',
      'TTFT p50 ms',
      'TTFT p95 ms',
      'per-token p50 ms',
      'per-token p95 ms',
      'later turns resumed',
      'state / session MiB',
      'peak RSS GiB',
      'other processes, cores',
    ],
  ];
  for (const s of summary) {
    loadRows.push([
      nameOf(s.model),
      s.clients,
      s.runs,
      s.requests,
      s.completionTokens,
      s.aggregateTokensPerSecond,
      `${s.aggregateVsOne.toFixed(2)}×`,
      s.fullBatchDecodeTokensPerSecond,
      `${s.fullBatchVsOne.toFixed(2)}×`,
      s.ttftP50Ms,
      s.ttftP95Ms,
      s.itlP50Ms,
      s.itlP95Ms,
      Number.isNaN(s.laterTurnsCachedShare) ? '–' : `${(100 * s.laterTurnsCachedShare).toFixed(0)}%`,
      s.stateBytesPerSession / MiB,
      s.peakRssBytes / GiB,
      s.foreignCoresMax,
    ]);
  }

  const stateRows: (string | number)[][] = [
    [
      'model',
      'conv + SSM state MiB',
      `KV at ${SETTINGS.probeTokens} MiB`,
      'arithmetic MiB',
      '/health perSequenceBytes MiB',
      '/health ÷ arithmetic',
      `measured: batch state ÷ active MiB`,
      'sessions in batch',
      'tokens a session',
      'measured ÷ arithmetic',
      'probe peak RSS GiB',
    ],
  ];
  for (const p of probes) {
    const a = p.arithmetic;
    stateRows.push([
      nameOf(p.model),
      (a.convBytes + a.ssmBytes) / MiB,
      a.kvBytes / MiB,
      a.totalBytes / MiB,
      p.healthPerSequenceBytes / MiB,
      p.healthPerSequenceBytes / a.totalBytes,
      p.measuredBytesPerSession / MiB,
      p.measuredAtActive,
      p.sessionTokens,
      p.measuredBytesPerSession / a.totalBytes,
      p.peakRssBytes / GiB,
    ]);
  }
  const hybridProbe = probes.find((p) => p.model === 'hybrid');
  const attentionProbe = probes.find((p) => p.model === 'attention');

  // The released depths, by the same arithmetic.
  const fullHybrid = preset('granite-4.0-h-micro');
  const fullAttention = preset('granite-4.0-micro');
  const depthRows: (string | number)[][] = [
    ['context tokens', 'H-Micro, 40 layers (36 Mamba + 4 attention) MiB', 'Micro, 40 attention layers MiB', 'all-attention ÷ hybrid'],
  ];
  for (const tokens of [1024, 4096, 8192, 32768, 131072]) {
    const h = stateArithmetic(fullHybrid, tokens).totalBytes;
    const a = stateArithmetic(fullAttention, tokens).totalBytes;
    depthRows.push([tokens, h / MiB, a / MiB, `${(a / h).toFixed(2)}×`]);
  }

  // Targets.
  const at8 = summary.find((s) => s.model === 'hybrid' && s.clients === 8);
  const targets: { target: string; value: string; met: boolean | null }[] = [];
  if (at8) {
    targets.push({
      target: 'hybrid: aggregate tok/s at 8 streams ≥ 4× one stream (end to end, prefill of the turns included)',
      value: `${at8.aggregateVsOne.toFixed(2)}×`,
      met: at8.aggregateVsOne >= 4,
    });
    targets.push({
      target:
        'hybrid: decode throughput with all 8 in the batch ≥ 4× one stream (tokens ÷ seconds in batched decode steps, server counters)',
      value: `${at8.fullBatchVsOne.toFixed(2)}×`,
      met: at8.fullBatchVsOne >= 4,
    });
  }
  if (hybridProbe) {
    const a = hybridProbe.arithmetic.totalBytes;
    const health = hybridProbe.healthPerSequenceBytes / a - 1;
    const measured = hybridProbe.measuredBytesPerSession / a - 1;
    targets.push({
      target: `hybrid: /health state per session at ${SETTINGS.probeTokens} tokens within 10% of the arithmetic`,
      value: `${(100 * health).toFixed(2)}%`,
      met: Math.abs(health) <= 0.1,
    });
    targets.push({
      target: `hybrid: measured batch state ÷ ${hybridProbe.measuredAtActive} active within 10% of the arithmetic at ${SETTINGS.probeTokens} tokens (sessions at ${hybridProbe.sessionTokens})`,
      value: `${(100 * measured).toFixed(2)}%`,
      met: Math.abs(measured) <= 0.1,
    });
  }
  if (hybridProbe && attentionProbe) {
    const measured = attentionProbe.measuredBytesPerSession / hybridProbe.measuredBytesPerSession;
    const arithmetic = attentionProbe.arithmetic.totalBytes / hybridProbe.arithmetic.totalBytes;
    targets.push({
      target: `hybrid state per session ≥ 5× smaller than all-attention at ${SETTINGS.probeTokens} tokens (measured)`,
      value: `${measured.toFixed(2)}× (arithmetic ${arithmetic.toFixed(2)}×)`,
      met: measured >= 5,
    });
  }
  const targetRows: (string | number)[][] = [
    ['target', 'value', 'met'],
    ...targets.map((t) => [t.target, t.value, t.met === null ? '–' : t.met ? 'yes' : 'no']),
  ];

  const out: string[] = [];
  out.push(
    `## Load test (${SETTINGS.clients.join(', ')} clients × ${SETTINGS.turns} turns × ${SETTINGS.maxTokens} tokens, median of ${SETTINGS.reps} run(s))`,
  );
  for (const m of models)
    out.push(
      `- ${m.model.name}: ${m.description}; ${(m.parameters / 1e9).toFixed(2)} B parameters, ${SETTINGS.format} ${(m.weightBytes / GiB).toFixed(2)} GiB`,
    );
  out.push('', markdownTable(loadRows), '');
  out.push(
    `## State per session at ${SETTINGS.probeTokens} tokens (${SETTINGS.probeSessions} sessions resuming one ${hybridProbe?.seedPromptTokens ?? '?'}-token conversation)`,
    '',
    markdownTable(stateRows),
    '',
  );
  out.push('## Released depths, by the same arithmetic', '', markdownTable(depthRows), '');
  out.push('## Targets', '', markdownTable(targetRows), '');
  if (skipped.length) out.push(`Skipped by the ${SETTINGS.seconds} s cap: ${skipped.join(', ')}`, '');
  out.push(
    `Whole bench: ${seconds.toFixed(0)} s; load average at start ${loadAtStart.map((l) => l.toFixed(2)).join(' ')}, at end ${os
      .loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')}.`,
  );
  console.log(out.join('\n'));

  const resultsDir = path.join(__dirname, '..', 'bench-results');
  fs.mkdirSync(resultsDir, { recursive: true });
  fs.writeFileSync(
    path.join(resultsDir, 'serve_load.json'),
    JSON.stringify(
      {
        date: new Date().toISOString(),
        machine: machine(),
        loadAverage: { start: loadAtStart, end: os.loadavg() },
        seconds,
        settings: SETTINGS,
        models: models.map((m) => ({
          key: m.model.key,
          name: m.model.name,
          base: m.model.base,
          description: m.description,
          parameters: m.parameters,
          weightBytes: m.weightBytes,
          layerTypes: m.cfg.layer_types,
        })),
        summary,
        probes,
        phases,
        skipped,
        targets,
      },
      null,
      2,
    ),
  );
  fs.writeFileSync(path.join(resultsDir, 'serve_load.svg'), plot(summary, probes, models));
  console.error(`wrote ${path.join(resultsDir, 'serve_load.json')} and serve_load.svg`);
}

const COLORS: Record<ModelCase['key'], string> = { hybrid: '#1f77b4', attention: '#d62728' };

function plot(
  summary: { model: ModelCase['key']; clients: number; aggregateTokensPerSecond: number; fullBatchDecodeTokensPerSecond: number }[],
  probes: ProbeResult[],
  models: ReportInput['models'],
): string {
  const throughput: Series[] = MODELS.flatMap((m) => [
    {
      label: `${m.name}: aggregate`,
      color: COLORS[m.key],
      marker: 'circle' as const,
      points: summary.filter((s) => s.model === m.key).map((s) => ({ x: s.clients, y: s.aggregateTokensPerSecond })),
    },
    {
      label: `${m.name}: decode steps, batch full`,
      color: COLORS[m.key],
      dashed: true,
      points: summary.filter((s) => s.model === m.key).map((s) => ({ x: s.clients, y: s.fullBatchDecodeTokensPerSecond })),
    },
  ]);
  const maxTokens = Math.max(8192, 2 * SETTINGS.probeTokens);
  const steps = Array.from({ length: 17 }, (_, i) => (i * maxTokens) / 16);
  const state: Series[] = models.flatMap(({ model, cfg }) => {
    const p = probes.find((q) => q.model === model.key);
    return [
      {
        label: `${model.name}: arithmetic`,
        color: COLORS[model.key],
        points: steps.map((t) => ({ x: t, y: stateArithmetic(cfg, t).totalBytes / MiB })),
      },
      ...(p
        ? [
            {
              label: `measured (batch ÷ ${p.measuredAtActive} active)`,
              color: COLORS[model.key],
              line: false,
              marker: 'circle' as const,
              points: [{ x: p.sessionTokens, y: p.measuredBytesPerSession / MiB }],
            },
            {
              label: '/health perSequenceBytes',
              color: COLORS[model.key],
              line: false,
              marker: 'square' as const,
              points: [{ x: p.contextLength, y: p.healthPerSequenceBytes / MiB }],
            },
          ]
        : []),
    ];
  });
  return panelsSvg(
    [
      {
        title: 'graniteflow serve: aggregate tokens/s',
        xLabel: 'concurrent streaming clients',
        yLabel: 'tokens / s',
        series: throughput,
        xTicks: SETTINGS.clients,
      },
      { title: 'State per session', xLabel: 'tokens the session holds', yLabel: 'MiB (float32)', series: state },
    ],
    {
      caption: `Random weights, first ${SETTINGS.layers} of 40 layers at the real widths, ${SETTINGS.format}, native backend, ${os.cpus().length} cores; ${SETTINGS.turns} turns × ${SETTINGS.maxTokens} tokens a client; median of ${SETTINGS.reps}.`,
    },
  );
}

/** `--plot`: draws bench-results/serve_load.svg again from bench-results/serve_load.json. */
function replot(): void {
  const resultsDir = path.join(__dirname, '..', 'bench-results');
  const saved = JSON.parse(fs.readFileSync(path.join(resultsDir, 'serve_load.json'), 'utf8')) as {
    settings: typeof SETTINGS;
    summary: Parameters<typeof plot>[0];
    probes: ProbeResult[];
    models: { key: ModelCase['key']; base: string }[];
  };
  Object.assign(SETTINGS, saved.settings);
  const models = saved.models.map((m) => {
    const cfg = sliceConfig(m.base, SETTINGS.layers);
    return { model: MODELS.find((c) => c.key === m.key)!, cfg, description: describe(cfg), parameters: 0, weightBytes: 0 };
  });
  fs.writeFileSync(path.join(resultsDir, 'serve_load.svg'), plot(saved.summary, saved.probes, models));
  console.error(`wrote ${path.join(resultsDir, 'serve_load.svg')}`);
}

const serveAt = process.argv.indexOf('--serve');
(serveAt >= 0
  ? serveChild(process.argv[serveAt + 1], process.argv[serveAt + 2])
  : process.argv.includes('--plot')
    ? Promise.resolve(replot())
    : main()
).catch((err) => {
  console.error(err);
  process.exit(1);
});
