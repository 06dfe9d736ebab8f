import { escapeXml, ticks } from '../svg_text';

/** One point of a loss curve. */
export interface LossPoint {
  step: number;
  loss: number;
}

/** Options of {@link lossCurveSvg}. */
export interface LossCurveOptions {
  title?: string;
  /** Label of the y axis (default "loss (nats/token)"). */
  yLabel?: string;
  width?: number;
  height?: number;
}

/**
 * The training curve as a standalone SVG a browser or image viewer opens: the training loss at
 * every step (faint) and its running average, the held-out loss as points joined by a line, axes
 * with round ticks, and a legend.
 */
export function lossCurveSvg(train: readonly LossPoint[], heldOut: readonly LossPoint[], options: LossCurveOptions = {}): string {
  const width = options.width ?? 760;
  const height = options.height ?? 420;
  const margin = { left: 64, right: 20, top: 40, bottom: 48 };
  const all = [...train, ...heldOut].filter((p) => Number.isFinite(p.loss));
  const maxStep = Math.max(1, ...all.map((p) => p.step));
  const losses = all.map((p) => p.loss);
  const lo = losses.length ? Math.min(...losses) : 0;
  const hi = losses.length ? Math.max(...losses) : 1;
  const pad = (hi - lo) * 0.05 || 0.5;
  const [y0, y1] = [Math.max(0, lo - pad), hi + pad];
  const plotW = width - margin.left - margin.right;
  const plotH = height - margin.top - margin.bottom;
  const x = (step: number) => margin.left + (step / maxStep) * plotW;
  const y = (loss: number) => margin.top + (1 - (loss - y0) / (y1 - y0)) * plotH;
  const line = (pts: readonly LossPoint[]) =>
    pts
      .filter((p) => Number.isFinite(p.loss))
      .map((p) => `${x(p.step).toFixed(1)},${y(p.loss).toFixed(1)}`)
      .join(' ');
  // Running average over the last ~2% of steps (at least 1): the trend under step-to-step noise.
  const window = Math.max(1, Math.round(train.length / 50));
  const smooth: LossPoint[] = train.map((p, i) => {
    const from = Math.max(0, i - window + 1);
    const slice = train.slice(from, i + 1);
    return { step: p.step, loss: slice.reduce((a, q) => a + q.loss, 0) / slice.length };
  });
  const parts: string[] = [];
  parts.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`,
  );
  parts.push(`<rect width="${width}" height="${height}" fill="white"/>`);
  if (options.title) parts.push(`<text x="${width / 2}" y="22" text-anchor="middle" font-size="15">${escapeXml(options.title)}</text>`);
  for (const v of ticks(y0, y1, 6)) {
    parts.push(`<line x1="${margin.left}" x2="${width - margin.right}" y1="${y(v).toFixed(1)}" y2="${y(v).toFixed(1)}" stroke="#e4e4e4"/>`);
    parts.push(`<text x="${margin.left - 6}" y="${(y(v) + 4).toFixed(1)}" text-anchor="end">${v}</text>`);
  }
  for (const s of ticks(0, maxStep, 8)) {
    parts.push(
      `<line x1="${x(s).toFixed(1)}" x2="${x(s).toFixed(1)}" y1="${margin.top + plotH}" y2="${margin.top + plotH + 4}" stroke="black"/>`,
    );
    parts.push(`<text x="${x(s).toFixed(1)}" y="${margin.top + plotH + 18}" text-anchor="middle">${s}</text>`);
  }
  parts.push(`<rect x="${margin.left}" y="${margin.top}" width="${plotW}" height="${plotH}" fill="none" stroke="black"/>`);
  parts.push(`<text x="${margin.left + plotW / 2}" y="${height - 10}" text-anchor="middle">step</text>`);
  parts.push(
    `<text transform="translate(16 ${margin.top + plotH / 2}) rotate(-90)" text-anchor="middle">${escapeXml(options.yLabel ?? 'loss (nats/token)')}</text>`,
  );
  if (train.length) {
    parts.push(`<polyline class="train" fill="none" stroke="#1f77b4" stroke-opacity="0.25" points="${line(train)}"/>`);
    parts.push(`<polyline class="train-average" fill="none" stroke="#1f77b4" stroke-width="2" points="${line(smooth)}"/>`);
  }
  if (heldOut.length) {
    parts.push(`<polyline class="held-out" fill="none" stroke="#d62728" stroke-width="2" points="${line(heldOut)}"/>`);
    for (const p of heldOut) parts.push(`<circle cx="${x(p.step).toFixed(1)}" cy="${y(p.loss).toFixed(1)}" r="3" fill="#d62728"/>`);
  }
  const legendX = width - margin.right - 170;
  parts.push(
    `<line x1="${legendX}" x2="${legendX + 24}" y1="${margin.top + 16}" y2="${margin.top + 16}" stroke="#1f77b4" stroke-width="2"/>`,
  );
  parts.push(`<text x="${legendX + 30}" y="${margin.top + 20}">training (running mean)</text>`);
  parts.push(
    `<line x1="${legendX}" x2="${legendX + 24}" y1="${margin.top + 34}" y2="${margin.top + 34}" stroke="#d62728" stroke-width="2"/>`,
  );
  parts.push(`<text x="${legendX + 30}" y="${margin.top + 38}">held-out</text>`);
  parts.push('</svg>');
  return `${parts.join('\n')}\n`;
}
