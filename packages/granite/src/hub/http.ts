/**
 * The two hub requests: a HEAD on `{endpoint}/{repo}/resolve/{revision}/{file}` for the file's
 * metadata, and a resumable GET of its bytes into `blobs/<etag>.incomplete`. Both give up when
 * no byte arrives for the idle timeout, and nothing the hub sends is trusted as a path.
 */
import { createHash } from 'node:crypto';
import { createReadStream, promises as fs } from 'node:fs';
import { HubAuthError, HubNetworkError, HubResponseError, IntegrityError, RepoNotFoundError } from './errors';
import { isBlobName, isCommitHash } from './names';

/** What a HEAD tells about one file at one revision. */
export interface FileMetadata {
  /** Commit the revision resolved to (`X-Repo-Commit`). */
  commit: string;
  /** Blob name: `X-Linked-Etag` (LFS sha256) or `ETag`, without quotes and `W/`. */
  etag: string;
  /** Size in bytes, when the hub says (`X-Linked-Size` or `Content-Length`). */
  size: number | undefined;
  /** Where to GET the bytes (the CDN location for LFS files). */
  downloadUrl: string;
}

/** Context shared by every request of one resolution, for headers and error messages. */
export interface RequestContext {
  repoId: string;
  revision: string;
  token?: string;
  signal?: AbortSignal;
  /** A request fails when no byte (of the answer's head or body) arrives for this long. */
  idleTimeoutMs: number;
}

const USER_AGENT = `graniteflow (node ${process.versions.node})`;

function headers(ctx: RequestContext, url: string, origin: string, extra: Record<string, string> = {}): Record<string, string> {
  const h: Record<string, string> = { 'user-agent': USER_AGENT, 'accept-encoding': 'identity', ...extra };
  // The token is for the hub only, never for a CDN on another origin.
  if (ctx.token && new URL(url).origin === origin) h.authorization = `Bearer ${ctx.token}`;
  return h;
}

/** Strips `W/` and quotes from an ETag. */
export function normalizeEtag(etag: string): string {
  return etag.replace(/^W\//, '').replace(/^"(.*)"$/, '$1');
}

const seconds = (ms: number): string => `${Number((ms / 1000).toFixed(3))} s`;

/**
 * Aborts a request when nothing arrives for `ms`: armed before the request, re-armed on every
 * chunk of the body. The outer signal (the caller's cancel) still works through `signal`.
 */
class IdleTimer {
  private readonly controller = new AbortController();
  private timer: NodeJS.Timeout | undefined;
  readonly signal: AbortSignal;

  constructor(
    private readonly ms: number,
    outer: AbortSignal | undefined,
  ) {
    this.signal = outer ? AbortSignal.any([outer, this.controller.signal]) : this.controller.signal;
  }

  /** (Re)starts the countdown; `error` phrases what was awaited. */
  arm(error: () => Error): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.controller.abort(error()), this.ms);
  }

  stop(): void {
    clearTimeout(this.timer);
  }

  /** The idle error when the timer fired, else undefined. */
  get fired(): Error | undefined {
    return this.controller.signal.aborted ? (this.controller.signal.reason as Error) : undefined;
  }
}

/** Why the request failed: the caller's abort reason, the idle timeout, or the network error. */
function requestFailure(err: unknown, url: string, ctx: RequestContext, idle: IdleTimer): unknown {
  if (ctx.signal?.aborted) return ctx.signal.reason;
  if (idle.fired) return idle.fired;
  const cause = (err as { cause?: { message?: string } }).cause?.message;
  return new HubNetworkError(`Cannot reach ${url}: ${(err as Error).message}${cause ? ` (${cause})` : ''}`, { cause: err });
}

/** Sends a request; the idle timer stays armed until the caller has read the body (or stops it). */
async function request(url: string, init: RequestInit, ctx: RequestContext, idle: IdleTimer, what: string): Promise<Response> {
  idle.arm(
    () =>
      new HubNetworkError(
        `No answer from ${url} within ${seconds(ctx.idleTimeoutMs)} (${what}). ` +
          'The hub may be overloaded or the connection stalled; run again, or set HF_HUB_DOWNLOAD_TIMEOUT (seconds) to wait longer.',
      ),
  );
  try {
    return await fetch(url, { ...init, signal: idle.signal });
  } catch (err) {
    idle.stop();
    throw requestFailure(err, url, ctx, idle);
  }
}

function statusError(res: Response, url: string, ctx: RequestContext, file: string): Error {
  const code = res.headers.get('x-error-code');
  const where = `${ctx.repoId} (revision "${ctx.revision}")`;
  if (res.status === 401 || res.status === 403) {
    const gated = code === 'GatedRepo' ? ' The repo is gated: accept its conditions on the hub first.' : '';
    return new HubAuthError(
      `Access to ${where} was refused (HTTP ${res.status} for ${url}).${gated} ` +
        (ctx.token
          ? 'The token given may lack access to this repo.'
          : 'A token may be needed: pass `token` or set HF_TOKEN. Also check the repo id.'),
    );
  }
  if (res.status === 404) {
    if (code === 'RepoNotFound')
      return new RepoNotFoundError(`Repository ${ctx.repoId} not found at ${new URL(url).origin} (revision "${ctx.revision}").`);
    if (code === 'RevisionNotFound') return new RepoNotFoundError(`Revision "${ctx.revision}" not found in ${ctx.repoId}.`);
    return new RepoNotFoundError(`${file} not found in ${where}: ${url} answered 404. Check the repo id and revision.`);
  }
  return new HubNetworkError(`Unexpected HTTP ${res.status} ${res.statusText} from ${url} (${file} of ${where}).`);
}

/** `{endpoint}/{repo}/resolve/{revision}/{file}`. */
export function resolveUrl(endpoint: string, repoId: string, revision: string, file: string): string {
  const encodedFile = file.split('/').map(encodeURIComponent).join('/');
  return `${endpoint.replace(/\/+$/, '')}/${repoId}/resolve/${encodeURIComponent(revision)}/${encodedFile}`;
}

/**
 * HEADs a file. Redirects are not followed (the CDN's own ETag is not the blob name), except
 * relative ones, which the hub uses for renamed repos. Returns `undefined` for a 404 when
 * `optional`.
 */
export async function headFile(endpoint: string, ctx: RequestContext, file: string, optional: boolean): Promise<FileMetadata | undefined> {
  const origin = new URL(endpoint).origin;
  let url = resolveUrl(endpoint, ctx.repoId, ctx.revision, file);
  for (let hop = 0; hop < 5; hop++) {
    const idle = new IdleTimer(ctx.idleTimeoutMs, ctx.signal);
    const res = await request(
      url,
      { method: 'HEAD', redirect: 'manual', headers: headers(ctx, url, origin) },
      ctx,
      idle,
      `HEAD of ${file} of ${ctx.repoId}`,
    );
    idle.stop();
    const location = res.headers.get('location');
    if (res.status >= 300 && res.status < 400 && location && !/^[a-z][a-z0-9+.-]*:\/\//i.test(location)) {
      url = new URL(location, url).toString();
      continue;
    }
    if (res.status === 404 && optional) {
      // A missing repo or revision is an error even for an optional file.
      const code = res.headers.get('x-error-code');
      if (code === 'RepoNotFound' || code === 'RevisionNotFound') throw statusError(res, url, ctx, file);
      return undefined;
    }
    if (res.status >= 400) throw statusError(res, url, ctx, file);
    const commit = res.headers.get('x-repo-commit');
    const etagHeader = res.headers.has('x-linked-etag') ? 'X-Linked-Etag' : 'ETag';
    const etag = res.headers.get(etagHeader);
    if (!commit || !etag) {
      throw new HubNetworkError(
        `${url} did not send ${!commit ? 'X-Repo-Commit' : 'an ETag'}: is ${endpoint} a Hugging Face hub endpoint?`,
      );
    }
    // Both become names in the cache (snapshots/<commit>, blobs/<etag>): only hex shas will do.
    const of = `for ${file} of ${ctx.repoId} (${url})`;
    if (!isCommitHash(commit)) {
      throw new HubResponseError(
        `The hub sent X-Repo-Commit ${JSON.stringify(commit)} ${of}: expected a commit hash of 40 hex digits. ` +
          `Snapshot folders are named after it, so nothing else is accepted: is ${endpoint} a Hugging Face hub?`,
      );
    }
    if (!isBlobName(normalizeEtag(etag))) {
      throw new HubResponseError(
        `The hub sent ${etagHeader} ${JSON.stringify(normalizeEtag(etag))} ${of}: expected a 40- or 64-hex-digit sha ` +
          `(a git blob id, or the sha256 of an LFS file). Cached files are named after it, so nothing else is accepted: is ${endpoint} a Hugging Face hub?`,
      );
    }
    const sizeHeader = res.headers.get('x-linked-size') ?? (location ? null : res.headers.get('content-length'));
    return {
      commit,
      etag: normalizeEtag(etag),
      size: sizeHeader !== null && /^\d+$/.test(sizeHeader.trim()) ? Number(sizeHeader) : undefined,
      downloadUrl: location ? new URL(location, url).toString() : url,
    };
  }
  throw new HubNetworkError(`Too many redirects for ${file} of ${ctx.repoId} (last URL ${url}).`);
}

async function fileSize(p: string): Promise<number> {
  try {
    return (await fs.stat(p)).size;
  } catch {
    return 0;
  }
}

async function sha256Of(p: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(p)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/**
 * Why a 206 answer does not continue a partial file of `start` bytes of a `size`-byte file, or
 * undefined when it does: its Content-Range must start at `start` and, when the size is known,
 * end with the same total.
 */
function contentRangeProblem(res: Response, start: number, size: number | undefined): string | undefined {
  const header = res.headers.get('content-range');
  if (header === null) return 'it has no Content-Range header';
  const m = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(header.trim());
  if (!m) return `its Content-Range "${header}" is not "bytes first-last/total"`;
  const [first, last] = [Number(m[1]), Number(m[2])];
  if (first !== start) return `its Content-Range "${header}" starts at byte ${first}, not at ${start}`;
  if (last < first) return `its Content-Range "${header}" ends before it starts`;
  if (m[3] !== '*' && size !== undefined && Number(m[3]) !== size)
    return `its Content-Range "${header}" says the file has ${m[3]} bytes, not ${size}`;
  const length = res.headers.get('content-length');
  if (length !== null && Number(length) !== last - first + 1)
    return `its Content-Range "${header}" does not match its Content-Length ${length}`;
  return undefined;
}

/** Where a blob goes: its final name and the partial file it grows in until complete. */
export interface BlobPaths {
  blob: string;
  partial: string;
}

/**
 * Downloads `meta.downloadUrl` into `paths.blob`, through `paths.partial`: an existing partial
 * file is continued with a Range request (a 206 whose Content-Range does not continue it starts
 * the file over; wrong bytes are never appended); the blob appears under its final name only when
 * complete (and, for a sha256 ETag, verified). On abort, a stall (no byte for the idle timeout)
 * or a broken transfer the partial file is kept for the next attempt.
 *
 * @param onBytes called with the bytes of the file held so far (including resumed ones).
 */
export async function downloadBlob(
  endpoint: string,
  ctx: RequestContext,
  file: string,
  meta: FileMetadata,
  paths: BlobPaths,
  onBytes: (downloaded: number) => void,
): Promise<void> {
  const { partial } = paths;
  let start = await fileSize(partial);
  if (meta.size !== undefined && start > meta.size) start = 0;
  const url = meta.downloadUrl;
  const origin = new URL(endpoint).origin;
  if (!(meta.size !== undefined && start === meta.size && start > 0)) {
    const range = start > 0 ? { range: `bytes=${start}-` } : undefined;
    const idle = new IdleTimer(ctx.idleTimeoutMs, ctx.signal);
    const res = await request(
      url,
      { method: 'GET', redirect: 'follow', headers: headers(ctx, url, origin, range) },
      ctx,
      idle,
      `download of ${file}`,
    );
    const restart = async (): Promise<void> => {
      idle.stop();
      await res.body?.cancel().catch(() => undefined);
      await fs.rm(partial, { force: true });
      return downloadBlob(endpoint, ctx, file, meta, paths, onBytes);
    };
    if (res.status === 416 && start > 0) return restart(); // the partial file is already whole, or stale: restart to be sure
    if (res.status >= 400) {
      idle.stop();
      throw statusError(res, url, ctx, file);
    }
    if (res.status !== 200 && res.status !== 206) {
      idle.stop();
      throw new HubNetworkError(`Unexpected HTTP ${res.status} from ${url} while downloading ${file}.`);
    }
    if (res.status === 206) {
      if (start === 0) {
        idle.stop();
        throw new HubResponseError(
          `${url} answered 206 (partial content) to a request for the whole of ${file}; the download cannot go on.`,
        );
      }
      // The bytes would not continue the partial file: start over rather than append them.
      if (contentRangeProblem(res, start, meta.size) !== undefined) return restart();
    }
    // A 200 to a Range request means the server sends the whole file: start over.
    if (res.status === 200) start = 0;
    const handle = await fs.open(partial, start > 0 ? 'a' : 'w').catch(async (err: unknown) => {
      idle.stop();
      await res.body?.cancel().catch(() => undefined);
      throw err;
    });
    let downloaded = start;
    onBytes(downloaded);
    const stalled = (): Error =>
      new HubNetworkError(
        `Download of ${file} from ${url} stalled: no data for ${seconds(ctx.idleTimeoutMs)} after ${downloaded} bytes. ` +
          'The partial file is kept; run again to resume (HF_HUB_DOWNLOAD_TIMEOUT sets how long to wait, in seconds).',
      );
    try {
      if (!res.body) throw new HubNetworkError(`${url} sent no body for ${file}.`);
      idle.arm(stalled);
      for await (const chunk of res.body as AsyncIterable<Uint8Array>) {
        idle.arm(stalled);
        await handle.write(chunk);
        downloaded += chunk.byteLength;
        onBytes(downloaded);
      }
    } catch (err) {
      if (ctx.signal?.aborted) throw ctx.signal.reason;
      if (idle.fired) throw idle.fired;
      if (err instanceof HubNetworkError) throw err;
      throw new HubNetworkError(
        `Download of ${file} from ${url} broke off after ${downloaded} bytes: ${(err as Error).message}. ` +
          'The partial file is kept; run again to resume.',
        { cause: err },
      );
    } finally {
      idle.stop();
      await handle.close();
    }
  }
  const got = await fileSize(partial);
  if (meta.size !== undefined && got !== meta.size) {
    throw new HubNetworkError(
      `Download of ${file} from ${url} ended at ${got} of ${meta.size} bytes. The partial file is kept; run again to resume.`,
    );
  }
  if (/^[0-9a-f]{64}$/.test(meta.etag)) {
    const digest = await sha256Of(partial);
    if (digest !== meta.etag) {
      await fs.rm(partial, { force: true });
      throw new IntegrityError(`${file} of ${ctx.repoId} is corrupt: sha256 ${digest}, expected ${meta.etag}. It was deleted; run again.`);
    }
  }
  await fs.rename(partial, paths.blob);
}
