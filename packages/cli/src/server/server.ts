/**
 * The OpenAI-compatible HTTP server: `POST /v1/chat/completions`, `POST /v1/completions`,
 * `GET /v1/models`, `POST /tokenize`, `POST /detokenize`, `GET /health`, `GET /metrics`. Up to
 * `parallel` generations run at once, decoded together as one batch, while their state fits the
 * memory budget; others wait in a bounded queue. A request whose prompt extends an earlier one
 * resumes from that request's saved model state.
 *
 * Web pages the user opens can reach a localhost server too, so by default it answers only
 * requests that name it by a local address in `Host` (against DNS rebinding), that carry no
 * `Origin` of another site (CORS is opt-in), and whose POST bodies are `application/json` (a
 * `text/plain` form post needs no preflight). An API key can be required on top.
 */
import * as http from 'node:http';
import * as os from 'node:os';
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { formatBytes, JsonSchemaError, ToolCallStreamParser, type TokenConstraint, type TokenLogprob } from '@graniteflow/granite';
import type { GraniteModel } from '@graniteflow/granite';
import { plainMessage } from '../errors';
import type { TextEvent } from '../text_generation';
import { graniteEngine, graniteStateBytes, type Engine, type EngineCache } from './engine';
import { ApiError, parseChatRequest, parseCompletionRequest, type ChatRequest, type SamplingParams } from './openai_protocol';
import { RATE_WINDOW_MS, renderPrometheus, ServerMetrics, type MetricFamily } from './metrics';
import { PrefixCache } from './prefix_cache';
import { GenerationQueue, QueueFullError } from './queue';

/** Options of {@link createServer}. */
export interface ServerOptions {
  /** Requests that may wait while others generate; more get 503 with Retry-After (default 8). */
  maxQueue?: number;
  /**
   * Generations run at once (decoded together as one batch for a GraniteModel). Default for a
   * GraniteModel: 8, or fewer when `maxStateBytes` holds fewer full-context states; for an
   * {@link Engine}: 1.
   */
  parallel?: number;
  /** Prompt tokens fed per prefill step between decode steps (default 256). Used only when a GraniteModel is passed. */
  prefillChunk?: number;
  /**
   * Bytes of model state the running generations may hold together: each is admitted with the
   * state of a full context (Mamba states plus attention keys and values), and waits while the
   * budget is spent (default: a quarter of the free memory at start).
   */
  maxStateBytes?: number;
  /** Saved conversation states kept (default 8; 0 disables resuming). */
  cacheEntries?: number;
  /**
   * A directory where saved conversation states pushed out of memory are written (and read back when
   * the conversation returns) instead of being dropped; `snapshotDirBytes` bounds it (default 16 GiB).
   */
  snapshotDir?: string;
  snapshotDirBytes?: number;
  /** Bytes of saved conversation states kept at most, least recently used dropped first (default 2 GiB). */
  cacheBytes?: number;
  /** Completion length when a request sets no max_tokens (default 512, capped by the context left). */
  defaultMaxTokens?: number;
  /** Request bodies larger than this get 413 (default 8 MiB). */
  maxBodyBytes?: number;
  /** Request bodies nesting arrays and objects deeper than this get 400 (default 64). */
  maxJsonDepth?: number;
  /**
   * Key every `/v1/...` request must send as `Authorization: Bearer <key>` (401 otherwise).
   * `/health` stays open, for probes. Default: no key.
   */
  apiKey?: string;
  /**
   * Origins (`https://app.example:3000`) whose web pages may call the server; `'*'` allows every
   * origin. A request carrying any other `Origin` header gets 403. Default: none.
   */
  corsOrigins?: readonly string[];
  /**
   * Host names accepted in the `Host` header besides `localhost`, `127.0.0.1`, `[::1]`, the
   * listening host and the address a connection came in on; `'any'` turns the check off.
   */
  allowedHosts?: readonly string[] | 'any';
  /** Model name (default: the engine's id). Used only when a GraniteModel is passed. */
  modelId?: string;
  /** Context length (default 4096). Used only when a GraniteModel is passed. */
  contextLength?: number;
  /** One line per request (method, path, status, tokens, time). */
  log?: (line: string) => void;
  /** `text` (default): `POST /v1/completions 200 prompt=5 … 0.12s`; `json`: one JSON object a line, for log collectors. */
  logFormat?: 'text' | 'json';
}

/** Counters reported by `/health`, for monitoring and tests. */
export interface ServerStats {
  requests: number;
  completed: number;
  cancelled: number;
  rejected: number;
  /** Prompt tokens fed to the model. */
  prefillTokens: number;
  /** Prompt tokens resumed from saved states instead of being fed again. */
  cachedTokens: number;
  generatedTokens: number;
}

/** A server made by {@link createServer}: a Node http.Server plus its state. */
export interface GraniteServer {
  readonly http: http.Server;
  readonly engine: Engine;
  readonly stats: ServerStats;
  /** Starts listening; resolves with the bound address (port 0 picks a free port). */
  listen(port?: number, host?: string): Promise<AddressInfo>;
  /** Stops accepting, cancels running and waiting generations, frees saved states. */
  close(): Promise<void>;
}

interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  prompt_tokens_details: { cached_tokens: number };
}

/** What a finished completion request is logged with: token counts and why it ended. */
type RequestSummary = Record<string, string | number>;

/** What one generation produced. */
interface GenerationResult {
  text: string;
  finishReason: 'stop' | 'length';
  usage: Usage;
}

/** Sequences to batch by default: 8, or as many full-context states as the budget holds (at least 1). */
function defaultParallel(perSequenceBytes: number, budgetBytes: number): number {
  return Math.max(1, Math.min(8, Math.floor(budgetBytes / perSequenceBytes)));
}

const ROUTES = new Set([
  '/v1/chat/completions',
  '/v1/completions',
  '/v1/models',
  '/tokenize',
  '/detokenize',
  '/health',
  '/v1/health',
  '/metrics',
]);

/** A request's route as a metric label: known routes by name, the rest as "other" (labels must stay few). */
function routeLabel(url: string | undefined): string {
  const path = (url ?? '/').split('?')[0].replace(/\/+$/, '') || '/';
  if (ROUTES.has(path)) return path;
  return path.startsWith('/v1/models/') ? '/v1/models/{id}' : 'other';
}

function isEngine(x: GraniteModel | Engine): x is Engine {
  return typeof (x as Engine).renderChat === 'function' && typeof (x as Engine).encode === 'function';
}

function newId(prefix: string): string {
  return `${prefix}-${randomBytes(12).toString('hex')}`;
}

/** Whether JSON text nests arrays and objects deeper than `limit`: a linear scan, which no depth can overflow. */
function jsonNestsDeeperThan(text: string, limit: number): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c)
        i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) {
      inString = true;
    } else if (c === 0x7b || c === 0x5b) {
      if (++depth > limit) return true;
    } else if (c === 0x7d || c === 0x5d) {
      depth--;
    }
  }
  return false;
}

/** The host name of a `Host` header value, lower-cased, without port or trailing dot (`[::1]` keeps its brackets). */
function hostnameOf(host: string): string {
  const trimmed = host.trim().toLowerCase();
  const name = trimmed.startsWith('[') ? trimmed.slice(0, trimmed.indexOf(']') + 1) || trimmed : trimmed.replace(/:\d*$/, '');
  return name.replace(/\.$/, '');
}

/** How an address appears in a `Host` header: IPv6 in brackets, IPv4-mapped IPv6 as IPv4. */
function addressAsHostname(address: string): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped) return mapped[1];
  return address.includes(':') ? `[${address.toLowerCase()}]` : address.toLowerCase();
}

const LOOPBACK_HOSTNAMES = ['localhost', '127.0.0.1', '[::1]'];

/** An allowed origin as browsers send it in `Origin` (`HTTPS://App.example:443/` → `https://app.example`). */
function asOrigin(origin: string): string {
  if (origin === '*') return origin;
  try {
    const parsed = new URL(origin).origin;
    return parsed === 'null' ? origin : parsed;
  } catch {
    return origin;
  }
}

const sha256 = (text: string) => createHash('sha256').update(text, 'utf8').digest();

function sendJson(res: http.ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
}

// Lets socket events (a client going away) through between tokens: tfjs' data() can resolve
// without a macrotask turn, which would otherwise starve the event loop for a whole generation.
const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));

async function readBody(req: http.IncomingMessage, limit: number, maxDepth: number): Promise<unknown> {
  // An oversized body is drained, not stored, so the 413 can still be answered on this connection.
  const text = await new Promise<string>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size <= limit) chunks.push(chunk);
    });
    req.on('end', () => {
      if (size > limit)
        reject(new ApiError(413, `The request body is larger than ${limit} bytes.`, 'invalid_request_error', null, 'request_too_large'));
      else resolve(Buffer.concat(chunks).toString('utf8'));
    });
    req.on('error', reject);
  });
  if (text.trim() === '')
    throw new ApiError(400, 'The request body is empty; send a JSON object.', 'invalid_request_error', null, 'invalid_json');
  // Deep nesting would overflow the stack later, in validation or the chat template.
  if (jsonNestsDeeperThan(text, maxDepth)) {
    throw new ApiError(
      400,
      `The request body nests arrays and objects more than ${maxDepth} levels deep; this server accepts at most ${maxDepth}.`,
      'invalid_request_error',
      null,
      'json_too_deep',
    );
  }
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new ApiError(400, `The request body is not valid JSON: ${(err as Error).message}`, 'invalid_request_error', null, 'invalid_json');
  }
}

/**
 * Makes the OpenAI-compatible server for a loaded model (or any {@link Engine}). Call `listen()`
 * to start it.
 *
 * @example
 * ```ts
 * const granite = await fromPretrained('ibm-granite/granite-4.0-h-micro');
 * const server = createServer(granite, { modelId: 'granite-4.0-h-micro' });
 * const { port } = await server.listen(8000, '127.0.0.1');
 * // POST http://127.0.0.1:8000/v1/chat/completions
 * ```
 */
export function createServer(model: GraniteModel | Engine, options: ServerOptions = {}): GraniteServer {
  const maxStateBytes = options.maxStateBytes ?? Math.floor(os.freemem() / 4);
  const contextLength = options.contextLength ?? (isEngine(model) ? model.contextLength : 4096);
  // A custom engine's generate may not be reentrant: one at a time unless told otherwise.
  const parallel = options.parallel ?? (isEngine(model) ? 1 : defaultParallel(graniteStateBytes(model)(contextLength), maxStateBytes));
  const engine = isEngine(model)
    ? model
    : graniteEngine(model, { id: options.modelId ?? 'granite', contextLength, parallel, prefillChunk: options.prefillChunk });
  const fullStateBytes = engine.stateBytes(engine.contextLength);
  if (fullStateBytes > maxStateBytes) {
    throw new RangeError(
      `One sequence of ${engine.contextLength} tokens holds ${formatBytes(fullStateBytes)} of state, more than the state budget of ${formatBytes(maxStateBytes)}: raise the budget or lower the context length.`,
    );
  }
  const queue = new GenerationQueue(options.maxQueue ?? 8, { parallel, budgetBytes: maxStateBytes });
  const metrics = new ServerMetrics();
  if (options.snapshotDir !== undefined && !(engine.saveCache && engine.loadCache))
    throw new RangeError('snapshotDir needs an engine that can write its states to files (saveCache / loadCache).');
  const spill =
    options.snapshotDir !== undefined
      ? {
          dir: options.snapshotDir,
          maxBytes: options.snapshotDirBytes,
          save: engine.saveCache!.bind(engine),
          load: engine.loadCache!.bind(engine),
        }
      : undefined;
  const prefixes = new PrefixCache({ maxEntries: options.cacheEntries, maxBytes: options.cacheBytes, spill });
  const defaultMaxTokens = options.defaultMaxTokens ?? 512;
  const maxBodyBytes = options.maxBodyBytes ?? 8 * 1024 * 1024;
  const maxJsonDepth = options.maxJsonDepth ?? 64;
  const apiKeyDigest = options.apiKey !== undefined ? sha256(options.apiKey) : null;
  const corsOrigins = new Set((options.corsOrigins ?? []).map(asOrigin));
  const extraHostnames = options.allowedHosts === 'any' ? [] : (options.allowedHosts ?? []).map(hostnameOf);
  let listeningHostname: string | undefined;
  const log = options.log ?? (() => {});
  const created = Math.floor(Date.now() / 1000);
  const stats: ServerStats = {
    requests: 0,
    completed: 0,
    cancelled: 0,
    rejected: 0,
    prefillTokens: 0,
    cachedTokens: 0,
    generatedTokens: 0,
  };
  const running = new Set<AbortController>();
  let closing = false;

  /**
   * Runs one generation for a prompt (`text` rendered, `ids` its tokens): resumes from the best
   * saved state, streams events to `onEvent`, saves the final state for the next request.
   */
  async function generate(
    prompt: { text: string; ids: number[] },
    params: SamplingParams,
    signal: AbortSignal,
    onEvent: (event: TextEvent, logprobs: TokenLogprob[]) => void,
  ): Promise<GenerationResult> {
    const constraint = constraintFor(params);
    // Log-probabilities of the tokens generated and not yet handed on with a text event.
    const entries: TokenLogprob[] = [];
    const logprobs = params.logprobs === undefined ? undefined : { top: params.logprobs, onToken: (e: TokenLogprob) => entries.push(e) };
    const match = prefixes.find(prompt.ids, prompt.text);
    if (match) metrics.snapshotHits++;
    else metrics.snapshotMisses++;
    const started = performance.now();
    let cache: EngineCache;
    let fedIds: number[];
    let newIds: number[];
    if (match) {
      cache = match.entry.cache.clone();
      newIds = 'ids' in match.rest ? match.rest.ids : engine.encode(match.rest.text);
      fedIds = [...match.entry.ids, ...newIds];
    } else {
      cache = engine.makeCache();
      newIds = prompt.ids;
      fedIds = prompt.ids;
    }
    const reused = fedIds.length - newIds.length;
    const maxNewTokens = Math.max(1, Math.min(params.maxTokens ?? defaultMaxTokens, engine.contextLength - fedIds.length));
    let done: Extract<TextEvent, { type: 'done' }> | undefined;
    try {
      const events = engine.generate(newIds, {
        maxNewTokens,
        temperature: params.temperature,
        topP: params.topP,
        topK: params.topK,
        minP: params.minP,
        repetitionPenalty: params.repetitionPenalty,
        seed: params.seed,
        stopStrings: params.stop,
        signal,
        cache,
        ...(constraint ? { constraint } : {}),
        ...(logprobs ? { logprobs } : {}),
      });
      let first = true;
      for await (const event of events) {
        signal.throwIfAborted();
        const eventLogprobs = event.type === 'text' ? entries.splice(0, event.tokenIds.length) : [];
        if (event.type === 'done') done = event;
        else if (event.tokenIds.length) {
          if (first) {
            metrics.firstTokenSeconds += (performance.now() - started) / 1000;
            metrics.firstTokens++;
            metrics.countTokens(newIds.length, 0);
            first = false;
          }
          metrics.countTokens(0, event.tokenIds.length);
        }
        onEvent(event, eventLogprobs);
        await nextTurn();
        signal.throwIfAborted();
      }
    } catch (err) {
      cache.dispose();
      throw err;
    }
    const generated = done!.tokenIds;
    stats.prefillTokens += newIds.length;
    stats.cachedTokens += reused;
    stats.generatedTokens += generated.length;
    // The state now holds the prompt and every generated token but the last.
    const heldIds = [...fedIds, ...generated.slice(0, -1)];
    const heldText = prompt.text + engine.decode(generated.slice(0, -1), { skipSpecialTokens: false });
    prefixes.add({ ids: heldIds, text: heldText, cache });
    return {
      text: done!.text,
      finishReason: done!.finishReason,
      usage: {
        prompt_tokens: fedIds.length,
        completion_tokens: generated.length,
        total_tokens: fedIds.length + generated.length,
        prompt_tokens_details: { cached_tokens: reused },
      },
    };
  }

  /** The JSON-mode constraint of a request, or undefined; a schema the engine cannot enforce is a 400. */
  function constraintFor(params: SamplingParams): TokenConstraint | undefined {
    if (params.responseFormat === undefined) return undefined;
    if (!engine.jsonConstraint)
      throw new ApiError(
        400,
        "'response_format' (JSON mode) is not supported by this engine.",
        'invalid_request_error',
        'response_format',
        'unsupported_parameter',
      );
    try {
      return engine.jsonConstraint(params.responseFormat) ?? undefined;
    } catch (err) {
      if (err instanceof JsonSchemaError)
        throw new ApiError(
          400,
          `'response_format' cannot be enforced: ${err.message}`,
          'invalid_request_error',
          'response_format',
          'unsupported_schema',
        );
      throw err;
    }
  }

  /** A token's text and UTF-8 bytes, as OpenAI's logprobs report them. */
  function tokenInfo(id: number): { token: string; bytes: number[] } {
    const token = engine.decode([id], { skipSpecialTokens: false });
    return { token, bytes: [...Buffer.from(token, 'utf8')] };
  }

  /** Chat completions' `logprobs.content` entries. */
  function chatLogprobs(
    entries: readonly TokenLogprob[],
  ): { token: string; logprob: number; bytes: number[]; top_logprobs: { token: string; logprob: number; bytes: number[] }[] }[] {
    return entries.map((e) => ({
      ...tokenInfo(e.id),
      logprob: e.logprob,
      top_logprobs: e.top.map((t) => ({ ...tokenInfo(t.id), logprob: t.logprob })),
    }));
  }

  /** Legacy completions' `logprobs` object. */
  function completionLogprobs(
    entries: readonly TokenLogprob[],
    textOffset: number,
  ): { tokens: string[]; token_logprobs: number[]; top_logprobs: Record<string, number>[]; text_offset: number[] } {
    const tokens = entries.map((e) => tokenInfo(e.id).token);
    const offsets: number[] = [];
    let at = textOffset;
    for (const t of tokens) {
      offsets.push(at);
      at += t.length;
    }
    return {
      tokens,
      token_logprobs: entries.map((e) => e.logprob),
      top_logprobs: entries.map((e) => Object.fromEntries(e.top.map((t) => [tokenInfo(t.id).token, t.logprob]))),
      text_offset: offsets,
    };
  }

  /**
   * Refuses, before it is tokenized, a prompt whose text is longer than the context could hold
   * whatever its tokens: a token stands for at most `engine.maxTokenBytes` bytes.
   */
  function checkPromptBytes(text: string, params: Pick<SamplingParams, 'maxTokens'>, param: string): void {
    const tokensLeft = engine.contextLength - (params.maxTokens ?? 1);
    const limit = tokensLeft * engine.maxTokenBytes;
    const bytes = Buffer.byteLength(text, 'utf8');
    if (bytes > limit) {
      throw new ApiError(
        400,
        `The prompt is ${bytes} bytes long, more than ${tokensLeft} tokens can hold (${limit} bytes: one token of this model stands for at most ${engine.maxTokenBytes}); ` +
          `this server's context length is ${engine.contextLength} tokens${params.maxTokens !== undefined ? ` and max_tokens reserves ${params.maxTokens} of them` : ''}.`,
        'invalid_request_error',
        param,
        'context_length_exceeded',
      );
    }
  }

  /** Token ids of a prompt's text, refused (400) when they cannot fit the context. */
  function encodePrompt(text: string, params: SamplingParams, param: string): number[] {
    checkPromptBytes(text, params, param);
    const ids = engine.encode(text);
    checkContext(ids.length, params, param);
    return ids;
  }

  /** The chat template's prompt for a request; a template that fails on it is the request's problem (400). */
  function renderPrompt(request: ChatRequest): string {
    try {
      return engine.renderChat(request.messages, { tools: request.tools, documents: request.documents });
    } catch (err) {
      // The template's own complaint, without the wrapper's path to the server's files.
      const reason = err instanceof Error && err.cause instanceof Error ? err.cause : err;
      throw new ApiError(
        400,
        `The model's chat template cannot render this request: ${plainMessage(reason)}`,
        'invalid_request_error',
        'messages',
        'template_error',
      );
    }
  }

  /** Checks the context length before generating. */
  function checkContext(promptTokens: number, params: SamplingParams, param: string): void {
    if (promptTokens >= engine.contextLength) {
      throw new ApiError(
        400,
        `The prompt has ${promptTokens} tokens; this server's context length is ${engine.contextLength}.`,
        'invalid_request_error',
        param,
        'context_length_exceeded',
      );
    }
    if (params.maxTokens !== undefined && promptTokens + params.maxTokens > engine.contextLength) {
      throw new ApiError(
        400,
        `The prompt (${promptTokens} tokens) plus max_tokens (${params.maxTokens}) exceeds the context length of ${engine.contextLength} tokens.`,
        'invalid_request_error',
        'max_tokens',
        'context_length_exceeded',
      );
    }
  }

  /**
   * Takes a queue place (503 when every place is taken) and runs `work` with a signal that aborts
   * if the client goes away. The place is taken before the prompt is rendered and tokenized, so a
   * burst of big prompts is refused before it costs anything; `work` awaits `turn()` to generate.
   */
  async function withQueuePlace<T>(
    res: http.ServerResponse,
    sequences: number,
    work: (place: { signal: AbortSignal; turn(): Promise<void> }) => Promise<T>,
  ): Promise<T> {
    const controller = new AbortController();
    const onClose = () => {
      if (!res.writableFinished) controller.abort(new DOMException('The client disconnected.', 'AbortError'));
    };
    res.on('close', onClose);
    let ticket;
    try {
      ticket = queue.enter(controller.signal, sequences * fullStateBytes);
    } catch (err) {
      res.off('close', onClose);
      if (err instanceof QueueFullError) {
        stats.rejected++;
        res.setHeader('Retry-After', '1');
        throw new ApiError(503, `${err.message} Retry later.`, 'server_error', null, 'queue_full');
      }
      throw err;
    }
    running.add(controller);
    const turn = async () => {
      await ticket.ready;
      if (closing) throw new ApiError(503, 'The server is shutting down.', 'server_error', null, 'shutting_down');
    };
    try {
      // Lets other requests (and /health) through before this one tokenizes.
      await nextTurn();
      return await work({ signal: controller.signal, turn });
    } finally {
      ticket.release();
      running.delete(controller);
      res.off('close', onClose);
    }
  }

  function openStream(res: http.ServerResponse): void {
    res.writeHead(200, { 'Content-Type': 'text/event-stream; charset=utf-8', 'Cache-Control': 'no-cache', Connection: 'keep-alive' });
    res.flushHeaders();
  }

  const sse = (res: http.ServerResponse, data: unknown) => {
    if (!res.writableEnded) res.write(`data: ${JSON.stringify(data)}\n\n`);
  };

  /** The sampling of choice `index` of a request asking for several: its own seed, if one was given. */
  function choiceParams<T extends SamplingParams>(request: T, index: number): T {
    return request.seed === undefined || index === 0 ? request : { ...request, seed: request.seed + index };
  }

  /**
   * Runs a request's `n` choices side by side (they join the same decode batch) once its turn
   * comes, and answers: one JSON body, or the end of the stream the choices wrote to.
   */
  async function answer(
    res: http.ServerResponse,
    request: SamplingParams,
    place: { turn(): Promise<void> },
    base: Record<string, unknown>,
    objects: { whole: string; chunk: string },
    runChoice: (index: number) => Promise<{ result: GenerationResult; choice: unknown }>,
  ): Promise<RequestSummary> {
    // Streamed: accepted at once, and the client waits on an open stream.
    if (request.stream) openStream(res);
    await place.turn();
    const runs = await Promise.all(Array.from({ length: request.n }, (_, index) => runChoice(index)));
    const usage = totalUsage(runs.map((r) => r.result));
    if (request.stream) {
      if (request.includeUsage) sse(res, { ...base, object: objects.chunk, choices: [], usage });
      res.end('data: [DONE]\n\n');
    } else {
      sendJson(res, 200, { ...base, object: objects.whole, choices: runs.map((r) => r.choice), usage });
    }
    return summary(runs[0].result, usage);
  }

  /** The usage of several choices: the prompt once, every choice's completion. */
  function totalUsage(results: readonly GenerationResult[]): Usage {
    const [first] = results;
    const completion = results.reduce((n, r) => n + r.usage.completion_tokens, 0);
    return { ...first.usage, completion_tokens: completion, total_tokens: first.usage.prompt_tokens + completion };
  }

  async function chatCompletions(res: http.ServerResponse, body: unknown): Promise<RequestSummary> {
    const request = parseChatRequest(body, engine.contextLength);
    checkChoices(request.n);
    return withQueuePlace(res, request.n, async (place) => {
      const text = renderPrompt(request);
      const ids = encodePrompt(text, request, 'messages');
      const id = newId('chatcmpl');
      const base = { id, created: Math.floor(Date.now() / 1000), model: engine.id };
      const chunk = (index: number, delta: Record<string, unknown>, finish: string | null = null, logprobs: TokenLogprob[] | null = null) =>
        sse(res, {
          ...base,
          object: 'chat.completion.chunk',
          choices: [{ index, delta, logprobs: logprobs?.length ? { content: chatLogprobs(logprobs) } : null, finish_reason: finish }],
        });

      /** One choice: its text routed to content and tool calls, streamed as chunks of `index` when streaming. */
      const runChoice = async (index: number) => {
        const parser = request.tools ? new ToolCallStreamParser() : null;
        const toolCalls: { id: string; type: 'function'; function: { name: string; arguments: string } }[] = [];
        const allLogprobs: TokenLogprob[] = [];
        let content = '';
        const emitOf = (logprobs: TokenLogprob[] | null) => {
          let pending = logprobs;
          return {
            emit: (d: Record<string, unknown>) => {
              if (request.stream) chunk(index, d, null, pending);
              pending = null;
            },
            rest: () => {
              if (request.stream && pending?.length) chunk(index, {}, null, pending);
            },
          };
        };
        // Text deltas → content and tool calls (when the request offered tools).
        const handle = (events: ReturnType<ToolCallStreamParser['push']>, emit: (d: Record<string, unknown>) => void) => {
          for (const ev of events) {
            if (ev.type === 'text') {
              content += ev.text;
              emit({ content: ev.text });
            } else if (ev.type === 'toolCall') {
              const call = {
                id: newId('call'),
                type: 'function' as const,
                function: { name: ev.toolCall.name, arguments: JSON.stringify(ev.toolCall.arguments) },
              };
              toolCalls.push(call);
              emit({ tool_calls: [{ index: toolCalls.length - 1, ...call }] });
            } else {
              // A malformed block is passed on as text rather than lost.
              const raw = `<tool_call>${ev.invalid.raw}</tool_call>`;
              content += raw;
              emit({ content: raw });
            }
          }
        };
        if (request.stream) chunk(index, { role: 'assistant', content: '' });
        const result = await generate({ text, ids }, choiceParams(request, index), place.signal, (ev, logprobs) => {
          allLogprobs.push(...logprobs);
          if (ev.type !== 'text') return;
          // A text event's tokens go with its first chunk (or a chunk of their own when the tool parser holds the text back).
          const out = emitOf(request.logprobs === undefined ? null : logprobs);
          handle(parser ? parser.push(ev.text) : [{ type: 'text', text: ev.text }], out.emit);
          out.rest();
        });
        if (parser) handle(parser.end(), emitOf(null).emit);
        const finish = toolCalls.length ? 'tool_calls' : result.finishReason;
        if (request.stream) chunk(index, {}, finish);
        const message: Record<string, unknown> = {
          role: 'assistant',
          content: toolCalls.length && content.trim() === '' ? null : toolCalls.length ? content.trim() : content,
        };
        if (toolCalls.length) message.tool_calls = toolCalls;
        const logprobs = request.logprobs === undefined ? null : { content: chatLogprobs(allLogprobs) };
        return { result, choice: { index, message, logprobs, finish_reason: finish } };
      };

      return answer(res, request, place, base, { whole: 'chat.completion', chunk: 'chat.completion.chunk' }, runChoice);
    });
  }

  async function completions(res: http.ServerResponse, body: unknown): Promise<RequestSummary> {
    const request = parseCompletionRequest(body, engine.contextLength);
    checkChoices(request.n);
    return withQueuePlace(res, request.n, async (place) => {
      let prompt: { text: string; ids: number[] };
      if ('text' in request.prompt) {
        prompt = { text: request.prompt.text, ids: encodePrompt(request.prompt.text, request, 'prompt') };
      } else {
        const ids = request.prompt.ids;
        checkContext(ids.length, request, 'prompt');
        // decode() rejects ids outside the vocabulary: a 400, not a server error.
        let text: string;
        try {
          text = engine.decode(ids, { skipSpecialTokens: false });
        } catch (err) {
          throw new ApiError(400, `'prompt' holds an invalid token id: ${plainMessage(err)}`, 'invalid_request_error', 'prompt');
        }
        prompt = { text, ids };
      }
      if (prompt.ids.length === 0) throw new ApiError(400, "'prompt' encodes to no tokens.", 'invalid_request_error', 'prompt');
      const id = newId('cmpl');
      const base = { id, created: Math.floor(Date.now() / 1000), model: engine.id };
      const runChoice = async (index: number) => {
        let offset = 0;
        const chunk = (text: string, finish: string | null, logprobs: TokenLogprob[] = []) => {
          const lp = request.logprobs === undefined ? null : completionLogprobs(logprobs, offset);
          offset += text.length;
          sse(res, { ...base, object: 'text_completion', choices: [{ index, text, logprobs: lp, finish_reason: finish }] });
        };
        const allLogprobs: TokenLogprob[] = [];
        const result = await generate(prompt, choiceParams(request, index), place.signal, (ev, logprobs) => {
          allLogprobs.push(...logprobs);
          if (request.stream && ev.type === 'text') chunk(ev.text, null, logprobs);
        });
        if (request.stream) chunk('', result.finishReason);
        const logprobs = request.logprobs === undefined ? null : completionLogprobs(allLogprobs, 0);
        return { result, choice: { index, text: result.text, logprobs, finish_reason: result.finishReason } };
      };
      return answer(res, request, place, base, { whole: 'text_completion', chunk: 'text_completion' }, runChoice);
    });
  }

  /** `n` must fit the batch: its choices run side by side. */
  function checkChoices(n: number): void {
    if (n > queue.parallel) {
      throw new ApiError(
        400,
        `'n' = ${n} is more than the ${queue.parallel} sequences this server runs at once (--parallel).`,
        'invalid_request_error',
        'n',
      );
    }
  }

  function summary(r: GenerationResult, u: Usage = r.usage): RequestSummary {
    const cached = u.prompt_tokens_details.cached_tokens;
    return { prompt: u.prompt_tokens, cached, prefill: u.prompt_tokens - cached, completion: u.completion_tokens, finish: r.finishReason };
  }

  function health(): unknown {
    const batch = engine.batchStats?.() ?? null;
    return {
      status: closing ? 'closing' : 'ok',
      model: engine.id,
      contextLength: engine.contextLength,
      queue: {
        running: queue.running,
        parallel: queue.parallel,
        waiting: queue.waitingCount,
        maxWaiting: queue.maxWaiting,
        maxWaitingSeen: queue.maxWaitingSeen,
      },
      state: {
        budgetBytes: queue.budgetBytes,
        reservedBytes: queue.bytesInUse,
        perSequenceBytes: fullStateBytes,
        batchBytes: batch?.stateBytes ?? 0,
      },
      cache: {
        entries: prefixes.size,
        bytes: prefixes.byteSize,
        hits: metrics.snapshotHits,
        misses: metrics.snapshotMisses,
        spilled: { entries: prefixes.spilledSize, bytes: prefixes.spilledBytes, ...prefixes.spillStats },
      },
      throughput: metrics.rates(),
      batch,
      stats,
    };
  }

  /** Every figure of {@link health}, and counters since start, for Prometheus. */
  function prometheus(): string {
    const rates = metrics.rates();
    const batch = engine.batchStats?.();
    const lookups = metrics.snapshotHits + metrics.snapshotMisses;
    const gauge = (name: string, help: string, value: number): MetricFamily => ({
      name: `graniteflow_${name}`,
      help,
      type: 'gauge',
      samples: [{ value }],
    });
    const counter = (name: string, help: string, value: number): MetricFamily => ({
      name: `graniteflow_${name}`,
      help,
      type: 'counter',
      samples: [{ value }],
    });
    return renderPrometheus([
      {
        name: 'graniteflow_requests_total',
        help: 'HTTP requests answered, by route and status.',
        type: 'counter',
        samples: [...metrics.responses].map(([key, value]) => {
          const [route, status] = key.split(' ');
          return { labels: { route, status }, value };
        }),
      },
      counter(
        'prompt_tokens_total',
        'Prompt tokens of finished generations, cached ones included.',
        stats.prefillTokens + stats.cachedTokens,
      ),
      counter('cached_prompt_tokens_total', 'Prompt tokens resumed from saved states instead of being fed.', stats.cachedTokens),
      counter('prefill_tokens_total', 'Prompt tokens fed to the model.', stats.prefillTokens),
      counter('generated_tokens_total', 'Tokens generated.', stats.generatedTokens),
      counter('decode_steps_total', 'Batched decode steps run.', batch?.decodeSteps ?? 0),
      counter('decode_step_tokens_total', 'Tokens the batched decode steps produced.', batch?.decodeTokens ?? 0),
      counter(
        'decode_seconds_total',
        "Seconds spent in batched decode steps (tokens ÷ this: the batch's decode throughput).",
        batch?.decodeSeconds ?? 0,
      ),
      counter('prefill_seconds_total', 'Seconds spent feeding prompts between decode steps.', batch?.prefillSeconds ?? 0),
      counter(
        'time_to_first_token_seconds_sum',
        'Seconds from the start of generations to their first token, summed.',
        metrics.firstTokenSeconds,
      ),
      counter('time_to_first_token_seconds_count', 'Generations that produced a first token.', metrics.firstTokens),
      gauge('prefill_tokens_per_second', `Prompt tokens fed per second, over the last ${RATE_WINDOW_MS / 1000} s.`, rates.prefill),
      gauge(
        'decode_tokens_per_second',
        `Tokens generated per second by all sequences together, over the last ${RATE_WINDOW_MS / 1000} s.`,
        rates.decode,
      ),
      gauge('active_sequences', 'Generations running.', queue.running),
      gauge('queued_requests', 'Requests waiting for a place.', queue.waitingCount),
      gauge('parallel_sequences', 'Generations that may run at once.', queue.parallel),
      gauge('state_budget_bytes', 'Bytes of model state the running generations may hold.', queue.budgetBytes),
      gauge('state_reserved_bytes', 'Bytes of state reserved by the running generations (a full context each).', queue.bytesInUse),
      gauge('state_per_sequence_bytes', 'Bytes of state one full-context sequence holds (Mamba states + attention KV).', fullStateBytes),
      gauge('batch_state_bytes', 'Bytes of state the decode batch holds now.', batch?.stateBytes ?? 0),
      gauge('snapshot_bytes', 'Bytes of saved conversation states.', prefixes.byteSize),
      gauge('snapshot_entries', 'Saved conversation states.', prefixes.size),
      gauge('snapshot_spilled_entries', 'Saved conversation states spilled to the snapshot directory.', prefixes.spilledSize),
      gauge('snapshot_spilled_bytes', 'Bytes of the spilled states on disk.', prefixes.spilledBytes),
      counter('snapshot_read_back_total', 'Spilled states read back from disk to resume a conversation.', prefixes.spillStats.readBack),
      counter('snapshot_hits_total', 'Requests that resumed from a saved state.', metrics.snapshotHits),
      counter('snapshot_misses_total', 'Requests that found no saved state to resume.', metrics.snapshotMisses),
      gauge('snapshot_hit_ratio', 'Hits over lookups of saved states (0 before any).', lookups ? metrics.snapshotHits / lookups : 0),
    ]);
  }

  /** llama-server's /tokenize: {content, with_pieces?} → {tokens}. */
  function tokenize(body: unknown): unknown {
    const request = body as { content?: unknown; with_pieces?: unknown };
    if (typeof body !== 'object' || body === null || typeof request.content !== 'string') {
      throw new ApiError(400, '/tokenize takes {"content": "text"}: \'content\' must be a string.', 'invalid_request_error', 'content');
    }
    checkPromptBytes(request.content, { maxTokens: 0 }, 'content');
    const ids = engine.encode(request.content);
    if (request.with_pieces === true)
      return { tokens: ids.map((id) => ({ id, piece: engine.decode([id], { skipSpecialTokens: false }) })) };
    return { tokens: ids };
  }

  /** llama-server's /detokenize: {tokens} → {content}. */
  function detokenize(body: unknown): unknown {
    const tokens = (body as { tokens?: unknown })?.tokens;
    if (!Array.isArray(tokens) || !tokens.every((t) => Number.isInteger(t))) {
      throw new ApiError(
        400,
        '/detokenize takes {"tokens": [ids]}: \'tokens\' must be an array of integer token ids.',
        'invalid_request_error',
        'tokens',
      );
    }
    try {
      return { content: engine.decode(tokens as number[], { skipSpecialTokens: false }) };
    } catch (err) {
      throw new ApiError(400, `'tokens' holds an invalid token id: ${plainMessage(err)}`, 'invalid_request_error', 'tokens');
    }
  }

  /** 403 unless the `Host` header names this server by a local address or an allowed name. */
  function checkHost(req: http.IncomingMessage): void {
    const host = req.headers.host;
    // Browsers always send Host; a client that sends none is no web page.
    if (options.allowedHosts === 'any' || host === undefined) return;
    const accepted = new Set([...LOOPBACK_HOSTNAMES, ...(listeningHostname ? [listeningHostname] : []), ...extraHostnames]);
    // On a wildcard address (0.0.0.0), the address the client reached is one of this machine's.
    if (req.socket.localAddress) accepted.add(addressAsHostname(req.socket.localAddress));
    if (accepted.has(hostnameOf(host))) return;
    throw new ApiError(
      403,
      // Not listing the accepted names: a DNS-rebinding page can read this answer.
      `The Host header "${host}" does not name this server: it answers to localhost, its own addresses and the names it was told to allow, since through any other name a web page could reach it by DNS rebinding.`,
      'invalid_request_error',
      null,
      'host_not_allowed',
    );
  }

  /**
   * 403 for a request from a web page whose origin is not allowed; CORS headers for one that is.
   * Answers a preflight (`OPTIONS` with `Access-Control-Request-Method`) and returns true.
   */
  function checkOrigin(req: http.IncomingMessage, res: http.ServerResponse, method: string): boolean {
    if (corsOrigins.size > 0) res.setHeader('Vary', 'Origin');
    const origin = req.headers.origin;
    if (origin === undefined) return false;
    const anyOrigin = corsOrigins.has('*');
    if (!anyOrigin && !corsOrigins.has(origin)) {
      const allowed =
        corsOrigins.size > 0 ? `cross-origin (CORS) requests only from ${[...corsOrigins].join(', ')}` : 'no cross-origin (CORS) requests';
      throw new ApiError(
        403,
        `Requests from web pages at ${origin} are refused: this server allows ${allowed}.`,
        'invalid_request_error',
        null,
        'origin_not_allowed',
      );
    }
    res.setHeader('Access-Control-Allow-Origin', anyOrigin ? '*' : origin);
    if (method !== 'OPTIONS' || req.headers['access-control-request-method'] === undefined) return false;
    const requested = (req.headers['access-control-request-headers'] ?? '').split(',').map((h) => h.trim().toLowerCase());
    const headers = new Set(['authorization', 'content-type', ...requested.filter((h) => /^[!#$%&'*+.^_`|~0-9a-z-]+$/.test(h))]);
    res.writeHead(204, {
      'Access-Control-Allow-Methods': 'GET, HEAD, POST, OPTIONS',
      'Access-Control-Allow-Headers': [...headers].join(', '),
      'Access-Control-Max-Age': '600',
    });
    res.end();
    return true;
  }

  /** 401 unless the request carries the server's API key. */
  function checkApiKey(req: http.IncomingMessage, res: http.ServerResponse): void {
    if (apiKeyDigest === null) return;
    const match = /^Bearer[ \t]+(.+)$/i.exec(req.headers.authorization?.trim() ?? '');
    // Digests have one length, so the comparison takes the same time whatever the key sent.
    if (match && timingSafeEqual(sha256(match[1]), apiKeyDigest)) return;
    res.setHeader('WWW-Authenticate', 'Bearer');
    const message = match
      ? "The API key in the Authorization header is not this server's."
      : 'This server needs an API key: send it as the header "Authorization: Bearer <key>".';
    throw new ApiError(401, message, 'invalid_request_error', null, 'invalid_api_key');
  }

  /** 415 unless the body is declared JSON: a form or `text/plain` post is what a web page can send unasked. */
  function checkJsonBody(req: http.IncomingMessage): void {
    const type = req.headers['content-type'];
    if (type?.split(';')[0].trim().toLowerCase() === 'application/json') return;
    throw new ApiError(
      415,
      `Send the request body as JSON with the header "Content-Type: application/json"; this request has ${type === undefined ? 'no Content-Type' : `"Content-Type: ${type}"`}.`,
      'invalid_request_error',
      null,
      'unsupported_media_type',
    );
  }

  async function route(req: http.IncomingMessage, res: http.ServerResponse): Promise<RequestSummary | null> {
    let url: URL;
    try {
      url = new URL(req.url ?? '/', 'http://localhost');
    } catch {
      throw new ApiError(
        400,
        `The request target ${JSON.stringify(req.url)} is not a valid URL path.`,
        'invalid_request_error',
        null,
        'invalid_path',
      );
    }
    const path = url.pathname.replace(/\/+$/, '') || '/';
    const method = req.method ?? 'GET';
    checkHost(req);
    if (checkOrigin(req, res, method)) return null;
    const isHealth = path === '/health' || path === '/v1/health';
    const isMetrics = path === '/metrics';
    if ((path.startsWith('/v1/') && !isHealth) || path === '/tokenize' || path === '/detokenize') checkApiKey(req, res);
    const allow = (methods: string[]) => {
      if (!methods.includes(method)) {
        res.setHeader('Allow', methods.join(', '));
        throw new ApiError(
          405,
          `${method} is not allowed on ${path}; use ${methods.join(' or ')}.`,
          'invalid_request_error',
          null,
          'method_not_allowed',
        );
      }
    };
    if (isHealth) {
      allow(['GET', 'HEAD']);
      sendJson(res, 200, health());
      return null;
    }
    if (isMetrics) {
      allow(['GET', 'HEAD']);
      const text = prometheus();
      res.writeHead(200, { 'Content-Type': 'text/plain; version=0.0.4; charset=utf-8', 'Content-Length': Buffer.byteLength(text) });
      res.end(method === 'HEAD' ? undefined : text);
      return null;
    }
    if (path === '/tokenize' || path === '/detokenize') {
      allow(['POST']);
      checkJsonBody(req);
      const body = await readBody(req, maxBodyBytes, maxJsonDepth);
      sendJson(res, 200, path === '/tokenize' ? tokenize(body) : detokenize(body));
      return null;
    }
    if (path === '/v1/models') {
      allow(['GET', 'HEAD']);
      sendJson(res, 200, { object: 'list', data: [{ id: engine.id, object: 'model', created, owned_by: 'graniteflow' }] });
      return null;
    }
    if (path.startsWith('/v1/models/')) {
      allow(['GET', 'HEAD']);
      const encoded = path.slice('/v1/models/'.length);
      let wanted: string;
      try {
        wanted = decodeURIComponent(encoded);
      } catch {
        throw new ApiError(
          400,
          `The model id in the path, '${encoded}', is not valid percent-encoding (UTF-8 bytes as %XX).`,
          'invalid_request_error',
          'model',
          'invalid_path',
        );
      }
      if (wanted !== engine.id)
        throw new ApiError(
          404,
          `The model '${wanted}' does not exist; this server serves '${engine.id}'.`,
          'invalid_request_error',
          'model',
          'model_not_found',
        );
      sendJson(res, 200, { id: engine.id, object: 'model', created, owned_by: 'graniteflow' });
      return null;
    }
    if (path === '/v1/chat/completions' || path === '/v1/completions') {
      allow(['POST']);
      if (closing) throw new ApiError(503, 'The server is shutting down.', 'server_error', null, 'shutting_down');
      checkJsonBody(req);
      const body = await readBody(req, maxBodyBytes, maxJsonDepth);
      stats.requests++;
      return path === '/v1/chat/completions' ? chatCompletions(res, body) : completions(res, body);
    }
    throw new ApiError(
      404,
      `No route ${method} ${path}. This server has POST /v1/chat/completions, POST /v1/completions, GET /v1/models, POST /tokenize, POST /detokenize, GET /health and GET /metrics.`,
      'invalid_request_error',
      null,
      'not_found',
    );
  }

  const server = http.createServer((req, res) => {
    const start = performance.now();
    const finish = (status: number, summary: RequestSummary | null, error?: string) => {
      metrics.countResponse(routeLabel(req.url), status);
      const seconds = (performance.now() - start) / 1000;
      if (options.logFormat === 'json') {
        log(
          JSON.stringify({
            time: new Date().toISOString(),
            method: req.method,
            path: req.url,
            status,
            seconds: Number(seconds.toFixed(3)),
            ...summary,
            ...(error ? { error } : {}),
          }),
        );
      } else {
        const detail =
          error ??
          (summary
            ? Object.entries(summary)
                .map(([k, v]) => `${k}=${v}`)
                .join(' ')
            : '');
        log(`${req.method} ${req.url} ${status} ${detail ? `${detail} ` : ''}${seconds.toFixed(2)}s`);
      }
    };
    route(req, res).then(
      (summary) => {
        stats.completed += summary ? 1 : 0;
        finish(res.statusCode, summary);
      },
      (err: unknown) => {
        const aborted = (err as Error)?.name === 'AbortError';
        if (aborted) stats.cancelled++;
        const apiError =
          err instanceof ApiError
            ? err
            : aborted
              ? new ApiError(499, 'The client disconnected; generation cancelled.', 'invalid_request_error', null, 'cancelled')
              : new ApiError(500, `Internal error: ${plainMessage(err)}`, 'server_error', null, 'internal_error');
        if (!res.headersSent) {
          if (apiError.status === 413) res.setHeader('Connection', 'close');
          sendJson(res, apiError.status, apiError.body);
        } else if (!res.writableEnded) {
          // Headers of a stream are out: report in the stream, then end it.
          sse(res, apiError.body);
          res.end('data: [DONE]\n\n');
        }
        finish(apiError.status, null, `${apiError.code ?? apiError.type}: ${apiError.message}`);
      },
    );
  });
  // Malformed HTTP (not JSON: the request line or headers) gets a 400 and the socket is closed.
  server.on('clientError', (_err, socket) => {
    if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
    else socket.destroy();
  });

  return {
    http: server,
    engine,
    stats,
    listen(port = 8000, host = '127.0.0.1') {
      return new Promise<AddressInfo>((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, host, () => {
          server.off('error', reject);
          listeningHostname = addressAsHostname(host);
          resolve(server.address() as AddressInfo);
        });
      });
    },
    async close() {
      closing = true;
      queue.rejectWaiting(new ApiError(503, 'The server is shutting down.', 'server_error', null, 'shutting_down'));
      for (const c of running) c.abort(new DOMException('The server is shutting down.', 'AbortError'));
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      // Let cancelled generations unwind (they dispose their states) before freeing the saved ones.
      for (let i = 0; i < 100 && running.size > 0; i++) await new Promise((r) => setTimeout(r, 10));
      prefixes.clear();
    },
  };
}
