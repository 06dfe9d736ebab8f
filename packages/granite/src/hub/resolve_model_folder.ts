/**
 * `resolveModelFolder`: a local model folder, or a hub repo id fetched into (or found in) the
 * standard Hugging Face cache.
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { acquireBlobLock } from './blob_lock';
import { exists, resolveCacheDir, RepoCache, type Env } from './cache_layout';
import { HubError, HubNetworkError, HubResponseError, OfflineCacheMissError } from './errors';
import { downloadBlob, headFile, resolveUrl, type FileMetadata, type RequestContext } from './http';
import { assertRevision, repoFileProblem, repoIdProblem } from './names';

/** Progress of one file, or of all the bytes to download (`file: null`). */
export interface DownloadProgress {
  /** Path of the file in the repo; `null` for the overall total. */
  file: string | null;
  downloadedBytes: number;
  /** Bytes expected; undefined when the hub did not say. */
  totalBytes: number | undefined;
  done: boolean;
}

/** Options of {@link resolveModelFolder}. */
export interface ResolveModelFolderOptions {
  /** Branch, tag or commit hash. Default "main". */
  revision?: string;
  /** Cache directory. Default `HF_HUB_CACHE`, else `HF_HOME/hub`, else `~/.cache/huggingface/hub`. */
  cacheDir?: string;
  /** Hub endpoint. Default `HF_ENDPOINT`, else https://huggingface.co. */
  endpoint?: string;
  /** Access token for private or gated repos. Default `HF_TOKEN`. */
  token?: string;
  /** Use only the cache; never make a request. Default: `HF_HUB_OFFLINE` (1, true, yes or on). */
  offline?: boolean;
  /**
   * A request fails when no byte arrives for this long (waiting for an answer, or between two
   * chunks of a download); the partial file is kept and the retry resumes it. Default
   * `HF_HUB_DOWNLOAD_TIMEOUT` (seconds), else 30 s.
   */
  idleTimeoutMs?: number;
  /** Called as bytes arrive (per file, at least every 64 KiB, and at the end), and for the overall total. */
  onProgress?: (progress: DownloadProgress) => void;
  /** Cancels the transfer; the partial file is kept to resume later. The promise rejects with the signal's reason. */
  signal?: AbortSignal;
  /** Symlink snapshot files to blobs like huggingface_hub (default), or copy them when false. */
  symlinks?: boolean;
  /** Environment to read `HF_*` variables from (default `process.env`). */
  env?: Env;
}

/** Files fetched besides the weights. `config.json` is required, the others may be absent. */
export const MODEL_FILES = {
  required: ['config.json'],
  // A cached snapshot counts as complete only when these are present or known to be absent.
  tokenizer: ['tokenizer.json', 'tokenizer_config.json'],
  // Fetched when a download happens anyway; their absence does not make a snapshot incomplete.
  extra: ['generation_config.json', 'chat_template.jinja', 'special_tokens_map.json'],
  index: 'model.safetensors.index.json',
  single: 'model.safetensors',
} as const;

const DEFAULT_ENDPOINT = 'https://huggingface.co';
const DEFAULT_IDLE_TIMEOUT_MS = 30_000;
const PROGRESS_STEP = 64 * 1024;
const MAX_ATTEMPTS = 3;

function envFlag(value: string | undefined): boolean {
  return value !== undefined && ['1', 'on', 'yes', 'true'].includes(value.trim().toLowerCase());
}

/** Whether `HF_HUB_OFFLINE` asks for offline mode (1, true, yes or on, as huggingface_hub reads it). */
export function hubOfflineMode(env: Env = process.env): boolean {
  return envFlag(env.HF_HUB_OFFLINE);
}

function idleTimeoutOf(options: ResolveModelFolderOptions, env: Env): number {
  if (options.idleTimeoutMs !== undefined) {
    if (!(options.idleTimeoutMs > 0))
      throw new HubError(`idleTimeoutMs must be a number of milliseconds > 0, got ${options.idleTimeoutMs}.`);
    return options.idleTimeoutMs;
  }
  const raw = env.HF_HUB_DOWNLOAD_TIMEOUT;
  if (raw === undefined || raw.trim() === '') return DEFAULT_IDLE_TIMEOUT_MS;
  const secondsValue = Number(raw);
  if (!(secondsValue > 0)) throw new HubError(`HF_HUB_DOWNLOAD_TIMEOUT must be a number of seconds > 0, got "${raw}".`);
  return secondsValue * 1000;
}

function shardsOf(indexJson: unknown, file: string): string[] {
  const map = (indexJson as { weight_map?: unknown } | null)?.weight_map;
  if (typeof map !== 'object' || map === null) {
    throw new HubError(`${file} has no "weight_map" object: expected {"weight_map": {tensor: shard file}}`);
  }
  const shards = [...new Set(Object.values(map as Record<string, unknown>))];
  for (const s of shards) {
    // The names become paths in the snapshot folder: none may leave it.
    const problem = typeof s === 'string' ? repoFileProblem(s) : 'it is not a string';
    if (problem) throw new HubResponseError(`${file} lists an invalid shard file name ${JSON.stringify(s)}: ${problem}.`);
  }
  return (shards as string[]).sort();
}

/** What a cached snapshot lacks (empty when it can be used as is). */
async function missingFromSnapshot(cache: RepoCache, commit: string): Promise<string[]> {
  const missing: string[] = [];
  const present = (f: string) => exists(cache.snapshotPath(commit, f));
  for (const f of MODEL_FILES.required) if (!(await present(f))) missing.push(f);
  for (const f of MODEL_FILES.tokenizer) {
    if (!(await present(f)) && !(await cache.isMarkedMissing(commit, f))) missing.push(f);
  }
  const indexFile = cache.snapshotPath(commit, MODEL_FILES.index);
  if (await exists(indexFile)) {
    let shards: string[];
    try {
      shards = shardsOf(JSON.parse(await fs.readFile(indexFile, 'utf8')), indexFile);
    } catch {
      return [...missing, `${MODEL_FILES.index} (unreadable)`];
    }
    for (const s of shards) if (!(await present(s))) missing.push(s);
  } else if (!(await present(MODEL_FILES.single))) {
    missing.push(`${MODEL_FILES.single} (or ${MODEL_FILES.index} and its shards)`);
  }
  return missing;
}

async function localFolder(p: string): Promise<string | undefined> {
  try {
    const stat = await fs.stat(p);
    if (stat.isDirectory()) return path.resolve(p);
    throw new HubError(`${p} is a file; expected a model folder or a hub repo id such as "ibm-granite/granite-4.0-h-micro"`);
  } catch (err) {
    if (err instanceof HubError) throw err;
    return undefined;
  }
}

/**
 * Returns a local folder holding a model: `pathOrRepoId` itself when it is an existing folder,
 * else the snapshot of hub repo `org/name` in the Hugging Face cache, downloading what is missing.
 *
 * Downloads `config.json`, the tokenizer files, `generation_config.json`, `chat_template.jinja`,
 * `special_tokens_map.json` (absent ones are fine), then `model.safetensors.index.json` and every
 * shard it lists, or else `model.safetensors`. A snapshot already complete in the cache (also one
 * written by Python's huggingface_hub) is returned without any request.
 *
 * @example
 * const dir = await resolveModelFolder('ibm-granite/granite-4.0-h-micro', {
 *   onProgress: (p) => p.file === null && console.log(p.downloadedBytes, '/', p.totalBytes),
 * });
 * @throws RepoNotFoundError, HubAuthError (a token may be needed), HubNetworkError (names the
 *   URL; also a stall longer than the idle timeout), HubResponseError (an ETag, commit hash or
 *   shard name that cannot be used safely), OfflineCacheMissError (names what is missing),
 *   HubError (an invalid repo id or revision), or the signal's reason when aborted.
 */
export async function resolveModelFolder(pathOrRepoId: string, options: ResolveModelFolderOptions = {}): Promise<string> {
  if (typeof pathOrRepoId !== 'string' || pathOrRepoId === '') {
    throw new HubError('resolveModelFolder: expected a folder path or a repo id such as "ibm-granite/granite-4.0-h-micro"');
  }
  const local = await localFolder(pathOrRepoId);
  if (local) return local;
  const repoIdIssue = repoIdProblem(pathOrRepoId);
  if (repoIdIssue) {
    throw new HubError(
      /^[\w.-]+(\/[\w.-]+)?$/.test(pathOrRepoId)
        ? `"${pathOrRepoId}" is not a valid hub repo id: ${repoIdIssue}.`
        : `${pathOrRepoId} is neither an existing folder nor a hub repo id of the form "org/name"`,
    );
  }
  const env = options.env ?? process.env;
  const repoId = pathOrRepoId;
  const revision = options.revision ?? 'main';
  assertRevision(revision);
  const cache = new RepoCache(resolveCacheDir(options.cacheDir, env), repoId);
  const offline = options.offline ?? hubOfflineMode(env);
  const idleTimeoutMs = idleTimeoutOf(options, env);
  const onProgress = options.onProgress ?? (() => undefined);
  options.signal?.throwIfAborted();

  const cachedCommit = await cache.readRef(revision);
  if (cachedCommit) {
    const missing = await missingFromSnapshot(cache, cachedCommit);
    if (missing.length === 0) {
      onProgress({ file: null, downloadedBytes: 0, totalBytes: 0, done: true });
      return cache.snapshotDir(cachedCommit);
    }
    if (offline) {
      throw new OfflineCacheMissError(
        `Offline mode is on, so nothing is downloaded, and ${repoId} (revision "${revision}", commit ${cachedCommit}) is incomplete in the cache ${cache.root}: ` +
          `missing ${missing.join(', ')}. Turn offline mode off once (the offline option, or HF_HUB_OFFLINE) to download it.`,
      );
    }
  } else if (offline) {
    throw new OfflineCacheMissError(
      `Offline mode is on, so nothing is downloaded, and ${repoId} (revision "${revision}") is not in the cache ${cache.root} ` +
        `(no commit in ${path.join('refs', revision)}). Turn offline mode off once (the offline option, or HF_HUB_OFFLINE) to download it.`,
    );
  }

  const endpoint = (options.endpoint ?? env.HF_ENDPOINT ?? DEFAULT_ENDPOINT).replace(/\/+$/, '');
  const ctx: RequestContext = { repoId, revision, token: options.token ?? env.HF_TOKEN, signal: options.signal, idleTimeoutMs };
  return downloadSnapshot(endpoint, ctx, cache, revision, options.symlinks ?? true, onProgress);
}

async function downloadSnapshot(
  endpoint: string,
  ctx: RequestContext,
  cache: RepoCache,
  revision: string,
  symlinks: boolean,
  onProgress: (p: DownloadProgress) => void,
): Promise<string> {
  // config.json pins the commit; every later request names that commit, so a push to the branch
  // during the download cannot mix two versions.
  const config = (await headFile(endpoint, ctx, MODEL_FILES.required[0], false)) as FileMetadata;
  const commit = config.commit;
  if (config.downloadUrl === resolveUrl(endpoint, ctx.repoId, revision, MODEL_FILES.required[0])) {
    config.downloadUrl = resolveUrl(endpoint, ctx.repoId, commit, MODEL_FILES.required[0]);
  }
  await cache.writeRef(revision, commit);
  const pinned: RequestContext = { ...ctx, revision: commit };

  const plan: { file: string; meta: FileMetadata }[] = [{ file: MODEL_FILES.required[0], meta: config }];
  for (const file of [...MODEL_FILES.tokenizer, ...MODEL_FILES.extra]) {
    const meta = await headFile(endpoint, pinned, file, true);
    if (meta) plan.push({ file, meta });
    else await cache.markMissing(commit, file);
  }

  const fetchOne = async (file: string, meta: FileMetadata, report: (n: number) => void): Promise<void> => {
    const paths = { blob: cache.blobPath(meta.etag), partial: cache.incompletePath(meta.etag) };
    if (!(await exists(paths.blob))) {
      await fs.mkdir(path.dirname(paths.blob), { recursive: true });
      // Another download of this blob (another process, or another call in this one) may be under
      // way: wait for it, showing its progress, instead of fetching the same bytes twice.
      const release = await acquireBlobLock(cache.lockPath(meta.etag), {
        signal: ctx.signal,
        done: () => exists(paths.blob),
        onWait: async () =>
          report(
            await fs.stat(paths.partial).then(
              (s) => s.size,
              () => 0,
            ),
          ),
      });
      try {
        for (let attempt = 1; !(await exists(paths.blob)); attempt++) {
          try {
            await downloadBlob(endpoint, pinned, file, meta, paths, report);
          } catch (err) {
            // A broken or stalled transfer is retried from where it stopped; other errors are final.
            if (!(err instanceof HubNetworkError) || attempt >= MAX_ATTEMPTS || ctx.signal?.aborted) throw err;
          }
        }
      } finally {
        await release();
      }
    }
    await cache.linkSnapshot(commit, file, meta.etag, symlinks);
  };

  const indexMeta = await headFile(endpoint, pinned, MODEL_FILES.index, true);
  if (indexMeta) {
    // The index is small and needed to know the shards, so it is fetched during planning.
    await fetchOne(MODEL_FILES.index, indexMeta, () => undefined);
    const indexPath = cache.snapshotPath(commit, MODEL_FILES.index);
    let indexJson: unknown;
    try {
      indexJson = JSON.parse(await fs.readFile(indexPath, 'utf8'));
    } catch (err) {
      throw new HubError(`${MODEL_FILES.index} of ${ctx.repoId} is not valid JSON: ${(err as Error).message}`);
    }
    for (const shard of shardsOf(indexJson, `${MODEL_FILES.index} of ${ctx.repoId}`)) {
      plan.push({ file: shard, meta: (await headFile(endpoint, pinned, shard, false)) as FileMetadata });
    }
  } else {
    await cache.markMissing(commit, MODEL_FILES.index);
    plan.push({ file: MODEL_FILES.single, meta: (await headFile(endpoint, pinned, MODEL_FILES.single, false)) as FileMetadata });
  }

  const toFetch: typeof plan = [];
  for (const entry of plan) {
    if (await exists(cache.blobPath(entry.meta.etag))) await cache.linkSnapshot(commit, entry.file, entry.meta.etag, symlinks);
    else toFetch.push(entry);
  }
  const sizes = toFetch.map((e) => e.meta.size);
  const total = sizes.every((s) => s !== undefined) ? sizes.reduce<number>((a, s) => a + (s as number), 0) : undefined;
  let finished = 0;
  let lastOverall = -Infinity;
  for (const { file, meta } of toFetch) {
    let lastFile = -Infinity;
    let current = 0;
    const report = (n: number, force = false): void => {
      current = n;
      if (force || n - lastFile >= PROGRESS_STEP) {
        lastFile = n;
        onProgress({ file, downloadedBytes: n, totalBytes: meta.size, done: false });
      }
      if (force || finished + n - lastOverall >= PROGRESS_STEP) {
        lastOverall = finished + n;
        onProgress({ file: null, downloadedBytes: finished + n, totalBytes: total, done: false });
      }
    };
    await fetchOne(file, meta, report);
    const size = meta.size ?? current;
    finished += size;
    onProgress({ file, downloadedBytes: size, totalBytes: size, done: true });
  }
  onProgress({ file: null, downloadedBytes: finished, totalBytes: total ?? finished, done: true });
  return cache.snapshotDir(commit);
}
