/**
 * Chat templates: the checkpoint's own Jinja template rendered with `@huggingface/jinja`, the way
 * `transformers`' `apply_chat_template` renders it.
 *
 * Differences between @huggingface/jinja 0.5.11 and transformers' Jinja2 environment, and how we
 * handle them:
 * - whitespace: transformers renders with `trim_blocks` and `lstrip_blocks`; the library always
 *   applies both (and drops one trailing newline, like Jinja2's default `keep_trailing_newline =
 *   False`), so nothing to do. The golden chat cases check this.
 * - `tojson`: transformers' filter is `json.dumps(x, ensure_ascii=False, indent=…, separators=…,
 *   sort_keys=False)` — no HTML escaping, keys in insertion order. The library's filter prints
 *   floats with JavaScript rules (`1.0` → `1`) and sorts keys by locale. We rewrite every
 *   `| tojson` in the parsed template into a call of our own Python-compatible serialiser
 *   ({@link pythonJsonDumps}). JavaScript numbers given as data carry no int/float distinction,
 *   so an integral number from a message or tool schema prints as an integer.
 */
import { jinja, type JinjaTemplate } from './hf_libs';
import { pythonJsonDumps, type JinjaRuntimeValue, type PythonJsonOptions } from './python_json';

/** One text part of a multi-part message content. Other part types are passed through to the template. */
export interface TextContentPart {
  type: 'text';
  text: string;
}

/** A tool call made by the assistant, as OpenAI-style clients and transformers write it. */
export interface ChatToolCall {
  type?: 'function';
  id?: string;
  function: { name: string; arguments: Record<string, unknown> | string };
}

/** A chat message. `content` may be a string, a list of parts, or null (an assistant turn with only tool calls). */
export interface ChatMessage {
  role: 'system' | 'user' | 'assistant' | 'tool' | (string & {});
  content: string | ReadonlyArray<TextContentPart | { type: string; [key: string]: unknown }> | null;
  tool_calls?: ReadonlyArray<ChatToolCall | { name: string; arguments: Record<string, unknown> | string }>;
  [key: string]: unknown;
}

/** Options of {@link ChatTemplate.apply}; any extra key becomes a template variable (e.g. `thinking`). */
export interface ApplyChatTemplateOptions {
  /** Tool definitions (JSON schema objects), rendered by the template. */
  tools?: readonly unknown[] | null;
  /** Documents for retrieval-augmented generation, rendered by the template. */
  documents?: readonly unknown[] | null;
  /** Append the header that opens an assistant turn. Default false, as in transformers. */
  addGenerationPrompt?: boolean;
  /** Pick a named template when the checkpoint ships several (default: "tool_use" with tools, else "default"). */
  templateName?: string;
  [variable: string]: unknown;
}

/** A chat template could not be selected, parsed or rendered. */
export class ChatTemplateError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ChatTemplateError';
  }
}

/** `tokenizer_config.json` → `chat_template`: one template, or a list of named ones. */
export type ChatTemplateConfig = string | ReadonlyArray<{ name: string; template: string }>;

const TOJSON_FUNCTION = '__graniteflow_tojson';

interface AstNode {
  type: string;
  [key: string]: unknown;
}

function isAstNode(x: unknown): x is AstNode {
  return typeof x === 'object' && x !== null && typeof (x as { type?: unknown }).type === 'string';
}

// Replaces `operand | tojson(...)` with `__graniteflow_tojson([operand], ...)` in place. The
// operand is wrapped in a list literal because the library unwraps the arguments of a JavaScript
// function to their payloads, which would lose the FloatValue tag of a top-level float.
function rewriteTojson(node: unknown): void {
  if (Array.isArray(node)) {
    for (const child of node) rewriteTojson(child);
    return;
  }
  if (typeof node !== 'object' || node === null) return;
  for (const child of Object.values(node)) rewriteTojson(child);
  if (!isAstNode(node) || node.type !== 'FilterExpression') return;
  const filter = node.filter as AstNode;
  const isTojson =
    (filter.type === 'Identifier' && filter.value === 'tojson') ||
    (filter.type === 'CallExpression' && (filter.callee as AstNode).type === 'Identifier' && (filter.callee as AstNode).value === 'tojson');
  if (!isTojson) return;
  const extraArgs = filter.type === 'CallExpression' ? (filter.args as AstNode[]) : [];
  const operand = node.operand;
  for (const key of Object.keys(node)) delete (node as Record<string, unknown>)[key];
  Object.assign(node, {
    type: 'CallExpression',
    callee: { type: 'Identifier', value: TOJSON_FUNCTION },
    args: [{ type: 'ArrayLiteral', value: [operand] }, ...extraArgs],
  });
}

function runtimeToPlain(v: JinjaRuntimeValue | undefined): unknown {
  if (v === undefined) return undefined;
  if (v.type === 'ArrayValue' || v.type === 'TupleValue') return (v.value as JinjaRuntimeValue[]).map(runtimeToPlain);
  return v.value;
}

// Called by the rewritten template as `__graniteflow_tojson([x], indent=…, …)`; the library
// passes keyword arguments as a trailing Map of runtime values.
function tojsonFunction(wrapped: unknown, kwargs?: unknown): string {
  const [value] = wrapped as JinjaRuntimeValue[];
  const options: PythonJsonOptions = {};
  if (kwargs instanceof Map) {
    for (const [key, raw] of kwargs as Map<string, JinjaRuntimeValue>) {
      const v = runtimeToPlain(raw);
      if (key === 'indent') options.indent = v as number | string | null;
      else if (key === 'ensure_ascii') options.ensureAscii = Boolean(v);
      else if (key === 'sort_keys') options.sortKeys = Boolean(v);
      else if (key === 'separators') options.separators = v as [string, string] | null;
      else throw new Error(`tojson() got an unexpected keyword argument '${key}'`);
    }
  }
  return pythonJsonDumps(value, options);
}

function specialTokenText(token: unknown): string | undefined {
  if (typeof token === 'string') return token;
  if (typeof token === 'object' && token !== null && typeof (token as { content?: unknown }).content === 'string') {
    return (token as { content: string }).content;
  }
  return undefined;
}

/**
 * A parsed chat template plus the special-token variables transformers exposes to it
 * (`bos_token`, `eos_token`, `pad_token`, `unk_token`).
 */
export class ChatTemplate {
  private readonly template: JinjaTemplate;

  private constructor(
    template: JinjaTemplate,
    /** Where the template came from, for error messages (a file path or `tokenizer_config.json → chat_template`). */
    readonly source: string,
    private readonly specialTokens: Readonly<Record<string, string>>,
  ) {
    this.template = template;
  }

  /**
   * Parses a template.
   *
   * @param text Jinja source.
   * @param source Where it came from; named in every error.
   * @param specialTokens Variables such as `{ bos_token: '<|end_of_text|>' }`.
   * @throws ChatTemplateError when the template does not parse.
   */
  static parse(text: string, source: string, specialTokens: Readonly<Record<string, string>> = {}): ChatTemplate {
    if (typeof text !== 'string') {
      throw new ChatTemplateError(`Chat template from ${source} must be a string, got ${typeof text}`);
    }
    let template: JinjaTemplate;
    try {
      template = new jinja.Template(text);
    } catch (err) {
      throw new ChatTemplateError(`Cannot parse the chat template from ${source}: ${(err as Error).message}`, {
        cause: err,
      });
    }
    rewriteTojson(template.parsed);
    return new ChatTemplate(template, source, specialTokens);
  }

  /**
   * Picks the template to use from a `tokenizer_config.json` `chat_template` value: a string, or a
   * list of `{name, template}` where transformers picks `templateName`, else "tool_use" when tools
   * are given and present, else "default".
   */
  static select(config: ChatTemplateConfig, source: string, opts: { templateName?: string; hasTools?: boolean } = {}) {
    if (typeof config === 'string') return { text: config, source };
    if (!Array.isArray(config)) {
      throw new ChatTemplateError(`${source} must be a string or a list of {name, template}, got ${typeof config}`);
    }
    const byName = new Map(config.map((t) => [t.name, t.template]));
    const name = opts.templateName ?? (opts.hasTools && byName.has('tool_use') ? 'tool_use' : 'default');
    const text = byName.get(name);
    if (text === undefined) {
      throw new ChatTemplateError(`${source} has no template named "${name}" (available: ${[...byName.keys()].join(', ') || 'none'})`);
    }
    return { text, source: `${source}["${name}"]` };
  }

  /** Special-token variables from a `tokenizer_config.json` (strings or `{content}` objects). */
  static specialTokensOf(tokenizerConfig: Readonly<Record<string, unknown>>): Record<string, string> {
    const out: Record<string, string> = {};
    for (const key of ['bos_token', 'eos_token', 'pad_token', 'unk_token', 'sep_token', 'cls_token', 'mask_token']) {
      const text = specialTokenText(tokenizerConfig[key]);
      if (text !== undefined) out[key] = text;
    }
    return out;
  }

  /**
   * Renders a conversation to the prompt string.
   *
   * @example
   * template.apply([{ role: 'user', content: 'Hi' }], { addGenerationPrompt: true })
   * // '<|start_of_role|>system<|end_of_role|>…<|start_of_role|>assistant<|end_of_role|>'
   * @throws ChatTemplateError naming the template source when rendering fails (including
   *   `raise_exception(...)` called by the template).
   */
  apply(messages: readonly ChatMessage[], options: ApplyChatTemplateOptions = {}): string {
    if (!Array.isArray(messages)) {
      throw new ChatTemplateError(`messages must be an array of {role, content}, got ${typeof messages}`);
    }
    messages.forEach((m, i) => {
      if (typeof m !== 'object' || m === null || typeof m.role !== 'string') {
        throw new ChatTemplateError(`messages[${i}] must be an object with a string "role"`);
      }
    });
    const { tools, documents, addGenerationPrompt, templateName: _unused, ...extra } = options;
    void _unused;
    // transformers passes tools/documents as None when absent, so `tools is none` holds.
    const variables: Record<string, unknown> = {
      ...this.specialTokens,
      ...extra,
      messages,
      tools: tools ?? null,
      documents: documents ?? null,
      add_generation_prompt: addGenerationPrompt ?? false,
      [TOJSON_FUNCTION]: tojsonFunction,
    };
    try {
      return this.template.render(variables);
    } catch (err) {
      throw new ChatTemplateError(`Rendering the chat template from ${this.source} failed: ${(err as Error).message}`, {
        cause: err,
      });
    }
  }
}
