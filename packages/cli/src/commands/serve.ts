/** `graniteflow serve`: the OpenAI-compatible HTTP server. */
import {
  COMMON_OPTIONS,
  flag,
  formatHelp,
  MODEL_OPTIONS,
  numberOption,
  parseCommandArgs,
  stringList,
  stringOption,
  type OptionTable,
  type ParsedArgs,
} from '../args';
import { UsageError } from '../errors';
import type { CliIO } from '../io';
import { createServer } from '../server/server';
import { DTYPE_OPTIONS, loadFromArgs, type Command } from './common';

const OPTIONS: OptionTable = {
  ...MODEL_OPTIONS,
  ...DTYPE_OPTIONS,
  host: { type: 'string', value: 'HOST', description: 'address to listen on (default 127.0.0.1; 0.0.0.0 exposes it to the network)' },
  port: { type: 'string', short: 'p', value: 'PORT', description: 'port (default 8000; 0 picks a free one)' },
  'served-model-name': { type: 'string', value: 'NAME', description: 'model id reported by /v1/models (default: the --model value)' },
  'context-length': { type: 'string', value: 'N', description: 'tokens a request may span, prompt + completion (default 4096)' },
  'max-queue': {
    type: 'string',
    value: 'N',
    description: 'requests that may wait while others generate; more get 503 with Retry-After (default 8)',
  },
  parallel: {
    type: 'string',
    value: 'N',
    description: 'generations decoded together as one batch (default 8, or fewer when --max-state-bytes holds fewer full-context states)',
  },
  'prefill-chunk': {
    type: 'string',
    value: 'N',
    description: 'prompt tokens fed per step between decode steps, so a long prompt does not stall the others (default 256)',
  },
  'max-state-bytes': {
    type: 'string',
    value: 'BYTES',
    description:
      'model state (Mamba states + attention KV) the running generations may hold together, a full context each; more wait (default: a quarter of free memory; 2G, 512M accepted)',
  },
  'snapshot-cache-bytes': {
    type: 'string',
    value: 'BYTES',
    description: 'saved conversation states kept for resuming, least recently used dropped first (default 2G)',
  },
  'snapshot-dir': {
    type: 'string',
    value: 'DIR',
    description:
      'write saved conversation states pushed out of memory to DIR (and read them back when the conversation returns) instead of dropping them',
  },
  'log-format': { type: 'string', value: 'FORMAT', description: 'text (default) or json: one JSON object per request on stderr' },
  'max-tokens': { type: 'string', value: 'N', description: 'completion length when a request sets no max_tokens (default 512)' },
  'cache-entries': { type: 'string', value: 'N', description: 'saved conversation states for resuming (default 8; 0 = off)' },
  'api-key': {
    type: 'string',
    value: 'KEY',
    description: 'require "Authorization: Bearer KEY" on /v1 requests, else 401 (default GRANITEFLOW_API_KEY; /health stays open)',
  },
  cors: {
    type: 'string',
    multiple: true,
    value: 'ORIGIN',
    description: 'let web pages from ORIGIN (https://app.example:3000, or * for any) call the server; other pages get 403',
  },
  'allowed-hosts': {
    type: 'string',
    multiple: true,
    value: 'HOSTS',
    description: "host names (comma-separated) accepted in the Host header besides localhost and the server's own addresses",
  },
  'allow-any-host': { type: 'boolean', description: 'accept any Host header (turns off the DNS-rebinding check)' },
  ...COMMON_OPTIONS,
};

export const serveCommand: Command = {
  name: 'serve',
  summary: 'an OpenAI-compatible HTTP server (chat completions, completions, models, health)',
  help: () =>
    formatHelp(
      'graniteflow serve [options]',
      'Serves POST /v1/chat/completions (streaming, tools), POST /v1/completions, GET /v1/models, POST /tokenize, POST /detokenize, GET /health and GET /metrics (Prometheus). ' +
        'Up to --parallel generations run at once, each decode step one batched forward pass for all of them; prompts are prefilled in chunks between decode steps; others wait in a bounded queue. ' +
        'A request that extends an earlier conversation resumes from its saved state. ' +
        "Web pages cannot use it unless allowed: requests carrying another site's Origin get 403 (see --cors), a Host header that is not localhost or one of the server's addresses gets 403 (see --allowed-hosts), " +
        'and POST bodies must be sent as Content-Type: application/json (415 otherwise). ' +
        'Prompts longer than the context length get 400 before they are tokenized; request JSON may nest 64 levels deep. ' +
        'Logs one line per request on stderr.',
      OPTIONS,
      [
        'graniteflow serve --model ibm-granite/granite-4.0-h-micro --port 8000',
        'graniteflow serve --model ibm-granite/granite-4.0-h-tiny --dtype q8_0',
        'curl http://127.0.0.1:8000/v1/chat/completions -H "Content-Type: application/json" -d \'{"messages":[{"role":"user","content":"Hi"}]}\'',
        'GRANITEFLOW_API_KEY=secret graniteflow serve --host 0.0.0.0 --allowed-hosts models.internal --cors https://app.example',
      ],
    ),
  async run(argv: readonly string[], io: CliIO): Promise<number> {
    const { values, positionals } = parseCommandArgs('serve', argv, OPTIONS);
    if (flag(values, 'help')) {
      io.stdout.write(serveCommand.help());
      return 0;
    }
    if (positionals.length) throw new UsageError(`serve takes no positional arguments (got "${positionals[0]}"); use --model.`, 'serve');
    const host = stringOption(values, 'host') ?? '127.0.0.1';
    const port = numberOption('serve', values, 'port', { min: 0, max: 65535, integer: true }) ?? 8000;
    const contextLength = numberOption('serve', values, 'context-length', { min: 2, integer: true }) ?? 4096;
    const maxQueue = numberOption('serve', values, 'max-queue', { min: 0, integer: true }) ?? 8;
    const defaultMaxTokens = numberOption('serve', values, 'max-tokens', { min: 1, integer: true }) ?? 512;
    const cacheEntries = numberOption('serve', values, 'cache-entries', { min: 0, integer: true }) ?? 8;
    const parallel = numberOption('serve', values, 'parallel', { min: 1, max: 256, integer: true });
    const prefillChunk = numberOption('serve', values, 'prefill-chunk', { min: 1, integer: true });
    const maxStateBytes = byteSizeOption(values, 'max-state-bytes');
    const cacheBytes = byteSizeOption(values, 'snapshot-cache-bytes');
    const logFormat = stringOption(values, 'log-format') ?? 'text';
    if (logFormat !== 'text' && logFormat !== 'json')
      throw new UsageError(`--log-format must be text or json, got "${logFormat}".`, 'serve');
    const quiet = flag(values, 'quiet');
    const apiKey = apiKeyOption(values);
    const corsOrigins = listOption(values, 'cors').map(checkOrigin);
    const allowAnyHost = flag(values, 'allow-any-host');
    const allowedHosts = listOption(values, 'allowed-hosts').map(checkHostname);
    if (allowAnyHost && allowedHosts.length) throw new UsageError('Give either --allowed-hosts or --allow-any-host, not both.', 'serve');

    const { model, source } = await loadFromArgs(values, io, { command: 'serve', contextLength });
    let server;
    try {
      server = createServer(model, {
        modelId: stringOption(values, 'served-model-name') ?? source.name,
        contextLength,
        maxQueue,
        parallel,
        prefillChunk,
        maxStateBytes,
        cacheBytes,
        snapshotDir: stringOption(values, 'snapshot-dir'),
        logFormat,
        defaultMaxTokens,
        cacheEntries,
        apiKey,
        corsOrigins,
        allowedHosts: allowAnyHost ? 'any' : allowedHosts,
        log: quiet ? undefined : (line) => io.stderr.write(logFormat === 'json' ? `${line}\n` : `${new Date().toISOString()} ${line}\n`),
      });
    } catch (err) {
      model.dispose();
      if (err instanceof RangeError) throw new UsageError(err.message, 'serve');
      throw err;
    }
    let address;
    try {
      address = await server.listen(port, host);
    } catch (err) {
      model.dispose();
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'EADDRINUSE')
        throw new Error(`Port ${port} on ${host} is already in use; choose another with --port (0 picks a free one).`);
      if (code === 'EACCES') throw new Error(`No permission to listen on ${host}:${port}; use a port above 1023.`);
      throw err;
    }
    const shownHost = address.family === 'IPv6' ? `[${address.address}]` : address.address;
    // On stdout, so scripts can read the address (port 0 picks a free one).
    io.stdout.write(`Serving ${server.engine.id} at http://${shownHost}:${address.port}/v1 (OpenAI-compatible; Ctrl-C stops)\n`);
    if (!quiet && !isLoopback(host)) {
      const keyNote =
        apiKey === undefined ? ' Anyone who can reach it can use the model; require a key with --api-key (or GRANITEFLOW_API_KEY).' : '';
      const hostNote =
        allowAnyHost || allowedHosts.length
          ? ''
          : " Clients must name it by its IP address or localhost; accept other names (a DNS name, a proxy's Host) with --allowed-hosts.";
      if (keyNote || hostNote)
        io.stderr.write(`Note: listening on ${host}, the server can be reached from other machines.${keyNote}${hostNote}\n`);
    }
    await new Promise<void>((resolve) => {
      const stop = () => {
        process.off('SIGINT', stop);
        process.off('SIGTERM', stop);
        if (!quiet) io.stderr.write('Shutting down…\n');
        resolve();
      };
      process.on('SIGINT', stop);
      process.on('SIGTERM', stop);
    });
    await server.close();
    model.dispose();
    return 0;
  },
};

/** The values of a repeatable option, each of which may also be a comma-separated list. */
function listOption(values: ParsedArgs['values'], name: string): string[] {
  return stringList(values, name)
    .flatMap((v) => v.split(','))
    .map((v) => v.trim())
    .filter((v) => v !== '');
}

/** --api-key, else GRANITEFLOW_API_KEY (less visible to other users than an argument), else none. */
function apiKeyOption(values: ParsedArgs['values']): string | undefined {
  const fromFlag = stringOption(values, 'api-key');
  const key = fromFlag ?? process.env.GRANITEFLOW_API_KEY;
  if (key === undefined) return undefined;
  const source = fromFlag !== undefined ? '--api-key' : 'GRANITEFLOW_API_KEY';
  // Printable ASCII without spaces: it travels in an HTTP header, compared byte for byte.
  if (!/^[\x21-\x7e]+$/.test(key)) {
    throw new UsageError(
      `${source} must be a non-empty key of printable ASCII characters without spaces (it is sent in the Authorization header).`,
      'serve',
    );
  }
  return key;
}

function checkOrigin(origin: string): string {
  if (origin === '*' || /^[a-z][a-z0-9+.-]*:\/\/[^/?#\s]+$/i.test(origin.replace(/\/$/, ''))) return origin.replace(/\/$/, '');
  throw new UsageError(
    `--cors takes origins such as https://app.example or http://localhost:3000 (scheme, host and port, no path), or *; got "${origin}".`,
    'serve',
  );
}

function checkHostname(host: string): string {
  if (/^(\[[0-9a-f:.]+\]|[a-z0-9_.-]+)(:\d+)?$/i.test(host)) return host;
  throw new UsageError(
    `--allowed-hosts takes host names such as models.internal or 192.168.1.5 (no scheme or path; --allow-any-host accepts any); got "${host}".`,
    'serve',
  );
}

function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
}

const BYTE_SUFFIXES: Record<string, number> = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 };

/** A byte size option: a number of bytes, or with a K, M, G or T suffix (powers of 1024; `2G`, `512MiB`). */
function byteSizeOption(values: ParsedArgs['values'], name: string): number | undefined {
  const raw = stringOption(values, name);
  if (raw === undefined) return undefined;
  const m = /^(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?$/i.exec(raw.trim());
  if (!m) throw new UsageError(`--${name} must be a size such as 2G, 512M or 1073741824, got "${raw}".`, 'serve');
  const bytes = Math.floor(Number(m[1]) * BYTE_SUFFIXES[m[2].toLowerCase()]);
  if (bytes < 1) throw new UsageError(`--${name} must be at least 1 byte, got "${raw}".`, 'serve');
  return bytes;
}
