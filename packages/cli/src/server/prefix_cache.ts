/**
 * Saved model states keyed by what they hold, so that a request extending an earlier conversation
 * feeds only its new tokens. A least-recently-used list bounded in entries and bytes.
 *
 * A state can be resumed when what it holds is a prefix of the new prompt, compared two ways:
 * by token ids, and by text (a model's reply rarely re-tokenizes to the ids it was generated as,
 * but its text comes back verbatim in the next request's conversation).
 */
import type { EngineCache } from './engine';

/** One saved state. */
export interface PrefixEntry {
  /** Token ids the state holds. */
  ids: readonly number[];
  /** The text those ids decode to (special tokens included). */
  text: string;
  cache: EngineCache;
}

/** A match for a new prompt: resume from `entry` and feed the rest. */
export type PrefixMatch =
  | { entry: PrefixEntry; rest: { ids: number[] } }
  | { entry: PrefixEntry; rest: { text: string } };

export interface PrefixCacheOptions {
  /** Entries kept at most (default 8; 0 disables the cache). */
  maxEntries?: number;
  /** Bytes of state kept at most (default 2 GiB). */
  maxBytes?: number;
}

function isProperPrefix(prefix: readonly number[], ids: readonly number[]): boolean {
  if (prefix.length >= ids.length) return false;
  for (let i = 0; i < prefix.length; i++) if (prefix[i] !== ids[i]) return false;
  return true;
}

/** The LRU of saved states. Entries own their caches and dispose them when evicted. */
export class PrefixCache {
  // Least recently used first.
  private entries: PrefixEntry[] = [];
  readonly maxEntries: number;
  readonly maxBytes: number;

  constructor(options: PrefixCacheOptions = {}) {
    this.maxEntries = options.maxEntries ?? 8;
    this.maxBytes = options.maxBytes ?? 2 * 1024 ** 3;
  }

  get size(): number {
    return this.entries.length;
  }

  get byteSize(): number {
    return this.entries.reduce((n, e) => n + e.cache.byteSize, 0);
  }

  /** The entry that covers most of the prompt (`ids`, rendered from `text`), or null. */
  find(ids: readonly number[], text: string): PrefixMatch | null {
    let best: PrefixMatch | null = null;
    for (const entry of this.entries) {
      if (best && entry.ids.length <= best.entry.ids.length) continue;
      if (isProperPrefix(entry.ids, ids)) best = { entry, rest: { ids: ids.slice(entry.ids.length) } };
      else if (text.length > entry.text.length && text.startsWith(entry.text)) best = { entry, rest: { text: text.slice(entry.text.length) } };
    }
    if (best) this.touch(best.entry);
    return best;
  }

  private touch(entry: PrefixEntry): void {
    const i = this.entries.indexOf(entry);
    if (i >= 0) {
      this.entries.splice(i, 1);
      this.entries.push(entry);
    }
  }

  /** Saves a state (taking ownership of `entry.cache`), evicting old ones over the bounds. */
  add(entry: PrefixEntry): void {
    if (this.maxEntries === 0 || entry.cache.byteSize > this.maxBytes) {
      entry.cache.dispose();
      return;
    }
    // The same token sequence saved again replaces the older copy.
    for (const old of this.entries.filter((e) => e.ids.length === entry.ids.length && e.ids.every((id, i) => id === entry.ids[i]))) {
      this.remove(old);
    }
    this.entries.push(entry);
    let bytes = this.byteSize;
    while (this.entries.length > this.maxEntries || bytes > this.maxBytes) {
      const evicted = this.entries.shift()!;
      bytes -= evicted.cache.byteSize;
      evicted.cache.dispose();
    }
  }

  private remove(entry: PrefixEntry): void {
    const i = this.entries.indexOf(entry);
    if (i >= 0) this.entries.splice(i, 1);
    entry.cache.dispose();
  }

  /** Disposes every saved state. */
  clear(): void {
    for (const e of this.entries) e.cache.dispose();
    this.entries = [];
  }
}
