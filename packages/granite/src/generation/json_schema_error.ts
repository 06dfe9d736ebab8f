/**
 * The error thrown when a JSON schema cannot be enforced by constrained decoding: a keyword that
 * would change which values are valid but is not implemented, an unknown keyword, a malformed
 * value, an unresolvable `$ref`, or a schema that admits no value at all.
 */
export class JsonSchemaError extends Error {
  /** The offending keyword (`''` when the problem is the schema as a whole). */
  readonly keyword: string;
  /** JSON pointer (URI fragment form, `#/properties/name`) of the schema holding the keyword. */
  readonly path: string;

  constructor(keyword: string, path: string, problem: string) {
    super(`JSON schema${keyword ? ` keyword "${keyword}"` : ''} at ${path}: ${problem}`);
    this.name = 'JsonSchemaError';
    this.keyword = keyword;
    this.path = path;
  }
}

/** Appends one reference token to a JSON pointer (escaping `~` and `/`). */
export function pointerJoin(path: string, token: string | number): string {
  return `${path}/${String(token).replace(/~/g, '~0').replace(/\//g, '~1')}`;
}
