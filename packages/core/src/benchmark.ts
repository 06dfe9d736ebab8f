/** One timed case: median and spread of repeated runs. */
export interface Timing {
  medianMs: number;
  minMs: number;
  runs: number;
}

/**
 * Times `fn` (sync or async): `warmup` untimed runs, then runs until `minRuns` and `minMs` are both
 * reached (at most `maxRuns`). Reports the median, which resists GC pauses.
 */
export async function measure(
  fn: () => unknown,
  options: { warmup?: number; minRuns?: number; maxRuns?: number; minMs?: number } = {},
): Promise<Timing> {
  const { warmup = 1, minRuns = 3, maxRuns = 50, minMs = 300 } = options;
  for (let i = 0; i < warmup; i++) await fn();
  const times: number[] = [];
  const start = performance.now();
  while (times.length < maxRuns && (times.length < minRuns || performance.now() - start < minMs)) {
    const t0 = performance.now();
    await fn();
    times.push(performance.now() - t0);
  }
  times.sort((a, b) => a - b);
  return { medianMs: times[Math.floor(times.length / 2)], minMs: times[0], runs: times.length };
}

/** Formats rows as an aligned text table (first row = header). */
export function formatTable(rows: (string | number)[][]): string {
  const cells = rows.map((r) => r.map((c) => (typeof c === 'number' ? formatNumber(c) : c)));
  const widths = cells[0].map((_, j) => Math.max(...cells.map((r) => (r[j] ?? '').length)));
  const line = (r: string[]) => r.map((c, j) => c.padStart(widths[j])).join('  ');
  return [line(cells[0]), widths.map((w) => '-'.repeat(w)).join('  '), ...cells.slice(1).map(line)].join('\n');
}

function formatNumber(x: number): string {
  if (!Number.isFinite(x)) return String(x);
  if (Number.isInteger(x)) return String(x);
  const abs = Math.abs(x);
  return abs >= 100 ? x.toFixed(0) : abs >= 10 ? x.toFixed(1) : abs >= 1 ? x.toFixed(2) : x.toPrecision(3);
}
