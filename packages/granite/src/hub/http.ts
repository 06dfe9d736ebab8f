/**
 * The two hub requests: a HEAD on `{endpoint}/{repo}/resolve/{revision}/{file}` for the file's
 * metadata, and a resumable GET of its bytes into `blobs/<etag>.incomplete`.
 */
import { createHash } from 'node:crypto';
import { createReadStream, promises as fs } from 'node:fs';
import { HubAuthError, HubNetworkError, IntegrityError, RepoNotFoundError } from './errors';

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

async function request(url: string, init: RequestInit, ctx: RequestContext): Promise<Response> {
  try {
    return await fetch(url, { ...init, signal: ctx.signal });
  } catch (err) {
    if (ctx.signal?.aborted) throw ctx.signal.reason;
    const cause = (err as { cause?: { message?: string } }).cause?.message;
    throw new HubNetworkError(`Cannot reach ${url}: ${(err as Error).message}${cause ? ` (${cause})` : ''}`, { cause: err });
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
    if (code === 'RepoNotFound') return new RepoNotFoundError(`Repository ${ctx.repoId} not found at ${new URL(url).origin} (revision "${ctx.revision}").`);
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
export async function headFile(
  endpoint: string,
  ctx: RequestContext,
  file: string,
  optional: boolean,
): Promise<FileMetadata | undefined> {
  const origin = new URL(endpoint).origin;
  let url = resolveUrl(endpoint, ctx.repoId, ctx.revision, file);
  for (let hop = 0; hop < 5; hop++) {
    const res = await request(url, { method: 'HEAD', redirect: 'manual', headers: headers(ctx, url, origin) }, ctx);
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
    const etag = res.headers.get('x-linked-etag') ?? res.headers.get('etag');
    if (!commit || !etag) {
      throw new HubNetworkError(
        `${url} did not send ${!commit ? 'X-Repo-Commit' : 'an ETag'}: is ${endpoint} a Hugging Face hub endpoint?`,
      );
    }
    const sizeHeader = res.headers.get('x-linked-size') ?? (location ? null : res.headers.get('content-length'));
    return {
      commit,
      etag: normalizeEtag(etag),
      size: sizeHeader === null ? undefined : Number(sizeHeader),
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
 * Downloads `meta.downloadUrl` into `blobPath`, through `blobPath.incomplete`: an existing partial
 * file is continued with a Range request; the blob appears under its final name only when
 * complete (and, for a sha256 ETag, verified). On abort or a broken transfer the partial file is
 * kept for the next attempt.
 *
 * @param onBytes called with the bytes of the file held so far (including resumed ones).
 */
export async function downloadBlob(
  endpoint: string,
  ctx: RequestContext,
  file: string,
  meta: FileMetadata,
  blobPath: string,
  onBytes: (downloaded: number) => void,
): Promise<void> {
  const partial = `${blobPath}.incomplete`;
  let start = await fileSize(partial);
  if (meta.size !== undefined && start > meta.size) start = 0;
  const url = meta.downloadUrl;
  const origin = new URL(endpoint).origin;
  if (!(meta.size !== undefined && start === meta.size && start > 0)) {
    const range = start > 0 ? { range: `bytes=${start}-` } : undefined;
    const res = await request(url, { method: 'GET', redirect: 'follow', headers: headers(ctx, url, origin, range) }, ctx);
    if (res.status === 416 && start > 0) {
      // The partial file is already whole, or stale; restart to be sure.
      await fs.rm(partial, { force: true });
      return downloadBlob(endpoint, ctx, file, meta, blobPath, onBytes);
    }
    if (res.status >= 400) throw statusError(res, url, ctx, file);
    if (res.status !== 200 && res.status !== 206) {
      throw new HubNetworkError(`Unexpected HTTP ${res.status} from ${url} while downloading ${file}.`);
    }
    // A 200 to a Range request means the server sends the whole file: start over.
    if (res.status === 200) start = 0;
    const handle = await fs.open(partial, start > 0 ? 'a' : 'w');
    let downloaded = start;
    onBytes(downloaded);
    try {
      if (!res.body) throw new HubNetworkError(`${url} sent no body for ${file}.`);
      for await (const chunk of res.body as AsyncIterable<Uint8Array>) {
        await handle.write(chunk);
        downloaded += chunk.byteLength;
        onBytes(downloaded);
      }
    } catch (err) {
      if (ctx.signal?.aborted) throw ctx.signal.reason;
      if (err instanceof HubNetworkError) throw err;
      throw new HubNetworkError(
        `Download of ${file} from ${url} broke off after ${downloaded} bytes: ${(err as Error).message}. ` +
          'The partial file is kept; run again to resume.',
        { cause: err },
      );
    } finally {
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
  await fs.rename(partial, blobPath);
}
