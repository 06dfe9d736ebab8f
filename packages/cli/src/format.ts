/** Small formatting helpers for command output (byte sizes: `formatBytes` from @graniteflow/granite). */

/** A parameter count in words people use: `1.2 M`, `6.9 B`; never `Infinity` or `NaN`. */
export function formatCount(n: number): string {
  if (Number.isNaN(n)) return 'an unknown number';
  // Past a thousand trillion the digits mean nothing (no model comes near): say so instead.
  if (n >= 1e15) return 'over 1000 T';
  if (n >= 1e12) return `${(n / 1e12).toFixed(2)} T`;
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)} B`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(2)} M`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)} K`;
  return String(n);
}

/** Tokens per second, or "-" when too little time passed to say. */
export function rate(tokens: number, ms: number): string {
  return ms > 0 && tokens > 0 ? `${((tokens * 1000) / ms).toFixed(1)} tok/s` : '-';
}

/** `part` as a whole percentage of `whole`: `3%`; `<1%` for a small part that is not none. */
export function percent(part: number, whole: number): string {
  if (!(whole > 0)) return '-';
  const p = (part * 100) / whole;
  return p > 0 && p < 1 ? '<1%' : `${Math.round(p)}%`;
}

/** A time span the way the progress lines print it: `42s`, `1m05s`, `2h03m`; `?` when not finite. */
export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms) || ms < 0) return '?';
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}
