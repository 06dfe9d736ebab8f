// @huggingface/tokenizers and @huggingface/jinja are `"type": "module"` packages whose type
// declarations TypeScript reads as ESM, although both ship a CommonJS build under the `require`
// condition. This package compiles to CommonJS, so we take the types through an ESM-mode type
// import and load the CommonJS build with a plain `require` — synchronous, so `fromJSON` can be.
import type * as TokenizersModule from '@huggingface/tokenizers' with { 'resolution-mode': 'import' };
import type * as JinjaModule from '@huggingface/jinja' with { 'resolution-mode': 'import' };

export const tokenizers: typeof TokenizersModule = require('@huggingface/tokenizers');
export const jinja: typeof JinjaModule = require('@huggingface/jinja');

export type HfTokenizer = InstanceType<typeof TokenizersModule.Tokenizer>;
export type JinjaTemplate = InstanceType<typeof JinjaModule.Template>;
