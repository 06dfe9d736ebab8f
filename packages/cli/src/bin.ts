#!/usr/bin/env node
/** Entry point of the `graniteflow` binary. */
import { main } from './main';

// A reader that goes away (`graniteflow generate … | head -c 20`) is not an error of ours.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(0);
  throw err;
});

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    // main() catches everything; this is a last resort that still avoids a raw stack trace.
    process.stderr.write(`graniteflow: error: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  },
);
