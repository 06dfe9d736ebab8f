/** Any problem with a safetensors file or checkpoint, naming the file and, where known, the tensor. */
export class SafetensorsError extends Error {
  override name = 'SafetensorsError';

  constructor(
    readonly file: string,
    detail: string,
    readonly tensor?: string,
  ) {
    super(`${file}${tensor !== undefined ? `: tensor "${tensor}"` : ''}: ${detail}`);
  }
}
