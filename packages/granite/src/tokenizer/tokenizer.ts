/**
 * The Granite tokenizer: a byte-level BPE loaded from a model folder's `tokenizer.json` and
 * `tokenizer_config.json` through `@huggingface/tokenizers`, plus the folder's chat template.
 */
import * as path from 'node:path';
import { FileKindError, jsonErrorDetail, readRegularFileAsync } from '@graniteflow/core';
import { byteLevelToBytes } from './byte_level';
import { ChatTemplate, ChatTemplateError, type ApplyChatTemplateOptions, type ChatMessage, type ChatTemplateConfig } from './chat_template';
import { tokenizers, type HfTokenizer } from './hf_libs';

/** A tokenizer file is missing or malformed, or an argument is out of range. */
export class TokenizerError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'TokenizerError';
  }
}

/** Options of {@link GraniteTokenizer.decode}. */
export interface DecodeOptions {
  /** Drop added tokens marked `special` (`<|end_of_text|>`, `<|start_of_role|>`, …). Default false. */
  skipSpecialTokens?: boolean;
}

/** Extra inputs of {@link GraniteTokenizer.fromJSON}. */
export interface TokenizerExtras {
  /** Parsed `generation_config.json`: its `eos_token_id` (number or list) adds stop ids. */
  generationConfig?: Readonly<Record<string, unknown>>;
  /** Parsed `special_tokens_map.json`, consulted for tokens `tokenizer_config.json` lacks. */
  specialTokensMap?: Readonly<Record<string, unknown>>;
  /** Names the chat template's origin in error messages. */
  chatTemplateSource?: string;
}

interface AddedTokenJson {
  id: number;
  content: string;
  special?: boolean;
}

type Json = Record<string, unknown>;

function isObject(x: unknown): x is Json {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

function tokenText(token: unknown): string | undefined {
  if (typeof token === 'string') return token;
  if (isObject(token) && typeof token.content === 'string') return token.content;
  return undefined;
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

function hasByteLevelStep(config: unknown): boolean {
  if (!isObject(config)) return false;
  if (config.type === 'ByteLevel') return true;
  const steps = config.pretokenizers ?? config.pre_tokenizers;
  return Array.isArray(steps) && steps.some(hasByteLevelStep);
}

// ignoreBOM: a U+FEFF at the start of a piece is text, not a byte-order mark to drop.
const utf8 = new TextDecoder('utf-8', { ignoreBOM: true });

/**
 * A Granite tokenizer. Encoding never adds BOS/EOS (Granite's `add_bos_token` is false); added
 * tokens such as `<tool_call>` are split out of the text before BPE even when not "special".
 *
 * @example
 * const tok = await GraniteTokenizer.fromFolder('/models/granite-4.0-h-micro');
 * const ids = tok.encodeChat([{ role: 'user', content: 'Hi' }], { addGenerationPrompt: true });
 * tok.decode(ids, { skipSpecialTokens: true });
 */
export class GraniteTokenizer {
  /** Number of ids the tokenizer can produce (base vocabulary plus added tokens). The model's embedding may be padded larger. */
  readonly vocabSize: number;
  /** Ids of added tokens marked `special`, ascending. */
  readonly specialTokenIds: readonly number[];
  /** `bos_token` id, if the config names one. */
  readonly bosTokenId: number | undefined;
  /** Primary end-of-sequence id (`eos_token` of tokenizer_config, else the first generation_config id). */
  readonly eosTokenId: number | undefined;
  /** Every id that ends generation: `eos_token` plus all `generation_config.json` `eos_token_id` entries. */
  readonly eosTokenIds: readonly number[];
  readonly padTokenId: number | undefined;
  readonly unkTokenId: number | undefined;
  /** The chat template, when the checkpoint ships one. */
  readonly chatTemplate: ChatTemplate | undefined;

  private readonly tokenizer: HfTokenizer;
  private readonly specialSet: ReadonlySet<number>;
  private readonly addedTokens: readonly AddedTokenJson[];
  private readonly addedSplitter: RegExp | undefined;
  private readonly byteLevel: boolean;
  private readonly cleanUpSpaces: boolean;
  private readonly chatTemplateConfig: ChatTemplateConfig | undefined;
  private readonly chatTemplateSource: string;
  private readonly templateVariables: Readonly<Record<string, string>>;
  private readonly namedTemplates = new Map<string, ChatTemplate>();

  private constructor(tokenizerJson: Json, tokenizerConfig: Json, chatTemplate: ChatTemplateConfig | undefined, extras: TokenizerExtras) {
    try {
      this.tokenizer = new tokenizers.Tokenizer(tokenizerJson, tokenizerConfig);
    } catch (err) {
      throw new TokenizerError(`Cannot build the tokenizer from tokenizer.json: ${(err as Error).message}`, {
        cause: err,
      });
    }
    const model = tokenizerJson.model;
    if (!isObject(model) || !isObject(model.vocab)) {
      throw new TokenizerError('tokenizer.json: expected "model.vocab" to be an object of token → id');
    }
    const added = Array.isArray(tokenizerJson.added_tokens) ? (tokenizerJson.added_tokens as AddedTokenJson[]) : [];
    this.addedTokens = added;
    let maxId = -1;
    for (const id of Object.values(model.vocab)) if (typeof id === 'number' && id > maxId) maxId = id;
    for (const t of added) if (t.id > maxId) maxId = t.id;
    this.vocabSize = maxId + 1;
    this.specialTokenIds = added
      .filter((t) => t.special)
      .map((t) => t.id)
      .sort((a, b) => a - b);
    this.specialSet = new Set(this.specialTokenIds);
    // Longest first, so `<think_on>` is not read as `<think>` + `_on>`.
    const contents = added.map((t) => t.content).sort((a, b) => b.length - a.length);
    this.addedSplitter = contents.length ? new RegExp(`(${contents.map(escapeRegExp).join('|')})`) : undefined;
    this.byteLevel = hasByteLevelStep(tokenizerJson.pre_tokenizer);
    // transformers ≥ 4.45 defaults clean_up_tokenization_spaces to false; Granite sets it explicitly.
    this.cleanUpSpaces = tokenizerConfig.clean_up_tokenization_spaces === true;

    const map = extras.specialTokensMap ?? {};
    const idOf = (key: string): number | undefined => {
      const text = tokenText(tokenizerConfig[key]) ?? tokenText(map[key]);
      if (text === undefined) return undefined;
      const id = this.tokenToId(text);
      if (id === undefined) {
        throw new TokenizerError(`tokenizer_config.json: ${key} "${text}" is not in the vocabulary`);
      }
      return id;
    };
    this.bosTokenId = idOf('bos_token');
    this.padTokenId = idOf('pad_token');
    this.unkTokenId = idOf('unk_token');
    const configEos = idOf('eos_token');
    const genEos = extras.generationConfig?.eos_token_id;
    const genEosList = (Array.isArray(genEos) ? genEos : genEos === undefined || genEos === null ? [] : [genEos]).map((id) => {
      if (typeof id !== 'number' || !Number.isInteger(id) || id < 0) {
        throw new TokenizerError(`generation_config.json: eos_token_id must be an id or a list of ids, got ${JSON.stringify(genEos)}`);
      }
      return id;
    });
    this.eosTokenId = configEos ?? genEosList[0];
    this.eosTokenIds = [...new Set([...(configEos === undefined ? [] : [configEos]), ...genEosList])];
    this.bosTokenId ??= typeof extras.generationConfig?.bos_token_id === 'number' ? extras.generationConfig.bos_token_id : undefined;
    this.padTokenId ??= typeof extras.generationConfig?.pad_token_id === 'number' ? extras.generationConfig.pad_token_id : undefined;

    const variables: Record<string, string> = { ...ChatTemplate.specialTokensOf(map), ...ChatTemplate.specialTokensOf(tokenizerConfig) };
    this.templateVariables = variables;
    this.chatTemplateConfig = chatTemplate;
    this.chatTemplateSource = extras.chatTemplateSource ?? 'tokenizer_config.json → chat_template';
    this.chatTemplate = typeof chatTemplate === 'string' ? ChatTemplate.parse(chatTemplate, this.chatTemplateSource, variables) : undefined;
  }

  /**
   * Builds a tokenizer from parsed JSON.
   *
   * @param tokenizerJson Parsed `tokenizer.json`.
   * @param tokenizerConfig Parsed `tokenizer_config.json`.
   * @param chatTemplate A template overriding `tokenizerConfig.chat_template` (e.g. the contents of `chat_template.jinja`).
   */
  static fromJSON(tokenizerJson: unknown, tokenizerConfig: unknown, chatTemplate?: string, extras: TokenizerExtras = {}): GraniteTokenizer {
    if (!isObject(tokenizerJson)) throw new TokenizerError('tokenizer.json must hold a JSON object');
    if (!isObject(tokenizerConfig)) throw new TokenizerError('tokenizer_config.json must hold a JSON object');
    const template = chatTemplate ?? (tokenizerConfig.chat_template as ChatTemplateConfig | undefined);
    return new GraniteTokenizer(tokenizerJson, tokenizerConfig, template, extras);
  }

  /**
   * Loads `tokenizer.json` and `tokenizer_config.json` from a model folder, plus — when present —
   * `chat_template.jinja` (preferred over the config's `chat_template`, as in transformers),
   * `generation_config.json` (extra eos ids) and `special_tokens_map.json`.
   */
  static async fromFolder(dir: string): Promise<GraniteTokenizer> {
    // Only regular files are read: a FIFO would block forever, a directory fail without its path.
    const readText = async (file: string, required: boolean): Promise<string | undefined> => {
      try {
        return (await readRegularFileAsync(file)).toString('utf8');
      } catch (err) {
        if (!required && err instanceof FileKindError && err.missing) return undefined;
        throw new TokenizerError(`Cannot read ${file}: ${err instanceof FileKindError ? `it ${err.detail}` : (err as Error).message}`, {
          cause: err,
        });
      }
    };
    const readJson = async (name: string, required: boolean): Promise<Json | undefined> => {
      const file = path.join(dir, name);
      const text = await readText(file, required);
      if (text === undefined) return undefined;
      try {
        const value: unknown = JSON.parse(text);
        if (!isObject(value)) throw new Error('expected a JSON object');
        return value;
      } catch (err) {
        throw new TokenizerError(`${file} is not valid JSON: ${jsonErrorDetail(err)}`, { cause: err });
      }
    };
    // Read together, reported in this order (and all at once): which read fails first is a race.
    const settled = await Promise.allSettled([
      readJson('tokenizer.json', true),
      readJson('tokenizer_config.json', true),
      readJson('generation_config.json', false),
      readJson('special_tokens_map.json', false),
    ]);
    const failures = settled.flatMap((r) => (r.status === 'rejected' ? [r.reason as Error] : []));
    if (failures.length === 1) throw failures[0];
    if (failures.length > 1) throw new TokenizerError(failures.map((e) => e.message).join('; '), { cause: failures[0] });
    const [tokenizerJson, tokenizerConfig, generationConfig, specialTokensMap] = settled.map(
      (r) => (r as PromiseFulfilledResult<Json | undefined>).value,
    );
    const templateFile = path.join(dir, 'chat_template.jinja');
    const templateText = await readText(templateFile, false);
    return GraniteTokenizer.fromJSON(tokenizerJson, tokenizerConfig, templateText, {
      generationConfig,
      specialTokensMap,
      chatTemplateSource: templateText !== undefined ? templateFile : `${path.join(dir, 'tokenizer_config.json')} → chat_template`,
    });
  }

  /** Token ids of `text`. No BOS/EOS is added. */
  encode(text: string): number[] {
    if (typeof text !== 'string') throw new TokenizerError(`encode(text): expected a string, got ${typeof text}`);
    if (text === '') return [];
    return this.tokenizer.encode(text, { add_special_tokens: false }).ids;
  }

  /** Token strings of `text` (byte-level alphabet, added tokens verbatim). */
  tokenize(text: string): string[] {
    if (typeof text !== 'string') throw new TokenizerError(`tokenize(text): expected a string, got ${typeof text}`);
    if (text === '') return [];
    return this.tokenizer.encode(text, { add_special_tokens: false }).tokens;
  }

  /**
   * The pre-tokenizer's split of `text` as raw text: added tokens whole, the rest split by the
   * `tokenizer.json` pre-tokenizer regex (before the byte-level mapping). Useful to debug BPE.
   */
  preTokenize(text: string): string[] {
    if (typeof text !== 'string') throw new TokenizerError(`preTokenize(text): expected a string, got ${typeof text}`);
    const segments = this.addedSplitter ? text.split(this.addedSplitter) : [text];
    const pieces: string[] = [];
    const added = new Set(this.addedTokens.map((t) => t.content));
    for (const segment of segments) {
      if (segment === '') continue;
      if (added.has(segment)) {
        pieces.push(segment);
        continue;
      }
      const normalized = this.tokenizer.normalizer ? this.tokenizer.normalizer.normalize(segment) : segment;
      const split = this.tokenizer.pre_tokenizer ? this.tokenizer.pre_tokenizer.pre_tokenize_text(normalized) : [normalized];
      for (const piece of split) {
        const bytes = this.byteLevel ? byteLevelToBytes(piece) : undefined;
        pieces.push(bytes ? utf8.decode(bytes) : piece);
      }
    }
    return pieces;
  }

  /**
   * Text of `ids`. Invalid UTF-8 (e.g. a multi-byte character cut off) decodes to U+FFFD, as in
   * transformers (`errors="replace"`). An empty list decodes to "".
   *
   * @throws TokenizerError for an id outside `[0, vocabSize)`.
   */
  decode(ids: readonly number[], options: DecodeOptions = {}): string {
    if (!Array.isArray(ids)) throw new TokenizerError(`decode(ids): expected an array of token ids, got ${typeof ids}`);
    for (const id of ids) {
      if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) {
        throw new TokenizerError(`decode(ids): ${id} is not a token id (expected an integer in [0, ${this.vocabSize}))`);
      }
    }
    const skip = options.skipSpecialTokens ?? false;
    // @huggingface/tokenizers 0.2.0 throws on an empty list (and on one that skipping empties).
    const kept = skip ? ids.filter((id) => !this.specialSet.has(id)) : ids;
    if (kept.length === 0) return '';
    return this.tokenizer.decode(kept as number[], {
      skip_special_tokens: skip,
      clean_up_tokenization_spaces: this.cleanUpSpaces,
    });
  }

  /** Id of a token string (byte-level alphabet or an added token), or `undefined`. */
  tokenToId(token: string): number | undefined {
    return this.tokenizer.token_to_id(token);
  }

  /** Token string of an id, or `undefined` outside the vocabulary. */
  idToToken(id: number): string | undefined {
    return this.tokenizer.id_to_token(id);
  }

  /** Whether `id` is an added token marked special (dropped by `skipSpecialTokens`). */
  isSpecial(id: number): boolean {
    return this.specialSet.has(id);
  }

  /**
   * Renders a conversation with the checkpoint's chat template.
   *
   * @throws ChatTemplateError when the checkpoint has no chat template, or rendering fails.
   */
  applyChatTemplate(messages: readonly ChatMessage[], options: ApplyChatTemplateOptions = {}): string {
    return this.templateFor(options).apply(messages, options);
  }

  /** Token ids of {@link applyChatTemplate}'s prompt. */
  encodeChat(messages: readonly ChatMessage[], options: ApplyChatTemplateOptions = {}): number[] {
    return this.encode(this.applyChatTemplate(messages, options));
  }

  private templateFor(options: ApplyChatTemplateOptions): ChatTemplate {
    const config = this.chatTemplateConfig;
    if (config === undefined) {
      throw new ChatTemplateError(
        'This tokenizer has no chat template: expected chat_template.jinja or a "chat_template" entry in tokenizer_config.json',
      );
    }
    if (typeof config === 'string') {
      if (options.templateName !== undefined) {
        throw new ChatTemplateError(
          `${this.chatTemplateSource} is a single template; templateName "${options.templateName}" does not apply`,
        );
      }
      return this.chatTemplate as ChatTemplate;
    }
    const { text, source } = ChatTemplate.select(config, this.chatTemplateSource, {
      templateName: options.templateName,
      // transformers picks "tool_use" whenever tools are passed, even an empty list.
      hasTools: options.tools !== undefined && options.tools !== null,
    });
    let template = this.namedTemplates.get(source);
    if (!template) {
      template = ChatTemplate.parse(text, source, this.templateVariables);
      this.namedTemplates.set(source, template);
    }
    return template;
  }
}
