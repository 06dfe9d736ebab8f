/**
 * The OpenAI wire format the server speaks: request validation (every problem a 400 naming the
 * parameter), error bodies, and the response objects of chat and text completions.
 */
import type { ResponseFormat } from '@graniteflow/granite';
import type { ChatMessage } from '../text_generation';

/** An error answered as `{"error": {message, type, param, code}}` with an HTTP status. */
export class ApiError extends Error {
  override name = 'ApiError';

  constructor(
    readonly status: number,
    message: string,
    readonly type = 'invalid_request_error',
    readonly param: string | null = null,
    readonly code: string | null = null,
  ) {
    super(message);
  }

  get body(): { error: { message: string; type: string; param: string | null; code: string | null } } {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

function invalid(param: string, message: string, code: string | null = 'invalid_value'): never {
  throw new ApiError(400, message, 'invalid_request_error', param, code);
}

/** A JSON object as received. */
export type Json = Record<string, unknown>;

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Sampling and length parameters common to both endpoints. */
export interface SamplingParams {
  maxTokens: number | undefined;
  temperature: number;
  topP: number | undefined;
  topK: number | undefined;
  minP: number | undefined;
  repetitionPenalty: number | undefined;
  seed: number | undefined;
  stop: string[];
  stream: boolean;
  includeUsage: boolean;
  /** Report each token's log-probability and this many alternatives (0–20); undefined: no logprobs. */
  logprobs: number | undefined;
  /** JSON mode (`json_object` / `json_schema`), enforced by constrained decoding; undefined: free text. */
  responseFormat: ResponseFormat | undefined;
  /** Choices to generate, side by side in the batch (default 1). */
  n: number;
}

/** A validated chat completion request. */
export interface ChatRequest extends SamplingParams {
  model: string | undefined;
  messages: ChatMessage[];
  tools: Json[] | undefined;
  documents: unknown[] | undefined;
}

/** A validated text completion request: the prompt as text, or as token ids. */
export interface CompletionRequest extends SamplingParams {
  model: string | undefined;
  prompt: { text: string } | { ids: number[] };
}

function optionalNumber(body: Json, name: string, check: (x: number) => boolean, expected: string): number | undefined {
  const v = body[name];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !Number.isFinite(v) || !check(v)) invalid(name, `'${name}' must be ${expected}; got ${JSON.stringify(v)}.`);
  return v;
}

/** Parameters this server does not implement: refused unless set to their no-op value. */
const UNSUPPORTED: Record<string, (v: unknown) => boolean> = {
  echo: (v) => v === false,
  best_of: (v) => v === 1,
  suffix: (v) => v === '',
  frequency_penalty: (v) => v === 0,
  presence_penalty: (v) => v === 0,
  logit_bias: (v) => isObject(v) && Object.keys(v).length === 0,
};

/** `logprobs` and `top_logprobs` of a chat request (a flag and a count), or `logprobs` of a completion (a count, 0–5). */
function logprobsParam(body: Json, kind: 'chat' | 'completion'): number | undefined {
  if (kind === 'completion') {
    if (body.top_logprobs !== undefined && body.top_logprobs !== null)
      invalid(
        'top_logprobs',
        "'top_logprobs' is a chat completions parameter; completions take 'logprobs' as a count.",
        'unsupported_parameter',
      );
    return optionalNumber(body, 'logprobs', (x) => Number.isInteger(x) && x >= 0 && x <= 5, 'an integer from 0 to 5');
  }
  const flag = body.logprobs;
  if (flag !== undefined && flag !== null && typeof flag !== 'boolean') invalid('logprobs', "'logprobs' must be a boolean.");
  const top = optionalNumber(body, 'top_logprobs', (x) => Number.isInteger(x) && x >= 0 && x <= 20, 'an integer from 0 to 20');
  if (top !== undefined && flag !== true) invalid('top_logprobs', "'top_logprobs' needs 'logprobs': true.");
  return flag === true ? (top ?? 0) : undefined;
}

/** `response_format`: text, json_object, or json_schema with a schema object. */
function responseFormatParam(body: Json): ResponseFormat | undefined {
  const rf = body.response_format;
  if (rf === undefined || rf === null) return undefined;
  if (!isObject(rf) || typeof rf.type !== 'string') invalid('response_format', '\'response_format\' must be an object with a "type".');
  if (rf.type === 'text') return undefined;
  if (rf.type === 'json_object') return { type: 'json_object' };
  if (rf.type === 'json_schema') {
    const js = rf.json_schema;
    if (!isObject(js)) invalid('response_format.json_schema', '\'response_format.json_schema\' must be an object holding the "schema".');
    if (js.schema !== undefined && !isObject(js.schema) && typeof js.schema !== 'boolean')
      invalid('response_format.json_schema.schema', "'response_format.json_schema.schema' must be a JSON schema object.");
    return { type: 'json_schema', json_schema: js as Extract<ResponseFormat, { type: 'json_schema' }>['json_schema'] };
  }
  return invalid(
    'response_format.type',
    `'response_format.type' must be text, json_object or json_schema; got ${JSON.stringify(rf.type)}.`,
    'unsupported_parameter',
  );
}

function samplingParams(body: Json, maxContext: number, kind: 'chat' | 'completion'): SamplingParams {
  for (const [name, isNoop] of Object.entries(UNSUPPORTED)) {
    const v = body[name];
    if (v !== undefined && v !== null && !isNoop(v))
      invalid(name, `'${name}' = ${JSON.stringify(v)} is not supported by this server.`, 'unsupported_parameter');
  }
  const maxTokens =
    optionalNumber(body, 'max_completion_tokens', (x) => Number.isInteger(x) && x >= 1, 'an integer ≥ 1') ??
    optionalNumber(body, 'max_tokens', (x) => Number.isInteger(x) && x >= 1, 'an integer ≥ 1');
  if (maxTokens !== undefined && maxTokens > maxContext) {
    invalid(
      body.max_completion_tokens !== undefined ? 'max_completion_tokens' : 'max_tokens',
      `max_tokens ${maxTokens} exceeds the context length of ${maxContext} tokens.`,
    );
  }
  const temperature = optionalNumber(body, 'temperature', (x) => x >= 0 && x <= 2, 'a number between 0 and 2') ?? 1;
  const topP = optionalNumber(body, 'top_p', (x) => x > 0 && x <= 1, 'a number in (0, 1]');
  const topK = optionalNumber(body, 'top_k', (x) => Number.isInteger(x) && x >= -1, 'an integer ≥ 0 (or -1 for off)');
  const minP = optionalNumber(body, 'min_p', (x) => x >= 0 && x <= 1, 'a number in [0, 1]');
  const repetitionPenalty = optionalNumber(body, 'repetition_penalty', (x) => x > 0, 'a number > 0');
  const seed = optionalNumber(body, 'seed', (x) => Number.isSafeInteger(x), 'an integer');
  let stop: string[] = [];
  const rawStop = body.stop;
  if (typeof rawStop === 'string') stop = [rawStop];
  else if (Array.isArray(rawStop)) stop = rawStop as string[];
  else if (rawStop !== undefined && rawStop !== null) invalid('stop', "'stop' must be a string or an array of strings.");
  if (stop.length > 16) invalid('stop', "'stop' may hold at most 16 strings.");
  if (stop.some((s) => typeof s !== 'string' || s === '')) invalid('stop', "'stop' entries must be non-empty strings.");
  const stream = body.stream ?? false;
  if (typeof stream !== 'boolean') invalid('stream', "'stream' must be a boolean.");
  let includeUsage = false;
  if (body.stream_options !== undefined && body.stream_options !== null) {
    if (!isObject(body.stream_options)) invalid('stream_options', "'stream_options' must be an object.");
    const inc = body.stream_options.include_usage;
    if (inc !== undefined && typeof inc !== 'boolean')
      invalid('stream_options.include_usage', "'stream_options.include_usage' must be a boolean.");
    includeUsage = inc === true;
  }
  const logprobs = logprobsParam(body, kind);
  const responseFormat = responseFormatParam(body);
  const n = optionalNumber(body, 'n', (x) => Number.isInteger(x) && x >= 1 && x <= 16, 'an integer from 1 to 16') ?? 1;
  return {
    maxTokens,
    temperature,
    topP,
    topK: topK === -1 ? undefined : topK,
    minP,
    repetitionPenalty,
    seed,
    stop,
    stream,
    includeUsage,
    logprobs,
    responseFormat,
    n,
  };
}

function modelParam(body: Json): string | undefined {
  if (body.model !== undefined && body.model !== null && typeof body.model !== 'string') invalid('model', "'model' must be a string.");
  return (body.model as string | undefined) ?? undefined;
}

const ROLES = new Set(['system', 'developer', 'user', 'assistant', 'tool']);

function validateContent(v: unknown, where: string, allowNull: boolean): ChatMessage['content'] {
  if (typeof v === 'string') return v;
  if ((v === null || v === undefined) && allowNull) return null;
  if (Array.isArray(v)) {
    return v.map((part, j) => {
      if (!isObject(part) || typeof part.type !== 'string') invalid(`${where}[${j}]`, `'${where}[${j}]' must be an object with a "type".`);
      if (part.type === 'text' && typeof part.text !== 'string') invalid(`${where}[${j}].text`, `'${where}[${j}].text' must be a string.`);
      if (part.type !== 'text')
        invalid(
          `${where}[${j}].type`,
          `Content parts of type "${part.type}" are not supported: this model reads text only.`,
          'unsupported_content',
        );
      return part as { type: 'text'; text: string };
    });
  }
  return invalid(where, `'${where}' must be a string or an array of content parts.`);
}

function validateToolCalls(v: unknown, where: string): ChatMessage['tool_calls'] {
  if (!Array.isArray(v)) invalid(where, `'${where}' must be an array.`);
  return v.map((call, j) => {
    const fn = isObject(call) ? call.function : undefined;
    if (!isObject(fn) || typeof fn.name !== 'string')
      invalid(`${where}[${j}].function.name`, `'${where}[${j}].function.name' must be a string.`);
    let args: unknown = fn.arguments ?? {};
    if (typeof args === 'string') {
      // OpenAI sends arguments as a JSON string; templates render them as an object.
      try {
        args = args.trim() === '' ? {} : JSON.parse(args);
      } catch {
        invalid(`${where}[${j}].function.arguments`, `'${where}[${j}].function.arguments' is not valid JSON.`);
      }
    }
    if (!isObject(args)) invalid(`${where}[${j}].function.arguments`, `'${where}[${j}].function.arguments' must be a JSON object.`);
    return {
      ...(typeof call.id === 'string' ? { id: call.id } : {}),
      type: 'function' as const,
      function: { name: fn.name, arguments: args },
    };
  });
}

/** Validates a chat completion body. */
export function parseChatRequest(body: unknown, maxContext: number): ChatRequest {
  if (!isObject(body)) invalid('body', 'The request body must be a JSON object.');
  const messagesRaw = body.messages;
  if (!Array.isArray(messagesRaw) || messagesRaw.length === 0)
    invalid('messages', "'messages' must be a non-empty array.", 'missing_required_parameter');
  const messages: ChatMessage[] = messagesRaw.map((m, i) => {
    const where = `messages[${i}]`;
    if (!isObject(m)) invalid(where, `'${where}' must be an object.`);
    if (typeof m.role !== 'string' || !ROLES.has(m.role)) {
      invalid(`${where}.role`, `'${where}.role' must be one of system, developer, user, assistant, tool; got ${JSON.stringify(m.role)}.`);
    }
    const role = m.role === 'developer' ? 'system' : m.role;
    const hasToolCalls = role === 'assistant' && m.tool_calls !== undefined && m.tool_calls !== null;
    const message: ChatMessage = { role, content: validateContent(m.content, `${where}.content`, role === 'assistant') };
    if (hasToolCalls) message.tool_calls = validateToolCalls(m.tool_calls, `${where}.tool_calls`);
    if (role === 'tool' && typeof m.tool_call_id === 'string') message.tool_call_id = m.tool_call_id;
    if (typeof m.name === 'string') message.name = m.name;
    return message;
  });
  let tools: Json[] | undefined;
  if (body.tools !== undefined && body.tools !== null) {
    if (!Array.isArray(body.tools)) invalid('tools', "'tools' must be an array.");
    tools = body.tools.map((t, i) => {
      if (!isObject(t) || (t.type !== undefined && t.type !== 'function') || !isObject(t.function) || typeof t.function.name !== 'string') {
        invalid(`tools[${i}]`, `'tools[${i}]' must be {"type": "function", "function": {"name": …, "parameters": …}}.`);
      }
      return t;
    });
    if (tools.length === 0) tools = undefined;
  }
  const choice = body.tool_choice;
  if (choice !== undefined && choice !== null && choice !== 'auto' && choice !== 'none') {
    invalid('tool_choice', "Only tool_choice 'auto' and 'none' are supported.", 'unsupported_parameter');
  }
  if (choice === 'none') tools = undefined;
  let documents: unknown[] | undefined;
  if (body.documents !== undefined && body.documents !== null) {
    if (!Array.isArray(body.documents)) invalid('documents', "'documents' must be an array.");
    documents = body.documents;
  }
  return { model: modelParam(body), messages, tools, documents, ...samplingParams(body, maxContext, 'chat') };
}

/** Validates a text completion body (one prompt: a string or a list of token ids). */
export function parseCompletionRequest(body: unknown, maxContext: number): CompletionRequest {
  if (!isObject(body)) invalid('body', 'The request body must be a JSON object.');
  let p = body.prompt;
  if (Array.isArray(p) && p.length === 1 && (typeof p[0] === 'string' || Array.isArray(p[0]))) p = p[0];
  let prompt: CompletionRequest['prompt'];
  if (typeof p === 'string') {
    if (p === '') invalid('prompt', "'prompt' must not be empty.");
    prompt = { text: p };
  } else if (Array.isArray(p) && p.length > 0 && p.every((x) => Number.isInteger(x) && (x as number) >= 0)) {
    prompt = { ids: p as number[] };
  } else if (Array.isArray(p) && p.length > 1) {
    return invalid('prompt', 'Send one prompt per request (batches of prompts are not supported).', 'unsupported_parameter');
  } else {
    return invalid('prompt', "'prompt' must be a non-empty string or an array of token ids.", 'missing_required_parameter');
  }
  return { model: modelParam(body), prompt, ...samplingParams(body, maxContext, 'completion') };
}
