/**
 * Errors the command reports, and how any error becomes the one paragraph a user reads.
 * Exit codes: 0 success, 2 usage, 1 everything else.
 */

/** A mistake in the command line: unknown option, missing argument, value out of range. Exit code 2. */
export class UsageError extends Error {
  override name = 'UsageError';

  constructor(
    message: string,
    /** The subcommand whose help the message points to. */
    readonly command?: string,
  ) {
    super(message);
  }
}

/** A runtime problem the command has already phrased for the user (missing model, bad file). Exit code 1. */
export class CliError extends Error {
  override name = 'CliError';
}

export const EXIT_OK = 0;
export const EXIT_RUNTIME = 1;
export const EXIT_USAGE = 2;

// Advice appended to errors raised while reading model files, by error class name (the classes
// live in @graniteflow/core and @graniteflow/granite; matching by name keeps this file free of them).
const ADVICE: Record<string, string> = {
  SafetensorsError:
    'The model files look corrupt or incomplete: download them again (graniteflow download <org/name>) or re-copy the folder.',
  StateDictError:
    'The weights do not match the architecture in config.json: the folder mixes files of different models, or the checkpoint is not a Granite 4.0 hybrid model.',
  ConfigError: "The model's config.json is not a valid Granite 4.0 hybrid config.",
  UnsupportedModelError: '',
  InsufficientMemoryError: '',
  BackendError: '',
  TokenizerError: "The model's tokenizer files could not be read; download them again or re-copy the folder.",
  ChatTemplateError: "The model's chat template could not be used; run without --chat, or use a checkpoint with a working template.",
  SamplingOptionsError: '',
  HubNetworkError:
    'Check the network (and HF_ENDPOINT if you use a mirror), or pass a local model folder with --model ./path; --offline uses only the Hugging Face cache.',
  RepoNotFoundError: 'Check the repo id and --revision on the hub; private or gated repos need HF_TOKEN.',
  HubAuthError: 'Set HF_TOKEN to a token with access to this repo.',
  OfflineCacheMissError: 'Or pass a local model folder with --model ./path.',
  IntegrityError: 'Download it again: graniteflow download <org/name>.',
};

/** Collapses a message to one paragraph (tensor lists and the like stay readable, on one line). */
function oneParagraph(text: string): string {
  return text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '')
    .join(' ');
}

/**
 * An error's own message as one paragraph, without the command-line advice of {@link describeError}:
 * for HTTP clients, to whom "--backend cpu" or "graniteflow download" mean nothing.
 */
export function plainMessage(err: unknown): string {
  if (!(err instanceof Error)) return oneParagraph(String(err));
  return oneParagraph(err.message || err.name);
}

/** The message printed for an error (without the "graniteflow: error:" prefix). */
export function describeError(err: unknown): string {
  if (!(err instanceof Error)) return oneParagraph(String(err));
  if (err.name === 'AbortError') return 'Cancelled.';
  const advice = ADVICE[err.name];
  const message = plainMessage(err);
  if (!advice) return message;
  return `${/[.!?]$/.test(message) ? message : `${message}.`} ${advice}`;
}

/** Exit code for an error. */
export function exitCodeOf(err: unknown): number {
  return err instanceof UsageError ? EXIT_USAGE : EXIT_RUNTIME;
}
