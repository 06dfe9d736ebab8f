// A loopback stand-in for the Hugging Face hub: `/{org}/{name}/resolve/{revision}/{file}` with
// HEAD and GET, ETag / X-Repo-Commit / Content-Length, Range → 206, a 302 to a "CDN" path for
// .safetensors files (X-Linked-Etag and X-Linked-Size on the first response, as the hub does),
// 404s with X-Error-Code, a private repo, and injectable faults (cut a transfer, stall one).
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
}

export interface LoggedRequest {
  method: string;
  path: string;
  range?: string;
}

export interface Faults {
  /** Content sha256s whose next full GET sends half the bytes, then drops the connection. */
  cutOnce: Set<string>;
  /** Content sha256s whose GETs send half the bytes and then hang; `onStall` is called. */
  stall: Set<string>;
  onStall?: () => void;
}

export interface HubServer {
  url: string;
  log: LoggedRequest[];
  faults: Faults;
  close(): Promise<void>;
}

export const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
const gitSha1 = (b: Buffer): string =>
  createHash('sha1').update(Buffer.concat([Buffer.from(`blob ${b.length}\0`), b])).digest('hex');

function sendBytes(req: http.IncomingMessage, res: http.ServerResponse, body: Buffer, headers: Record<string, string>, faults: Faults, sha: string): void {
  const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
  let start = 0;
  if (range) {
    start = Number(range[1]);
    if (start >= body.length) {
      res.writeHead(416, { 'content-range': `bytes */${body.length}` }).end();
      return;
    }
  }
  const part = body.subarray(start);
  const status = range ? 206 : 200;
  const h: Record<string, string> = { ...headers, 'content-length': String(part.length), 'accept-ranges': 'bytes' };
  if (range) h['content-range'] = `bytes ${start}-${body.length - 1}/${body.length}`;
  res.writeHead(status, h);
  if (req.method === 'HEAD') {
    res.end();
    return;
  }
  if (faults.stall.has(sha)) {
    res.write(part.subarray(0, part.length >> 1), () => faults.onStall?.());
    return; // hangs until the client goes away
  }
  if (!range && faults.cutOnce.delete(sha)) {
    res.write(part.subarray(0, part.length >> 1), () => res.socket?.destroy());
    return;
  }
  res.end(part);
}

export async function startHubServer(repos: Record<string, ServedRepo>): Promise<HubServer> {
  const log: LoggedRequest[] = [];
  const faults: Faults = { cutOnce: new Set(), stall: new Set() };
  const blobs = new Map<string, Buffer>();
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    log.push({ method: req.method ?? '', path: decodeURIComponent(url.pathname), range: req.headers.range });
    const base = `http://${req.headers.host}`;
    const cdn = /^\/cdn\/([0-9a-f]{64})$/.exec(url.pathname);
    if (cdn) {
      const body = blobs.get(cdn[1]);
      if (!body) return void res.writeHead(404).end();
      return sendBytes(req, res, body, { etag: `"cdn-${cdn[1].slice(0, 8)}"` }, faults, cdn[1]);
    }
    const m = /^\/([^/]+\/[^/]+)\/resolve\/([^/]+)\/(.+)$/.exec(decodeURIComponent(url.pathname));
    const repo = m ? repos[m[1]] : undefined;
    if (!m || !repo) return void res.writeHead(404, { 'x-error-code': 'RepoNotFound' }).end();
    if (repo.token && req.headers.authorization !== `Bearer ${repo.token}`) {
      return void res.writeHead(401, { 'x-error-code': 'RepoNotFound' }).end();
    }
    const [, , revision, file] = m;
    if (revision !== 'main' && revision !== repo.commit) return void res.writeHead(404, { 'x-error-code': 'RevisionNotFound' }).end();
    if (!repo.files.includes(file)) {
      return void res.writeHead(404, { 'x-error-code': 'EntryNotFound', 'x-repo-commit': repo.commit }).end();
    }
    const body = fs.readFileSync(path.join(repo.dir, file));
    if (file.endsWith('.safetensors')) {
      const sha = sha256(body);
      blobs.set(sha, body);
      return void res
        .writeHead(302, {
          location: `${base}/cdn/${sha}`,
          'x-repo-commit': repo.commit,
          'x-linked-etag': `"${sha}"`,
          'x-linked-size': String(body.length),
          etag: `W/"pointer-${sha.slice(0, 8)}"`,
          'content-length': '0',
        })
        .end();
    }
    sendBytes(req, res, body, { etag: `"${gitSha1(body)}"`, 'x-repo-commit': repo.commit }, faults, sha256(body));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    log,
    faults,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
