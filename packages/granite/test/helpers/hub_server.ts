// A loopback stand-in for the Hugging Face hub: `/{org}/{name}/resolve/{revision}/{file}` with
// HEAD and GET, ETag / X-Repo-Commit / Content-Length, Range → 206, a 302 to a "CDN" path for
// .safetensors files (X-Linked-Etag and X-Linked-Size on the first response, as the hub does),
// 404s with X-Error-Code, a private repo, and injectable faults: cut a transfer, stall one (once
// or always), slow one down, answer a Range request with a wrong Content-Range, never answer at
// all, or send hostile headers (an ETag or commit hash that is a path) as a malicious hub would.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as path from 'node:path';

export interface ServedRepo {
  dir: string;
  /** Files served (relative to dir). */
  files: string[];
  commit: string;
  /** When set, requests need `Authorization: Bearer <token>`. */
  token?: string;
  /** Answer every revision name as if it were main (a lenient or hostile hub). */
  anyRevision?: boolean;
}

export interface LoggedRequest {
  method: string;
  path: string;
  range?: string;
}

/** How a 206 answer gets its Content-Range wrong. */
export type BadRange =
  /** As many bytes as asked for, but from byte 0, honestly labelled `bytes 0-…` (the server ignored the start). */
  | 'wrong-start'
  /** The right bytes, but a total that is not the file's size. */
  | 'wrong-total'
  /** The right bytes without any Content-Range header. */
  | 'missing';

export interface Faults {
  /** Content sha256s whose next full GET sends half the bytes, then drops the connection. */
  cutOnce: Set<string>;
  /** Content sha256s whose GETs send half the bytes and then hang; `onStall` is called. */
  stall: Set<string>;
  /** Content sha256s whose next GET sends half the bytes and then hangs; later GETs are served. */
  stallOnce: Set<string>;
  onStall?: () => void;
  /** Content sha256s whose GETs send half the bytes, pause this many ms, then send the rest. */
  slow: Map<string, number>;
  /** Content sha256s whose next Range request is answered with a wrong Content-Range. */
  badRangeOnce: Map<string, BadRange>;
  /** Repo file paths whose requests are never answered (no status line, no bytes). */
  silent: Set<string>;
  /** Headers that replace the hub's own on answers for a repo file path (HEAD, GET and the CDN redirect). */
  headers: Map<string, Record<string, string>>;
}

export interface HubServer {
  url: string;
  log: LoggedRequest[];
  faults: Faults;
  /** Requests logged whose method is `method` and whose decoded path ends with `suffix`. */
  count(method: string, suffix: string): number;
  /** Clears the log and every fault. */
  reset(): void;
  close(): Promise<void>;
}

export const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
export const gitSha1 = (b: Buffer): string =>
  createHash('sha1')
    .update(Buffer.concat([Buffer.from(`blob ${b.length}\0`), b]))
    .digest('hex');

function sendBytes(
  req: http.IncomingMessage,
  res: http.ServerResponse,
  body: Buffer,
  headers: Record<string, string>,
  faults: Faults,
  sha: string,
): void {
  const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
  let start = 0;
  if (range) {
    start = Number(range[1]);
    if (start >= body.length) {
      res.writeHead(416, { 'content-range': `bytes */${body.length}` }).end();
      return;
    }
  }
  const badRange = range && req.method === 'GET' ? faults.badRangeOnce.get(sha) : undefined;
  if (badRange) faults.badRangeOnce.delete(sha);
  // A server that ignored the start: the first bytes, as many as were asked for.
  const part = badRange === 'wrong-start' ? body.subarray(0, body.length - start) : body.subarray(start);
  if (badRange === 'wrong-start') start = 0;
  const status = range ? 206 : 200;
  const h: Record<string, string> = { ...headers, 'content-length': String(part.length), 'accept-ranges': 'bytes' };
  if (range && badRange !== 'missing') {
    const total = badRange === 'wrong-total' ? body.length + 1000 : body.length;
    h['content-range'] = `bytes ${start}-${start + part.length - 1}/${total}`;
  }
  res.writeHead(status, h);
  if (req.method === 'HEAD') {
    res.end();
    return;
  }
  if (faults.stall.has(sha) || faults.stallOnce.delete(sha)) {
    res.write(part.subarray(0, part.length >> 1), () => faults.onStall?.());
    return; // hangs until the client goes away
  }
  if (!range && faults.cutOnce.delete(sha)) {
    res.write(part.subarray(0, part.length >> 1), () => res.socket?.destroy());
    return;
  }
  const pause = faults.slow.get(sha);
  if (pause !== undefined) {
    res.write(part.subarray(0, part.length >> 1));
    const timer = setTimeout(() => res.end(part.subarray(part.length >> 1)), pause);
    res.on('close', () => clearTimeout(timer));
    return;
  }
  res.end(part);
}

export async function startHubServer(repos: Record<string, ServedRepo>): Promise<HubServer> {
  const log: LoggedRequest[] = [];
  const faults: Faults = {
    cutOnce: new Set(),
    stall: new Set(),
    stallOnce: new Set(),
    slow: new Map(),
    badRangeOnce: new Map(),
    silent: new Set(),
    headers: new Map(),
  };
  const blobs = new Map<string, { body: Buffer; file: string }>();
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    log.push({ method: req.method ?? '', path: decodeURIComponent(url.pathname), range: req.headers.range });
    const base = `http://${req.headers.host}`;
    const cdn = /^\/cdn\/([0-9a-f]{64})$/.exec(url.pathname);
    if (cdn) {
      const blob = blobs.get(cdn[1]);
      if (!blob) return void res.writeHead(404).end();
      if (faults.silent.has(blob.file)) return;
      return sendBytes(req, res, blob.body, { etag: `"cdn-${cdn[1].slice(0, 8)}"` }, faults, cdn[1]);
    }
    // Matched on the encoded path, so a revision holding an encoded "/" stays one segment.
    const m = /^\/([^/]+\/[^/]+)\/resolve\/([^/]+)\/(.+)$/.exec(url.pathname);
    const repo = m ? repos[decodeURIComponent(m[1])] : undefined;
    if (!m || !repo) return void res.writeHead(404, { 'x-error-code': 'RepoNotFound' }).end();
    if (repo.token && req.headers.authorization !== `Bearer ${repo.token}`) {
      return void res.writeHead(401, { 'x-error-code': 'RepoNotFound' }).end();
    }
    const revision = decodeURIComponent(m[2]);
    const file = decodeURIComponent(m[3]);
    if (faults.silent.has(file)) return; // hangs until the client goes away
    if (!repo.anyRevision && revision !== 'main' && revision !== repo.commit) {
      return void res.writeHead(404, { 'x-error-code': 'RevisionNotFound' }).end();
    }
    const hostile = faults.headers.get(file) ?? {};
    if (!repo.files.includes(file)) {
      return void res.writeHead(404, { 'x-error-code': 'EntryNotFound', 'x-repo-commit': repo.commit, ...hostile }).end();
    }
    const body = fs.readFileSync(path.join(repo.dir, file));
    if (file.endsWith('.safetensors')) {
      const sha = sha256(body);
      blobs.set(sha, { body, file });
      return void res
        .writeHead(302, {
          location: `${base}/cdn/${sha}`,
          'x-repo-commit': repo.commit,
          'x-linked-etag': `"${sha}"`,
          'x-linked-size': String(body.length),
          etag: `W/"pointer-${sha.slice(0, 8)}"`,
          'content-length': '0',
          ...hostile,
        })
        .end();
    }
    sendBytes(req, res, body, { etag: `"${gitSha1(body)}"`, 'x-repo-commit': repo.commit, ...hostile }, faults, sha256(body));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    log,
    faults,
    count: (method, suffix) => log.filter((r) => r.method === method && r.path.endsWith(suffix)).length,
    reset: () => {
      log.length = 0;
      faults.cutOnce.clear();
      faults.stall.clear();
      faults.stallOnce.clear();
      faults.onStall = undefined;
      faults.slow.clear();
      faults.badRangeOnce.clear();
      faults.silent.clear();
      faults.headers.clear();
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
