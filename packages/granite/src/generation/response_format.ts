/**
 * OpenAI-style `response_format` to a JSON schema and automaton: `text` is unconstrained,
 * `json_object` requires a top-level object, `json_schema` enforces `json_schema.schema`.
 */
import { compileJsonSchema, type JsonAutomaton, type JsonAutomatonOptions } from './json_schema_automaton';
import type { JsonSchema } from './json_schema_nodes';

/** The `response_format` request field of an OpenAI-compatible chat/completions API. */
export type ResponseFormat =
  | { type: 'text' }
  | { type: 'json_object' }
  | {
      type: 'json_schema';
      json_schema: { name?: string; description?: string; schema?: JsonSchema; strict?: boolean | null };
    };

/**
 * The schema a `response_format` asks for, or null for unconstrained text. A `json_schema` without
 * `schema` is treated like `json_object`. `strict: false` is still enforced.
 * @throws TypeError for a malformed `response_format`.
 */
export function responseFormatSchema(format: ResponseFormat | null | undefined): JsonSchema | null {
  if (format === null || format === undefined) return null;
  if (typeof format !== 'object') throw new TypeError('response_format: expected an object');
  switch (format.type) {
    case 'text':
      return null;
    case 'json_object':
      return { type: 'object' };
    case 'json_schema': {
      const spec = (format as { json_schema?: unknown }).json_schema;
      if (typeof spec !== 'object' || spec === null) throw new TypeError('response_format.json_schema: expected an object');
      const schema = (spec as { schema?: JsonSchema }).schema;
      return schema === undefined ? { type: 'object' } : schema;
    }
    default:
      throw new TypeError(
        `response_format.type: expected "text", "json_object" or "json_schema", got ${JSON.stringify((format as { type?: unknown }).type)}`,
      );
  }
}

/** The automaton for a `response_format`, or null for unconstrained text. @throws JsonSchemaError, TypeError */
export function compileResponseFormat(format: ResponseFormat | null | undefined, options?: JsonAutomatonOptions): JsonAutomaton | null {
  const schema = responseFormatSchema(format);
  return schema === null ? null : compileJsonSchema(schema, options);
}
