/**
 * Stop strings over streamed text. A stop string can arrive split over several deltas (and
 * tokens), so text that could be the start of one is withheld until the next delta settles it.
 */

/** Result of {@link StopStringDetector.push}. */
export interface StopStringStep {
  /** Text that is safe to show now. When `stop` is set, this is everything before the stop string. */
  text: string;
  /** The stop string that was found, or null. */
  stop: string | null;
}

/** An invalid stop-string list. */
export class StopStringError extends TypeError {
  constructor(message: string) {
    super(message);
    this.name = 'StopStringError';
  }
}

/**
 * First occurrence of any stop string in `text` (earliest start; the longest on equal starts),
 * or undefined.
 */
export function findStopString(text: string, stops: readonly string[]): { index: number; stop: string } | undefined {
  let best: { index: number; stop: string } | undefined;
  for (const stop of stops) {
    const index = text.indexOf(stop);
    if (index < 0) continue;
    if (!best || index < best.index || (index === best.index && stop.length > best.stop.length)) best = { index, stop };
  }
  return best;
}

// Length of the longest suffix of `text` that is a proper prefix of some stop string.
function heldBackLength(text: string, stops: readonly string[]): number {
  let keep = 0;
  for (const stop of stops) {
    for (let n = Math.min(stop.length - 1, text.length); n > keep; n--) {
      if (text.endsWith(stop.slice(0, n))) {
        keep = n;
        break;
      }
    }
  }
  return keep;
}

/**
 * Watches streamed text for stop strings.
 *
 * @example
 * const stops = new StopStringDetector(['\nUser:']);
 * for await (const delta of deltas) {
 *   const { text, stop } = stops.push(delta);
 *   process.stdout.write(text);
 *   if (stop) break;
 * }
 * process.stdout.write(stops.flush());
 */
export class StopStringDetector {
  private readonly stops: readonly string[];
  private pending = '';
  private found: string | null = null;

  constructor(stops: readonly string[]) {
    if (!Array.isArray(stops)) throw new StopStringError(`stop strings must be an array of strings, got ${typeof stops}`);
    stops.forEach((s, i) => {
      if (typeof s !== 'string' || s === '')
        throw new StopStringError(`stop strings[${i}] must be a non-empty string, got ${JSON.stringify(s)}`);
    });
    this.stops = [...stops];
  }

  /** The stop string found so far, or null. */
  get stopped(): string | null {
    return this.found;
  }

  /** Adds a text delta. After a stop has been found, further deltas are ignored. */
  push(delta: string): StopStringStep {
    if (this.found !== null) return { text: '', stop: this.found };
    const text = this.pending + delta;
    const hit = findStopString(text, this.stops);
    if (hit) {
      this.found = hit.stop;
      this.pending = '';
      return { text: text.slice(0, hit.index), stop: hit.stop };
    }
    const keep = heldBackLength(text, this.stops);
    this.pending = text.slice(text.length - keep);
    return { text: text.slice(0, text.length - keep), stop: null };
  }

  /** At the end of the stream: the withheld text (it turned out not to be a stop string). */
  flush(): string {
    const rest = this.pending;
    this.pending = '';
    return rest;
  }
}
