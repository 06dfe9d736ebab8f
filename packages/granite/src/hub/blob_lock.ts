/**
 * One lock file per blob, so two downloads of the same repo (two processes, or two calls in one)
 * do not both fetch the same file. The file is where huggingface_hub puts its own,
 * `<cache>/.locks/models--org--name/<etag>.lock`.
 *
 * Node has no flock(2), so the lock is the file's existence: it is created exclusively and holds
 * `{"pid", "host", "token"}`; its owner touches it every few seconds and deletes it when done. A
 * lock is stale, and taken over, when its process is gone (same host) or it has not been touched
 * for a minute (a crash on another host sharing the cache, or a reused pid). Python's locks are
 * flock(2) locks on a file it leaves behind, empty: such a file is waited on while it is fresh and
 * taken over once old, so a graniteflow and a Python download of the same blob at the same moment
 * may both fetch it. That costs bandwidth, not correctness: recent huggingface_hub versions write
 * into a partial file of their own, and either side renames only a whole (for LFS files, checked)
 * file into place.
 */
import { randomUUID } from 'node:crypto';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

/** A lock untouched for this long is stale, whoever holds it. */
export const LOCK_STALE_MS = 60_000;
const HEARTBEAT_MS = 10_000;
const POLL_MS = 100;

interface LockOwner {
  pid: number;
  host: string;
  token: string;
}

/** Options of {@link acquireBlobLock}. */
export interface BlobLockOptions {
  signal?: AbortSignal;
  /** Checked while waiting: when it answers true (e.g. the blob appeared), waiting stops without the lock. */
  done?: () => Promise<boolean>;
  /** Called on every poll while another download holds the lock. */
  onWait?: () => Promise<void> | void;
}

/** Releases a lock (a no-op when it was not taken because `done` answered true). */
export type ReleaseLock = () => Promise<void>;

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function parseOwner(text: string): LockOwner | undefined {
  try {
    const owner = JSON.parse(text) as Partial<LockOwner>;
    return typeof owner.pid === 'number' && typeof owner.host === 'string' ? (owner as LockOwner) : undefined;
  } catch {
    return undefined;
  }
}

async function readLock(lockPath: string): Promise<{ text: string; mtimeMs: number } | undefined> {
  try {
    const [text, stat] = await Promise.all([fs.readFile(lockPath, 'utf8'), fs.stat(lockPath)]);
    return { text, mtimeMs: stat.mtimeMs };
  } catch {
    return undefined; // released meanwhile
  }
}

function isStale(lock: { text: string; mtimeMs: number }): boolean {
  if (Date.now() - lock.mtimeMs > LOCK_STALE_MS) return true;
  const owner = parseOwner(lock.text);
  return owner !== undefined && owner.host === os.hostname() && !processAlive(owner.pid);
}

function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/**
 * Takes the lock file `lockPath`, waiting while another live download holds it and taking over a
 * stale one. Resolves with the function that releases it.
 */
export async function acquireBlobLock(lockPath: string, options: BlobLockOptions = {}): Promise<ReleaseLock> {
  const owner: LockOwner = { pid: process.pid, host: os.hostname(), token: randomUUID() };
  const text = JSON.stringify(owner);
  await fs.mkdir(path.dirname(lockPath), { recursive: true });
  for (;;) {
    options.signal?.throwIfAborted();
    try {
      await fs.writeFile(lockPath, text, { flag: 'wx', mode: 0o664 });
      return held(lockPath, owner.token);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    const seen = await readLock(lockPath);
    if (seen === undefined) continue;
    if (isStale(seen)) {
      // Delete it only if it is still the stale lock just read, not one taken over meanwhile.
      const again = await readLock(lockPath);
      if (again && again.text === seen.text && again.mtimeMs === seen.mtimeMs) await fs.rm(lockPath, { force: true });
      continue;
    }
    if (options.done && (await options.done())) return async () => undefined;
    await options.onWait?.();
    await sleep(POLL_MS, options.signal);
  }
}

function held(lockPath: string, token: string): ReleaseLock {
  // The touch tells other processes, also on other hosts sharing the cache, that the owner is alive.
  const heartbeat = setInterval(() => {
    const now = new Date();
    fs.utimes(lockPath, now, now).catch(() => undefined);
  }, HEARTBEAT_MS);
  heartbeat.unref();
  return async () => {
    clearInterval(heartbeat);
    const lock = await readLock(lockPath);
    if (lock && parseOwner(lock.text)?.token === token) await fs.rm(lockPath, { force: true });
  };
}
