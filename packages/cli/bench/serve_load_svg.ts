/**
 * The load test's plot as a standalone SVG, written by hand as the training loss curve is
 * (src/training/loss_curve_svg.ts: round ticks, a framed plot area, a legend): two panels side by
 * side, aggregate tokens per second against concurrent clients, and bytes of state per session
 * against the tokens a session holds.
 */
import { escapeXml, ticks } from '../src/svg_text';

/** One line (and/or its points) of a panel. */
export interface Series {
  label: string;
  color: string;
  points: readonly { x: number; y: number }[];
  /** Draw the points joined (default true). */
  line?: boolean;
  dashed?: boolean;
  /** Mark each point (default 'circle' when there is no line, else none). */
  marker?: 'circle' | 'square' | 'none';
}

/** A panel: axes, ticks (or `xTicks` given), its series and a legend. */
export interface Panel {
  title: string;
  xLabel: string;
  yLabel: string;
  series: readonly Series[];
  xTicks?: readonly number[];
}

const tickLabel = (v: number) => (Math.abs(v) >= 1000 ? v.toLocaleString('en-US') : String(v));

/** The SVG elements of one panel drawn in the box [left, top, width, height]. */
function panelParts(panel: Panel, box: { left: number; top: number; width: number; height: number }): string[] {
  const margin = { left: 64, right: 16, top: 36, bottom: 48 };
  const finite = panel.series.flatMap((s) => s.points).filter((p) => Number.isFinite(p.x) && Number.isFinite(p.y));
  const xs = finite.map((p) => p.x);
  const ys = finite.map((p) => p.y);
  const [x0, x1] = [0, Math.max(1, ...xs, ...(panel.xTicks ?? []))];
  // Headroom above the data for the legend, top left inside the plot.
  const [y0, y1] = [0, Math.max(1, ...ys) * (1.08 + 0.07 * panel.series.length)];
  const plotW = box.width - margin.left - margin.right;
  const plotH = box.height - margin.top - margin.bottom;
  const left = box.left + margin.left;
  const top = box.top + margin.top;
  const x = (v: number) => left + ((v - x0) / (x1 - x0)) * plotW;
  const y = (v: number) => top + (1 - (v - y0) / (y1 - y0)) * plotH;
  const parts: string[] = [];
  parts.push(`<text x="${left + plotW / 2}" y="${box.top + 22}" text-anchor="middle" font-size="14">${escapeXml(panel.title)}</text>`);
  for (const v of ticks(y0, y1, 6)) {
    parts.push(`<line x1="${left}" x2="${left + plotW}" y1="${y(v).toFixed(1)}" y2="${y(v).toFixed(1)}" stroke="#e4e4e4"/>`);
    parts.push(`<text x="${left - 6}" y="${(y(v) + 4).toFixed(1)}" text-anchor="end">${tickLabel(v)}</text>`);
  }
  for (const v of panel.xTicks ?? ticks(x0, x1, 8)) {
    parts.push(`<line x1="${x(v).toFixed(1)}" x2="${x(v).toFixed(1)}" y1="${top + plotH}" y2="${top + plotH + 4}" stroke="black"/>`);
    parts.push(`<text x="${x(v).toFixed(1)}" y="${top + plotH + 18}" text-anchor="middle">${tickLabel(v)}</text>`);
  }
  parts.push(`<rect x="${left}" y="${top}" width="${plotW}" height="${plotH}" fill="none" stroke="black"/>`);
  parts.push(`<text x="${left + plotW / 2}" y="${box.top + box.height - 10}" text-anchor="middle">${escapeXml(panel.xLabel)}</text>`);
  parts.push(
    `<text transform="translate(${box.left + 16} ${top + plotH / 2}) rotate(-90)" text-anchor="middle">${escapeXml(panel.yLabel)}</text>`,
  );
  panel.series.forEach((s, i) => {
    const pts = s.points.filter((p) => Number.isFinite(p.x) && Number.isFinite(p.y));
    const drawLine = s.line ?? true;
    if (drawLine && pts.length > 1) {
      const dash = s.dashed ? ' stroke-dasharray="6 4"' : '';
      parts.push(
        `<polyline fill="none" stroke="${s.color}" stroke-width="2"${dash} points="${pts.map((p) => `${x(p.x).toFixed(1)},${y(p.y).toFixed(1)}`).join(' ')}"/>`,
      );
    }
    const marker = s.marker ?? (drawLine ? 'none' : 'circle');
    for (const p of pts) {
      if (marker === 'circle') parts.push(`<circle cx="${x(p.x).toFixed(1)}" cy="${y(p.y).toFixed(1)}" r="4" fill="${s.color}"/>`);
      else if (marker === 'square')
        parts.push(
          `<rect x="${(x(p.x) - 4).toFixed(1)}" y="${(y(p.y) - 4).toFixed(1)}" width="8" height="8" fill="none" stroke="${s.color}" stroke-width="2"/>`,
        );
    }
    // Legend, top left inside the plot.
    const ly = top + 14 + i * 17;
    const lx = left + 10;
    if (drawLine)
      parts.push(
        `<line x1="${lx}" x2="${lx + 22}" y1="${ly}" y2="${ly}" stroke="${s.color}" stroke-width="2"${s.dashed ? ' stroke-dasharray="6 4"' : ''}/>`,
      );
    if (marker === 'circle') parts.push(`<circle cx="${lx + 11}" cy="${ly}" r="4" fill="${s.color}"/>`);
    else if (marker === 'square')
      parts.push(`<rect x="${lx + 7}" y="${ly - 4}" width="8" height="8" fill="none" stroke="${s.color}" stroke-width="2"/>`);
    parts.push(`<text x="${lx + 28}" y="${ly + 4}">${escapeXml(s.label)}</text>`);
  });
  return parts;
}

/** Panels side by side, with a caption line under them. */
export function panelsSvg(panels: readonly Panel[], options: { caption?: string; panelWidth?: number; height?: number } = {}): string {
  const panelWidth = options.panelWidth ?? 520;
  const height = options.height ?? 420;
  const captionHeight = options.caption ? 24 : 0;
  const width = panelWidth * panels.length;
  const total = height + captionHeight;
  const parts: string[] = [];
  parts.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${total}" viewBox="0 0 ${width} ${total}" font-family="sans-serif" font-size="12">`,
  );
  parts.push(`<rect width="${width}" height="${total}" fill="white"/>`);
  panels.forEach((panel, i) => parts.push(...panelParts(panel, { left: i * panelWidth, top: 0, width: panelWidth, height })));
  if (options.caption)
    parts.push(
      `<text x="${width / 2}" y="${height + 14}" text-anchor="middle" font-size="11" fill="#555">${escapeXml(options.caption)}</text>`,
    );
  parts.push('</svg>');
  return `${parts.join('\n')}\n`;
}
