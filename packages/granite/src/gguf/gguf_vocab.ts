/**
 * A model folder's Hugging Face tokenizer as llama.cpp's GGUF vocabulary keys, following what
 * llama.cpp's converter writes for granitehybrid (`_set_vocab_gpt2` and `SpecialVocab`): the
 * byte-level BPE tokens, their types, the merges, the special token ids, the add-BOS/EOS flags and
 * the chat template.
 */
import * as path from 'node:path';
import { pathEntryExists, readRegularFile, ggufValue, type GgufValue } from '@graniteflow/core';
import { readJsonObject } from '../loading/model_files';
import { BYTE_TO_CHAR } from '../tokenizer/byte_level';

/** llama.cpp's `llama_token_type` values (gguf-py `TokenType`). */
export const GGUF_TOKEN_TYPE = { normal: 1, unknown: 2, control: 3, userDefined: 4, unused: 5, byte: 6 } as const;

/**
 * The Granite 4.0 / cl100k split regex as tokenizer.json writes it. llama.cpp implements it as its
 * `dbrx` pre-tokenizer (the same regex as `llama3`, without `llama3`'s ignore-merges and BOS), the
 * type IBM's own Granite 4.0 GGUFs carry.
 */
const CL100K_SPLIT =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/** A tokenizer file whose content cannot be written as a llama.cpp vocabulary. */
export class GgufVocabError extends Error {
  override name = 'GgufVocabError';
}

type Json = Record<string, unknown>;

function isObject(x: unknown): x is Json {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

/** The llama.cpp pre-tokenizer type equivalent to tokenizer.json's `pre_tokenizer`, or null. */
function preTokenizerType(pre: unknown): string | null {
  if (!isObject(pre)) return null;
  if (pre.type === 'ByteLevel' && pre.use_regex === true) return 'gpt-2';
  const steps = pre.pretokenizers;
  if (pre.type !== 'Sequence' || !Array.isArray(steps) || steps.length !== 2) return null;
  const [split, byteLevel] = steps as unknown[];
  if (!isObject(split) || split.type !== 'Split' || !isObject(split.pattern) || split.pattern.Regex !== CL100K_SPLIT) return null;
  if (split.behavior !== 'Isolated' || split.invert === true) return null;
  if (!isObject(byteLevel) || byteLevel.type !== 'ByteLevel' || byteLevel.use_regex !== false) return null;
  return 'dbrx';
}

/** What gguf-py's `does_token_look_special` treats as a control token even when not marked special. */
function looksSpecial(token: string): boolean {
  return (
    token === '<pad>' ||
    token === '<mask>' ||
    token === '<2mass>' ||
    token === '[@BOS@]' ||
    (token.startsWith('<|') && token.endsWith('|>')) ||
    (token.startsWith('<｜') && token.endsWith('｜>')) ||
    (token.startsWith('<unused') && token.endsWith('>'))
  );
}

const SPECIAL_TYPES = ['bos', 'eos', 'unk', 'sep', 'pad', 'cls', 'mask'] as const;
const SPECIAL_ID_KEYS: Record<(typeof SPECIAL_TYPES)[number], string> = {
  bos: 'tokenizer.ggml.bos_token_id',
  eos: 'tokenizer.ggml.eos_token_id',
  unk: 'tokenizer.ggml.unknown_token_id',
  sep: 'tokenizer.ggml.seperator_token_id', // sic: llama.cpp's key
  pad: 'tokenizer.ggml.padding_token_id',
  cls: 'tokenizer.ggml.cls_token_id',
  mask: 'tokenizer.ggml.mask_token_id',
};

function readOptionalJson(file: string): Json | null {
  return pathEntryExists(file) ? readJsonObject(file, 'the file is corrupt: download or copy it again.') : null;
}

/**
 * The tokenizer metadata of a model folder with `vocabSize` rows of embeddings, or null when the
 * folder has no tokenizer.json (the caller then writes a vocabulary-less model).
 */
export function ggufVocabMetadata(folder: string, vocabSize: number, config: Json): [string, GgufValue][] | null {
  const file = path.join(folder, 'tokenizer.json');
  if (!pathEntryExists(file)) return null;
  const tokenizer = readJsonObject(file, 'the file is corrupt: download or copy it again.');
  const fail = (detail: string) => new GgufVocabError(`${file}: ${detail}`);
  const model = tokenizer.model;
  if (!isObject(model) || model.type !== 'BPE' || !isObject(model.vocab) || !Array.isArray(model.merges)) {
    throw fail('expected a byte-level BPE model ("model": {"type": "BPE", "vocab": {...}, "merges": [...]}), as Granite ships.');
  }
  const pre = preTokenizerType(tokenizer.pre_tokenizer);
  if (pre === null) {
    throw fail(
      `its "pre_tokenizer" is not one graniteflow maps to a llama.cpp pre-tokenizer type: expected Granite's split regex followed by ByteLevel (llama.cpp "dbrx"), or a ByteLevel step with use_regex (llama.cpp "gpt-2"), got ${JSON.stringify(tokenizer.pre_tokenizer).slice(0, 200)}.`,
    );
  }
  if (tokenizer.normalizer !== null && tokenizer.normalizer !== undefined) {
    throw fail(
      `has a "normalizer" (${JSON.stringify(tokenizer.normalizer).slice(0, 100)}), which llama.cpp's byte-level BPE does not apply.`,
    );
  }

  const tokens: string[] = new Array(vocabSize);
  const types: number[] = new Array(vocabSize).fill(GGUF_TOKEN_TYPE.normal);
  const place = (id: unknown, text: string, what: string) => {
    if (typeof id !== 'number' || !Number.isInteger(id) || id < 0)
      throw fail(`${what} ${JSON.stringify(text)} has id ${String(id)}, not a non-negative integer.`);
    if (id >= vocabSize) {
      throw fail(
        `${what} ${JSON.stringify(text)} has id ${id}, but the model has only ${vocabSize} embedding rows (config.json vocab_size).`,
      );
    }
    tokens[id] = text;
  };
  for (const [text, id] of Object.entries(model.vocab)) place(id, text, 'token');
  const added = Array.isArray(tokenizer.added_tokens) ? (tokenizer.added_tokens as unknown[]) : [];
  const addedByContent = new Map<string, number>();
  for (const a of added) {
    if (!isObject(a) || typeof a.content !== 'string') throw fail('has an added_tokens entry without a "content" string.');
    place(a.id, a.content, 'added token');
    if (!addedByContent.has(a.content)) addedByContent.set(a.content, a.id as number);
    types[a.id as number] = a.special === true || looksSpecial(a.content) ? GGUF_TOKEN_TYPE.control : GGUF_TOKEN_TYPE.userDefined;
  }
  // Embedding rows past the tokenizer (the vocabulary is padded for the matmuls) are never produced.
  for (let i = 0; i < vocabSize; i++) {
    if (tokens[i] === undefined) {
      tokens[i] = `[PAD${i}]`;
      types[i] = GGUF_TOKEN_TYPE.unused;
    }
  }

  const merges = (model.merges as unknown[]).map((m, i) => {
    if (typeof m === 'string') return m;
    if (Array.isArray(m) && m.length === 2 && typeof m[0] === 'string' && typeof m[1] === 'string') {
      // Pairs may hold spaces, which the "a b" form cannot; gguf-py writes them as U+0120 ("Ġ").
      return m.map((s: string) => s.replace(/ /g, '\u0120')).join(' ');
    }
    throw fail(`merge ${i} is ${JSON.stringify(m).slice(0, 60)}, neither "a b" nor ["a", "b"].`);
  });

  const metadata: [string, GgufValue][] = [
    ['tokenizer.ggml.model', ggufValue.string('gpt2')],
    ['tokenizer.ggml.pre', ggufValue.string(pre)],
    ['tokenizer.ggml.tokens', ggufValue.array('string', tokens)],
    ['tokenizer.ggml.token_type', ggufValue.array('i32', types)],
    ['tokenizer.ggml.merges', ggufValue.array('string', merges)],
  ];

  // As gguf-py's SpecialVocab: the tokens tokenizer_config.json names (looked up among the added
  // tokens) first, then config.json's *_token_id.
  const tokenizerConfig = readOptionalJson(path.join(folder, 'tokenizer_config.json')) ?? {};
  const ids = new Map<string, number>();
  for (const typ of SPECIAL_TYPES) {
    const entry = tokenizerConfig[`${typ}_token`];
    const content = typeof entry === 'string' ? entry : isObject(entry) && typeof entry.content === 'string' ? entry.content : undefined;
    const id = content === undefined ? undefined : addedByContent.get(content);
    if (id !== undefined) ids.set(typ, id);
  }
  for (const typ of SPECIAL_TYPES) {
    const id = config[`${typ}_token_id`];
    if (!ids.has(typ) && typeof id === 'number' && Number.isInteger(id) && id >= 0 && id < vocabSize) ids.set(typ, id);
  }
  for (const typ of SPECIAL_TYPES) {
    const id = ids.get(typ);
    if (id !== undefined) metadata.push([SPECIAL_ID_KEYS[typ], ggufValue.u32(id)]);
  }
  for (const typ of ['bos', 'eos'] as const) {
    const flag = tokenizerConfig[`add_${typ}_token`];
    if (typeof flag === 'boolean') metadata.push([`tokenizer.ggml.add_${typ}_token`, ggufValue.bool(flag)]);
  }

  const jinja = path.join(folder, 'chat_template.jinja');
  const template = tokenizerConfig.chat_template ?? (pathEntryExists(jinja) ? readRegularFile(jinja).toString('utf8') : undefined);
  if (typeof template === 'string') {
    metadata.push(['tokenizer.chat_template', ggufValue.string(template)]);
  } else if (Array.isArray(template)) {
    // Named templates: "default" is the chat template, the others keep their names.
    for (const t of template) {
      if (!isObject(t) || typeof t.name !== 'string' || typeof t.template !== 'string') continue;
      metadata.push([t.name === 'default' ? 'tokenizer.chat_template' : `tokenizer.chat_template.${t.name}`, ggufValue.string(t.template)]);
    }
  }
  return metadata;
}

/**
 * A stand-in vocabulary for a checkpoint without tokenizer.json (test and benchmark checkpoints):
 * ids 0–255 are the 256 byte-level bytes with no merges, every other id an unused placeholder, and
 * config.json's bos / eos / pad ids control tokens. llama.cpp needs a working tokenizer to load a
 * model (its "none" vocabulary aborts in node-llama-cpp); token ids in and logits out are unaffected.
 */
export function byteFallbackVocabMetadata(vocabSize: number, config: Json, file: string): [string, GgufValue][] {
  if (vocabSize < 256) {
    throw new GgufVocabError(
      `${file}: the folder has no tokenizer.json and vocab_size ${vocabSize} is under the 256 byte tokens a stand-in vocabulary needs; add the model's tokenizer.json.`,
    );
  }
  const tokens = Array.from({ length: vocabSize }, (_, i) => (i < 256 ? BYTE_TO_CHAR[i] : `[PAD${i}]`));
  const types: number[] = Array.from({ length: vocabSize }, (_, i) => (i < 256 ? GGUF_TOKEN_TYPE.normal : GGUF_TOKEN_TYPE.unused));
  const metadata: [string, GgufValue][] = [];
  const specials: [string, string, string][] = [
    ['bos', 'tokenizer.ggml.bos_token_id', '<|bos|>'],
    ['eos', 'tokenizer.ggml.eos_token_id', '<|eos|>'],
    ['pad', 'tokenizer.ggml.padding_token_id', '<|pad|>'],
  ];
  for (const [typ, key, text] of specials) {
    const id = config[`${typ}_token_id`];
    if (typeof id !== 'number' || !Number.isInteger(id) || id < 256 || id >= vocabSize) continue;
    // bos and eos are often one token: keep the first name given.
    if (types[id] !== GGUF_TOKEN_TYPE.control) tokens[id] = text;
    types[id] = GGUF_TOKEN_TYPE.control;
    metadata.push([key, ggufValue.u32(id)]);
  }
  return [
    ['tokenizer.ggml.model', ggufValue.string('gpt2')],
    ['tokenizer.ggml.pre', ggufValue.string('gpt-2')],
    ['tokenizer.ggml.tokens', ggufValue.array('string', tokens)],
    ['tokenizer.ggml.token_type', ggufValue.array('i32', types)],
    ['tokenizer.ggml.merges', ggufValue.array('string', [])],
    ...metadata,
    ['tokenizer.ggml.add_bos_token', ggufValue.bool(false)],
  ];
}
