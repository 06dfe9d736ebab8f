/**
 * Saved model states keyed by what they hold, so that a request extending an earlier conversation
 * feeds only its new tokens. A least-recently-used list bounded in entries and bytes.
 *
 * With a spill directory, a state pushed out of memory is written there instead of dropped, and read
 * back when a request resumes it: a conversation returning after many others passed through still
 * prefills only its new tokens.
 *
 * A state can be resumed when what it holds is a prefix of the new prompt, compared two ways:
 * by token ids, and by text (a model's reply rarely re-tokenizes to the ids it was generated as,
 * but its text comes back verbatim in the next request's conversation).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
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
export type PrefixMatch = { entry: PrefixEntry; rest: { ids: number[] } } | { entry: PrefixEntry; rest: { text: string } };

/** Where states pushed out of memory go, and how they are written and read. */
export interface SnapshotSpill {
  /** A directory of the spilled states' files (made when missing; only files the cache wrote are removed). */
  dir: string;
  /** Bytes of files kept at most, least recently used removed first (default 16 GiB). */
  maxBytes?: number;
  save(cache: EngineCache, file: string): void;
  load(file: string): EngineCache;
}

export interface PrefixCacheOptions {
  /** Entries kept at most (default 8; 0 disables the cache). */
  maxEntries?: number;
  /** Bytes of state kept at most (default 2 GiB). */
  maxBytes?: number;
  /** Spill states pushed out of memory to disk (default: drop them). */
  spill?: SnapshotSpill;
}

/** A state spilled to a file. */
interface SpilledEntry {
  ids: readonly number[];
  text: string;
  file: string;
  bytes: number;
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
  // Least recently used first, too.
  private spilled: SpilledEntry[] = [];
  readonly maxEntries: number;
  readonly maxBytes: number;
  private readonly spill: SnapshotSpill | undefined;
  /** States read back from disk, and spills that failed (a full disk: the state was dropped). */
  readonly spillStats = { written: 0, readBack: 0, failed: 0 };

  constructor(options: PrefixCacheOptions = {}) {
    this.maxEntries = options.maxEntries ?? 8;
    this.maxBytes = options.maxBytes ?? 2 * 1024 ** 3;
    this.spill = options.spill;
    if (this.spill) fs.mkdirSync(this.spill.dir, { recursive: true });
  }

  /** States on disk, and their bytes. */
  get spilledSize(): number {
    return this.spilled.length;
  }

  get spilledBytes(): number {
    return this.spilled.reduce((n, e) => n + e.bytes, 0);
  }

  get size(): number {
    return this.entries.length;
  }

  get byteSize(): number {
    return this.entries.reduce((n, e) => n + e.cache.byteSize, 0);
  }

  /** The entry that covers most of the prompt (`ids`, rendered from `text`), or null. */
  find(ids: readonly number[], text: string): PrefixMatch | null {
    type Candidate = { held: { ids: readonly number[]; text: string }; rest: { ids: number[] } | { text: string } };
    let best: Candidate | null = null;
    for (const held of [...this.entries, ...this.spilled]) {
      if (best && held.ids.length <= best.held.ids.length) continue;
      if (isProperPrefix(held.ids, ids)) best = { held, rest: { ids: ids.slice(held.ids.length) } };
      else if (text.length > held.text.length && text.startsWith(held.text)) best = { held, rest: { text: text.slice(held.text.length) } };
    }
    if (best === null) return null;
    let entry = best.held as PrefixEntry;
    if (!('cache' in best.held)) {
      const restored = this.readBack(best.held as SpilledEntry);
      if (restored === null) return this.find(ids, text);
      entry = restored;
    }
    this.touch(entry);
    return { entry, rest: best.rest } as PrefixMatch;
  }

  /** Reads a spilled state back into memory (its file is removed); null when the file is gone or unreadable. */
  private readBack(spilled: SpilledEntry): PrefixEntry | null {
    this.spilled.splice(this.spilled.indexOf(spilled), 1);
    let cache: EngineCache;
    try {
      cache = this.spill!.load(spilled.file);
    } catch {
      this.spillStats.failed++;
      return null;
    } finally {
      fs.rmSync(spilled.file, { force: true });
    }
    this.spillStats.readBack++;
    const entry = { ids: spilled.ids, text: spilled.text, cache };
    this.add(entry);
    return this.entries.includes(entry) ? entry : null;
  }

  /** Writes an evicted state to the spill directory (or drops it); frees its memory either way. */
  private evict(entry: PrefixEntry): void {
    if (this.spill) {
      const file = path.join(this.spill.dir, `snapshot-${randomBytes(8).toString('hex')}.safetensors`);
      try {
        this.spill.save(entry.cache, file);
        this.spilled.push({ ids: entry.ids, text: entry.text, file, bytes: fs.statSync(file).size });
        this.spillStats.written++;
        let bytes = this.spilledBytes;
        const limit = this.spill.maxBytes ?? 16 * 1024 ** 3;
        while (bytes > limit && this.spilled.length) {
          const dropped = this.spilled.shift()!;
          bytes -= dropped.bytes;
          fs.rmSync(dropped.file, { force: true });
        }
      } catch {
        this.spillStats.failed++;
        fs.rmSync(file, { force: true });
      }
    }
    entry.cache.dispose();
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
      this.evict(evicted);
    }
  }

  private remove(entry: PrefixEntry): void {
    const i = this.entries.indexOf(entry);
    if (i >= 0) this.entries.splice(i, 1);
    entry.cache.dispose();
  }

  /** Disposes every saved state and removes the spilled files. */
  clear(): void {
    for (const e of this.entries) e.cache.dispose();
    this.entries = [];
    for (const e of this.spilled) fs.rmSync(e.file, { force: true });
    this.spilled = [];
  }
}
