/**
 * JSON mode for a loaded model: the `response_format` of an OpenAI request as a
 * {@link JsonConstraint} over the model's own vocabulary. The vocabulary's trie is built once per
 * tokenizer (about a tenth of a second for 100k tokens) and shared by every request.
 */
import type { GraniteModel } from '../granite_model';
import type { GraniteTokenizer } from '../tokenizer/tokenizer';
import { JsonConstraint } from './json_constraint';
import { compileResponseFormat, type ResponseFormat } from './response_format';
import { TokenTrie } from './token_trie';

const tries = new WeakMap<GraniteTokenizer, TokenTrie>();

/** The text of every token id (special tokens as `''`, never allowed), as a shared trie. */
export function tokenTrieOf(tokenizer: GraniteTokenizer): TokenTrie {
  let trie = tries.get(tokenizer);
  if (trie === undefined) {
    const special = new Set(tokenizer.specialTokenIds);
    const texts = Array.from({ length: tokenizer.vocabSize }, (_, id) =>
      special.has(id) ? '' : tokenizer.decode([id], { skipSpecialTokens: false }),
    );
    tries.set(tokenizer, (trie = new TokenTrie(texts)));
  }
  return trie;
}

/**
 * A constraint that makes `model` write JSON as `format` asks (`json_object`: an object;
 * `json_schema`: a value of that schema), or null for `text` / no format. Throws `JsonSchemaError`
 * naming a schema keyword it cannot enforce.
 */
export function jsonConstraint(model: GraniteModel, format: ResponseFormat | null | undefined): JsonConstraint | null {
  const automaton = compileResponseFormat(format);
  if (automaton === null) return null;
  if (model.tokenizer === null) throw new Error(`${model.folder} has no tokenizer.json: JSON mode needs the model's vocabulary.`);
  return new JsonConstraint(automaton, tokenTrieOf(model.tokenizer), model.eosTokenIds);
}
