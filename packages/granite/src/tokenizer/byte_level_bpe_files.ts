import { BYTE_TO_CHAR } from './byte_level';

/** The end-of-text token of {@link byteLevelBpeFiles} tokenizers: the separator of training documents. */
export const END_OF_TEXT = '<|end_of_text|>';

/** The two files of a tokenizer, as parsed JSON. */
export interface TokenizerFiles {
  'tokenizer.json': Record<string, unknown>;
  'tokenizer_config.json': Record<string, unknown>;
}

/**
 * A GPT-2-style byte-level BPE tokenizer in Hugging Face's format (what Granite's tokenizer is):
 * ids 0–255 are the bytes, then one token per merge in order (`merges`: pairs of existing tokens,
 * in the byte-level alphabet), then {@link END_OF_TEXT}. With no merges every byte is a token: a
 * tokenizer for any text that needs no training. Its vocabulary size is 257 + merges.
 */
export function byteLevelBpeFiles(merges: readonly (readonly [string, string])[] = []): TokenizerFiles {
  const vocab: Record<string, number> = {};
  BYTE_TO_CHAR.forEach((ch, b) => (vocab[ch] = b));
  let next = 256;
  for (const [a, b] of merges) {
    if (vocab[a] === undefined || vocab[b] === undefined)
      throw new RangeError(`byteLevelBpeFiles: merge "${a} ${b}" uses a token not made before it.`);
    const merged = a + b;
    if (vocab[merged] === undefined) vocab[merged] = next++;
  }
  const eosId = next;
  return {
    'tokenizer.json': {
      version: '1.0',
      truncation: null,
      padding: null,
      added_tokens: [
        { id: eosId, content: END_OF_TEXT, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true },
      ],
      normalizer: null,
      pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
      post_processor: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: false, use_regex: true },
      decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
      model: {
        type: 'BPE',
        dropout: null,
        unk_token: null,
        continuing_subword_prefix: null,
        end_of_word_suffix: null,
        fuse_unk: false,
        byte_fallback: false,
        ignore_merges: false,
        vocab,
        merges: merges.map(([a, b]) => [a, b]),
      },
    },
    'tokenizer_config.json': {
      tokenizer_class: 'GPT2Tokenizer',
      add_bos_token: false,
      add_prefix_space: false,
      bos_token: END_OF_TEXT,
      eos_token: END_OF_TEXT,
      pad_token: END_OF_TEXT,
      unk_token: null,
      clean_up_tokenization_spaces: false,
      model_max_length: 1_000_000_000,
    },
  };
}
