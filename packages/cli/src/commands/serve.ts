/** `graniteflow serve`: the OpenAI-compatible HTTP server. */
import { COMMON_OPTIONS, flag, formatHelp, MODEL_OPTIONS, numberOption, parseCommandArgs, stringOption, type OptionTable } from '../args';
import { UsageError } from '../errors';
import type { CliIO } from '../io';
import { createServer } from '../server/server';
import { loadFromArgs, type Command } from './common';

const OPTIONS: OptionTable = {
  ...MODEL_OPTIONS,
  host: { type: 'string', value: 'HOST', description: 'address to listen on (default 127.0.0.1; 0.0.0.0 exposes it to the network)' },
  port: { type: 'string', short: 'p', value: 'PORT', description: 'port (default 8000; 0 picks a free one)' },
  'served-model-name': { type: 'string', value: 'NAME', description: 'model id reported by /v1/models (default: the --model value)' },
  'context-length': { type: 'string', value: 'N', description: 'tokens a request may span, prompt + completion (default 4096)' },
  'max-queue': { type: 'string', value: 'N', description: 'requests that may wait while one generates; more get 503 (default 8)' },
  'max-tokens': { type: 'string', value: 'N', description: 'completion length when a request sets no max_tokens (default 512)' },
  'cache-entries': { type: 'string', value: 'N', description: 'saved conversation states for resuming (default 8; 0 = off)' },
  ...COMMON_OPTIONS,
};

export const serveCommand: Command = {
  name: 'serve',
  summary: 'an OpenAI-compatible HTTP server (chat completions, completions, models, health)',
  help: () =>
    formatHelp(
      'graniteflow serve [options]',
      'Serves POST /v1/chat/completions (streaming, tools), POST /v1/completions, GET /v1/models and GET /health. ' +
        'One generation runs at a time; others wait in a bounded queue. A request that extends an earlier conversation resumes from its saved state. ' +
        'Logs one line per request on stderr.',
      OPTIONS,
      [
        'graniteflow serve --model ibm-granite/granite-4.0-h-micro --port 8000',
        'curl http://127.0.0.1:8000/v1/chat/completions -H "Content-Type: application/json" -d \'{"messages":[{"role":"user","content":"Hi"}]}\'',
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
    const quiet = flag(values, 'quiet');

    const { model, source } = await loadFromArgs(values, io, { contextLength });
    const server = createServer(model, {
      modelId: stringOption(values, 'served-model-name') ?? source.name,
      contextLength,
      maxQueue,
      defaultMaxTokens,
      cacheEntries,
      log: quiet ? undefined : (line) => io.stderr.write(`${new Date().toISOString()} ${line}\n`),
    });
    let address;
    try {
      address = await server.listen(port, host);
    } catch (err) {
      model.dispose();
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'EADDRINUSE') throw new Error(`Port ${port} on ${host} is already in use; choose another with --port (0 picks a free one).`);
      if (code === 'EACCES') throw new Error(`No permission to listen on ${host}:${port}; use a port above 1023.`);
      throw err;
    }
    const shownHost = address.family === 'IPv6' ? `[${address.address}]` : address.address;
    // On stdout, so scripts can read the address (port 0 picks a free one).
    io.stdout.write(`Serving ${server.engine.id} at http://${shownHost}:${address.port}/v1 (OpenAI-compatible; Ctrl-C stops)\n`);
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
