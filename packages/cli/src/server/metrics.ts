/**
 * The server's figures in the Prometheus text exposition format (version 0.0.4): counters that
 * only grow, gauges read when scraped, and a rate of decoded tokens over a recent window.
 */

/** One metric: its name, help, type and samples (labels → value). */
export interface MetricFamily {
  name: string;
  help: string;
  type: 'counter' | 'gauge';
  samples: { labels?: Record<string, string>; value: number }[];
}

function escapeLabel(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
}

function formatValue(value: number): string {
  if (Number.isNaN(value)) return 'NaN';
  if (value === Infinity) return '+Inf';
  if (value === -Infinity) return '-Inf';
  return String(value);
}

/** The families as Prometheus text. */
export function renderPrometheus(families: readonly MetricFamily[]): string {
  const lines: string[] = [];
  for (const f of families) {
    lines.push(`# HELP ${f.name} ${f.help.replace(/\\/g, '\\\\').replace(/\n/g, '\\n')}`, `# TYPE ${f.name} ${f.type}`);
    for (const s of f.samples) {
      const labels =
        s.labels && Object.keys(s.labels).length
          ? `{${Object.entries(s.labels)
              .map(([k, v]) => `${k}="${escapeLabel(v)}"`)
              .join(',')}}`
          : '';
      lines.push(`${f.name}${labels} ${formatValue(s.value)}`);
    }
  }
  return `${lines.join('\n')}\n`;
}

/** Counters the server keeps per request, and rates over the last {@link RATE_WINDOW_MS}. */
export class ServerMetrics {
  /** Requests answered, by route and HTTP status. */
  readonly responses = new Map<string, number>();
  snapshotHits = 0;
  snapshotMisses = 0;
  /** Seconds from each generation's start to its first token, summed, and their count. */
  firstTokenSeconds = 0;
  firstTokens = 0;
  private readonly recent: { at: number; prefill: number; decode: number }[] = [];

  constructor(private readonly now: () => number = () => performance.now()) {}

  countResponse(route: string, status: number): void {
    const key = `${route} ${status}`;
    this.responses.set(key, (this.responses.get(key) ?? 0) + 1);
  }

  /** Tokens a generation fed (`prefill`) or produced (`decode`) just now. */
  countTokens(prefill: number, decode: number): void {
    this.recent.push({ at: this.now(), prefill, decode });
    this.trim();
  }

  private trim(): void {
    const from = this.now() - RATE_WINDOW_MS;
    while (this.recent.length && this.recent[0].at < from) this.recent.shift();
  }

  /** Prefill and decode tokens per second over the last window (every sequence together). */
  rates(): { prefill: number; decode: number } {
    this.trim();
    const seconds = RATE_WINDOW_MS / 1000;
    return {
      prefill: this.recent.reduce((n, r) => n + r.prefill, 0) / seconds,
      decode: this.recent.reduce((n, r) => n + r.decode, 0) / seconds,
    };
  }
}

/** Tokens per second are averaged over this long. */
export const RATE_WINDOW_MS = 10_000;
