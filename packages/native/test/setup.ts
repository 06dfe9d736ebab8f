import { LEVELS, loadNative, nativeUnavailableReason, type Level, type Native } from '../src';

const loaded = loadNative();
if (!loaded)
  throw new Error(`@graniteflow/native did not load (run \`npm run build -w @graniteflow/native\` first): ${nativeUnavailableReason()}`);
export const native: Native = loaded;

/** Levels this CPU can run, lowest first; the others are logged as skipped once. */
export const availableLevels: Level[] = LEVELS.filter((l) => LEVELS.indexOf(l) <= LEVELS.indexOf(native.cpuLevel()));
const missing = LEVELS.filter((l) => !availableLevels.includes(l));
if (missing.length)
  console.log(`@graniteflow/native tests: skipping level(s) ${missing.join(', ')}: this CPU's best is ${native.cpuLevel()}`);

/** Runs fn with every kernel capped at `level`, restoring the cap and thread count after. */
export function atLevel<T>(level: Level, fn: () => T, threads?: number): T {
  const previousLevel = native.level(),
    previousThreads = native.threads();
  native.setLevel(level);
  if (threads !== undefined) native.setThreads(threads);
  try {
    return fn();
  } finally {
    native.setLevel(previousLevel);
    native.setThreads(previousThreads);
  }
}

/** Calls counted for a kernel at a level so far. */
export function calls(kernel: Parameters<Native['kernelLevel']>[0], level: Level): number {
  return native.counters()[kernel][level];
}
