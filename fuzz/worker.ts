/**
 * The child process of run.ts: runs one target's inputs until its time is up, telling the parent
 * which input it starts (so a hang or an out-of-memory death can be pinned on it) and stopping at
 * the first crash. Usage (run.ts does this): worker.ts TARGET SEED SECONDS
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Random } from './random';
import { TARGETS } from './targets';

export type WorkerMessage =
  | { kind: 'ready' }
  | { kind: 'start'; index: number }
  | { kind: 'crash'; index: number; error: string }
  | { kind: 'done'; inputs: number; accepted: number; rejected: Record<string, number>; distinctMessages: number };

function send(message: WorkerMessage): void {
  process.send!(message);
}

/** A rejection message with its numbers and paths blanked, to count the distinct ways inputs fail. */
function messageShape(message: string, file: string): string {
  return message
    .split(file)
    .join('FILE')
    .replace(/-?\d+(\.\d+)?(e[+-]?\d+)?/gi, 'N')
    .slice(0, 120);
}

function main(): void {
  const [targetName, seedText, secondsText] = process.argv.slice(2);
  const target = TARGETS[targetName];
  const seed = Number(seedText);
  const deadline = Date.now() + Number(secondsText) * 1000;
  const scratch = fs.mkdtempSync(path.join(os.tmpdir(), `graniteflow-fuzz-${targetName}-`));
  const file = path.join(scratch, target.fileName);
  const rejected: Record<string, number> = {};
  const shapes = new Set<string>();
  let accepted = 0;
  let index = 0;
  try {
    target.generate(Random.forInput(seed, targetName, -1)); // loads the seeds before the clock matters
    send({ kind: 'ready' });
    for (; Date.now() < deadline; index++) {
      send({ kind: 'start', index });
      fs.writeFileSync(file, target.generate(Random.forInput(seed, targetName, index)));
      let outcome;
      try {
        outcome = target.check(file);
      } catch (err) {
        send({ kind: 'crash', index, error: err instanceof Error ? (err.stack ?? String(err)) : String(err) });
        return;
      }
      if (outcome.kind === 'accepted') accepted++;
      else {
        rejected[outcome.errorClass] = (rejected[outcome.errorClass] ?? 0) + 1;
        shapes.add(messageShape(outcome.message, file));
      }
    }
    send({ kind: 'done', inputs: index, accepted, rejected, distinctMessages: shapes.size });
  } finally {
    fs.rmSync(scratch, { recursive: true, force: true });
  }
}

main();
process.disconnect?.();
