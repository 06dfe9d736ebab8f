/**
 * A tensor or file name as a message quotes it: control characters and quotes escaped (a name may
 * hold a newline, and a message is one paragraph) and at most 200 characters.
 */
export function quotedName(name: string): string {
  const escaped = JSON.stringify(name).slice(1, -1);
  return `"${escaped.length > 200 ? `${escaped.slice(0, 197)}...` : escaped}"`;
}

/** Any problem with a safetensors file or checkpoint, naming the file and, where known, the tensor. */
export class SafetensorsError extends Error {
  override name = 'SafetensorsError';

  constructor(
    readonly file: string,
    detail: string,
    readonly tensor?: string,
  ) {
    super(`${file}${tensor !== undefined ? `: tensor ${quotedName(tensor)}` : ''}: ${detail}`);
  }
}
