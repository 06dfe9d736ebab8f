/**
 * The OpenAI-compatible HTTP server: `POST /v1/chat/completions`, `POST /v1/completions`,
 * `GET /v1/models`, `GET /health`. One generation runs at a time; others wait in a bounded queue.
 * A request whose prompt extends an earlier one resumes from that request's saved model state.
 */
import * as http from 'node:http';
import { randomBytes } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { ToolCallStreamParser } from '@graniteflow/granite';
import type { GraniteModel } from '@graniteflow/granite';
import { describeError } from '../errors';
import type { TextEvent } from '../text_generation';
import { graniteEngine, type Engine, type EngineCache } from './engine';
import { ApiError, parseChatRequest, parseCompletionRequest, type SamplingParams } from './openai_protocol';
import { PrefixCache } from './prefix_cache';
import { GenerationQueue, QueueFullError } from './queue';

/** Options of {@link createServer}. */
export interface ServerOptions {
  /** Requests that may wait while one generates; more get 503 (default 8). */
  maxQueue?: number;
  /** Saved conversation states kept (default 8; 0 disables resuming). */
  cacheEntries?: number;
  /** Bytes of saved state kept at most (default 2 GiB). */
  cacheBytes?: number;
  /** Completion length when a request sets no max_tokens (default 512, capped by the context left). */
  defaultMaxTokens?: number;
  /** Request bodies larger than this get 413 (default 8 MiB). */
  maxBodyBytes?: number;
  /** Model name (default: the engine's id). Used only when a GraniteModel is passed. */
  modelId?: string;
  /** Context length (default 4096). Used only when a GraniteModel is passed. */
  contextLength?: number;
  /** One line per request (method, path, status, tokens, time). */
  log?: (line: string) => void;
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

/** What one generation produced. */
interface GenerationResult {
  text: string;
  finishReason: 'stop' | 'length';
  usage: Usage;
}

function isEngine(x: GraniteModel | Engine): x is Engine {
  return typeof (x as Engine).renderChat === 'function' && typeof (x as Engine).encode === 'function';
}

function newId(prefix: string): string {
  return `${prefix}-${randomBytes(12).toString('hex')}`;
}

function sendJson(res: http.ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
}

// Lets socket events (a client going away) through between tokens: tfjs' data() can resolve
// without a macrotask turn, which would otherwise starve the event loop for a whole generation.
const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));

async function readBody(req: http.IncomingMessage, limit: number): Promise<unknown> {
  // An oversized body is drained, not stored, so the 413 can still be answered on this connection.
  const text = await new Promise<string>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size <= limit) chunks.push(chunk);
    });
    req.on('end', () => {
      if (size > limit) reject(new ApiError(413, `The request body is larger than ${limit} bytes.`, 'invalid_request_error', null, 'request_too_large'));
      else resolve(Buffer.concat(chunks).toString('utf8'));
    });
    req.on('error', reject);
  });
  if (text.trim() === '') throw new ApiError(400, 'The request body is empty; send a JSON object.', 'invalid_request_error', null, 'invalid_json');
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
  const engine = isEngine(model)
    ? model
    : graniteEngine(model, { id: options.modelId ?? 'granite', contextLength: options.contextLength });
  const queue = new GenerationQueue(options.maxQueue ?? 8);
  const prefixes = new PrefixCache({ maxEntries: options.cacheEntries, maxBytes: options.cacheBytes });
  const defaultMaxTokens = options.defaultMaxTokens ?? 512;
  const maxBodyBytes = options.maxBodyBytes ?? 8 * 1024 * 1024;
  const log = options.log ?? (() => {});
  const created = Math.floor(Date.now() / 1000);
  const stats: ServerStats = { requests: 0, completed: 0, cancelled: 0, rejected: 0, prefillTokens: 0, cachedTokens: 0, generatedTokens: 0 };
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
    onEvent: (event: TextEvent) => void,
  ): Promise<GenerationResult> {
    const match = prefixes.find(prompt.ids, prompt.text);
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
      });
      for await (const event of events) {
        signal.throwIfAborted();
        if (event.type === 'done') done = event;
        onEvent(event);
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

  /** Checks the context length before queueing. */
  function checkContext(promptTokens: number, params: SamplingParams): void {
    if (promptTokens >= engine.contextLength) {
      throw new ApiError(400, `The prompt has ${promptTokens} tokens; this server's context length is ${engine.contextLength}.`, 'invalid_request_error', 'messages', 'context_length_exceeded');
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

  /** Takes a queue place and runs `work` with a signal that aborts if the client goes away. */
  async function queued<T>(res: http.ServerResponse, onAdmitted: () => void, work: (signal: AbortSignal) => Promise<T>): Promise<T> {
    const controller = new AbortController();
    const onClose = () => {
      if (!res.writableFinished) controller.abort(new DOMException('The client disconnected.', 'AbortError'));
    };
    res.on('close', onClose);
    let ticket;
    try {
      ticket = queue.enter(controller.signal);
    } catch (err) {
      res.off('close', onClose);
      if (err instanceof QueueFullError) {
        stats.rejected++;
        throw new ApiError(503, `${err.message} Retry later.`, 'server_error', null, 'queue_full');
      }
      throw err;
    }
    onAdmitted();
    running.add(controller);
    try {
      await ticket.ready;
      if (closing) throw new ApiError(503, 'The server is shutting down.', 'server_error', null, 'shutting_down');
      return await work(controller.signal);
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

  async function chatCompletions(res: http.ServerResponse, body: unknown): Promise<string> {
    const request = parseChatRequest(body, engine.contextLength);
    const text = engine.renderChat(request.messages, { tools: request.tools, documents: request.documents });
    const ids = engine.encode(text);
    checkContext(ids.length, request);
    const id = newId('chatcmpl');
    const base = { id, created: Math.floor(Date.now() / 1000), model: engine.id };
    const parser = request.tools ? new ToolCallStreamParser() : null;
    const toolCalls: { id: string; type: 'function'; function: { name: string; arguments: string } }[] = [];
    let content = '';

    // Text deltas → content and tool calls (when the request offered tools).
    const route = (delta: string, emit: (d: Record<string, unknown>) => void) => {
      const events = parser ? parser.push(delta) : [{ type: 'text' as const, text: delta }];
      handleToolEvents(events, emit);
    };
    const handleToolEvents = (events: ReturnType<ToolCallStreamParser['push']>, emit: (d: Record<string, unknown>) => void) => {
      for (const ev of events) {
        if (ev.type === 'text') {
          content += ev.text;
          emit({ content: ev.text });
        } else if (ev.type === 'toolCall') {
          const call = { id: newId('call'), type: 'function' as const, function: { name: ev.toolCall.name, arguments: JSON.stringify(ev.toolCall.arguments) } };
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
    const finishOf = (r: GenerationResult) => (toolCalls.length ? 'tool_calls' : r.finishReason);

    if (request.stream) {
      const chunk = (delta: Record<string, unknown>, finish: string | null = null) =>
        sse(res, { ...base, object: 'chat.completion.chunk', choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }] });
      const result = await queued(res, () => openStream(res), async (signal) => {
        chunk({ role: 'assistant', content: '' });
        return generate({ text, ids }, request, signal, (ev) => {
          if (ev.type === 'text') route(ev.text, (d) => chunk(d));
        });
      });
      if (parser) handleToolEvents(parser.end(), (d) => chunk(d));
      chunk({}, finishOf(result));
      if (request.includeUsage) sse(res, { ...base, object: 'chat.completion.chunk', choices: [], usage: result.usage });
      res.end('data: [DONE]\n\n');
      return summary(result);
    }
    const result = await queued(res, () => {}, (signal) =>
      generate({ text, ids }, request, signal, (ev) => {
        if (ev.type === 'text') route(ev.text, () => {});
      }),
    );
    if (parser) handleToolEvents(parser.end(), () => {});
    const message: Record<string, unknown> = { role: 'assistant', content: toolCalls.length && content.trim() === '' ? null : toolCalls.length ? content.trim() : content };
    if (toolCalls.length) message.tool_calls = toolCalls;
    sendJson(res, 200, { ...base, object: 'chat.completion', choices: [{ index: 0, message, logprobs: null, finish_reason: finishOf(result) }], usage: result.usage });
    return summary(result);
  }

  async function completions(res: http.ServerResponse, body: unknown): Promise<string> {
    const request = parseCompletionRequest(body, engine.contextLength);
    let prompt: { text: string; ids: number[] };
    if ('text' in request.prompt) {
      prompt = { text: request.prompt.text, ids: engine.encode(request.prompt.text) };
    } else {
      const ids = request.prompt.ids;
      // decode() rejects ids outside the vocabulary: a 400, not a server error.
      let text: string;
      try {
        text = engine.decode(ids, { skipSpecialTokens: false });
      } catch (err) {
        throw new ApiError(400, `'prompt' holds an invalid token id: ${describeError(err)}`, 'invalid_request_error', 'prompt');
      }
      prompt = { text, ids };
    }
    if (prompt.ids.length === 0) throw new ApiError(400, "'prompt' encodes to no tokens.", 'invalid_request_error', 'prompt');
    checkContext(prompt.ids.length, request);
    const id = newId('cmpl');
    const base = { id, created: Math.floor(Date.now() / 1000), model: engine.id };
    if (request.stream) {
      const chunk = (text: string, finish: string | null) =>
        sse(res, { ...base, object: 'text_completion', choices: [{ index: 0, text, logprobs: null, finish_reason: finish }] });
      const result = await queued(res, () => openStream(res), (signal) =>
        generate(prompt, request, signal, (ev) => {
          if (ev.type === 'text') chunk(ev.text, null);
        }),
      );
      chunk('', result.finishReason);
      if (request.includeUsage) sse(res, { ...base, object: 'text_completion', choices: [], usage: result.usage });
      res.end('data: [DONE]\n\n');
      return summary(result);
    }
    const result = await queued(res, () => {}, (signal) => generate(prompt, request, signal, () => {}));
    sendJson(res, 200, { ...base, object: 'text_completion', choices: [{ index: 0, text: result.text, logprobs: null, finish_reason: result.finishReason }], usage: result.usage });
    return summary(result);
  }

  function summary(r: GenerationResult): string {
    const u = r.usage;
    return `prompt=${u.prompt_tokens} cached=${u.prompt_tokens_details.cached_tokens} prefill=${u.prompt_tokens - u.prompt_tokens_details.cached_tokens} completion=${u.completion_tokens} finish=${r.finishReason}`;
  }

  function health(): unknown {
    return {
      status: closing ? 'closing' : 'ok',
      model: engine.id,
      contextLength: engine.contextLength,
      queue: { running: queue.active ? 1 : 0, waiting: queue.waitingCount, maxWaiting: queue.maxWaiting, maxWaitingSeen: queue.maxWaitingSeen },
      cache: { entries: prefixes.size, bytes: prefixes.byteSize },
      stats,
    };
  }

  async function route(req: http.IncomingMessage, res: http.ServerResponse): Promise<string> {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const path = url.pathname.replace(/\/+$/, '') || '/';
    const method = req.method ?? 'GET';
    const allow = (methods: string[]) => {
      if (!methods.includes(method)) {
        res.setHeader('Allow', methods.join(', '));
        throw new ApiError(405, `${method} is not allowed on ${path}; use ${methods.join(' or ')}.`, 'invalid_request_error', null, 'method_not_allowed');
      }
    };
    if (path === '/health' || path === '/v1/health') {
      allow(['GET', 'HEAD']);
      sendJson(res, 200, health());
      return '';
    }
    if (path === '/v1/models') {
      allow(['GET', 'HEAD']);
      sendJson(res, 200, { object: 'list', data: [{ id: engine.id, object: 'model', created, owned_by: 'graniteflow' }] });
      return '';
    }
    if (path.startsWith('/v1/models/')) {
      allow(['GET', 'HEAD']);
      const wanted = decodeURIComponent(path.slice('/v1/models/'.length));
      if (wanted !== engine.id) throw new ApiError(404, `The model '${wanted}' does not exist; this server serves '${engine.id}'.`, 'invalid_request_error', 'model', 'model_not_found');
      sendJson(res, 200, { id: engine.id, object: 'model', created, owned_by: 'graniteflow' });
      return '';
    }
    if (path === '/v1/chat/completions' || path === '/v1/completions') {
      allow(['POST']);
      if (closing) throw new ApiError(503, 'The server is shutting down.', 'server_error', null, 'shutting_down');
      const body = await readBody(req, maxBodyBytes);
      stats.requests++;
      return path === '/v1/chat/completions' ? chatCompletions(res, body) : completions(res, body);
    }
    throw new ApiError(404, `No route ${method} ${path}. This server has POST /v1/chat/completions, POST /v1/completions, GET /v1/models and GET /health.`, 'invalid_request_error', null, 'not_found');
  }

  const server = http.createServer((req, res) => {
    const start = performance.now();
    const finish = (status: number, detail: string) => {
      log(`${req.method} ${req.url} ${status} ${detail ? `${detail} ` : ''}${((performance.now() - start) / 1000).toFixed(2)}s`);
    };
    route(req, res).then(
      (detail) => {
        stats.completed += detail ? 1 : 0;
        finish(res.statusCode, detail);
      },
      (err: unknown) => {
        const aborted = (err as Error)?.name === 'AbortError';
        if (aborted) stats.cancelled++;
        const apiError =
          err instanceof ApiError
            ? err
            : aborted
              ? new ApiError(499, 'The client disconnected; generation cancelled.', 'invalid_request_error', null, 'cancelled')
              : new ApiError(500, `Internal error: ${describeError(err)}`, 'server_error', null, 'internal_error');
        if (!res.headersSent) {
          if (apiError.status === 413) res.setHeader('Connection', 'close');
          sendJson(res, apiError.status, apiError.body);
        } else if (!res.writableEnded) {
          // Headers of a stream are out: report in the stream, then end it.
          sse(res, apiError.body);
          res.end('data: [DONE]\n\n');
        }
        finish(apiError.status, `${apiError.code ?? apiError.type}: ${apiError.message}`);
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
