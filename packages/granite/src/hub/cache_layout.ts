/**
 * The Hugging Face hub cache, as `huggingface_hub` lays it out, so models downloaded by Python
 * tools are reused and ours are visible to them:
 *
 * ```
 * <cache>/models--<org>--<name>/
 *   blobs/<etag>                      file contents, named by ETag (sha256 for LFS files)
 *   snapshots/<commit>/<file>         relative symlink → ../../blobs/<etag>
 *   refs/<revision>                   the commit hash a branch or tag pointed to
 *   .no_exist/<commit>/<file>         empty marker: the file does not exist at that commit
 * <cache>/.locks/models--<org>--<name>/<etag>.lock   held while one process downloads that blob
 * ```
 */
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { HubError } from './errors';
import { assertRepoId, assertRevision, insideCache, isBlobName, isCommitHash, repoFileProblem } from './names';

/** Environment variables the cache location follows (`process.env` by default). */
export type Env = Readonly<Record<string, string | undefined>>;

function expandHome(p: string): string {
  return p === '~' || p.startsWith('~/') ? path.join(os.homedir(), p.slice(1)) : p;
}

/**
 * The hub cache directory: `cacheDir`, else `HF_HUB_CACHE`, else `HF_HOME/hub`, else
 * `$XDG_CACHE_HOME/huggingface/hub`, else `~/.cache/huggingface/hub` (huggingface_hub's order).
 */
export function resolveCacheDir(cacheDir?: string, env: Env = process.env): string {
  if (cacheDir) return path.resolve(expandHome(cacheDir));
  if (env.HF_HUB_CACHE) return path.resolve(expandHome(env.HF_HUB_CACHE));
  if (env.HF_HOME) return path.resolve(expandHome(env.HF_HOME), 'hub');
  if (env.XDG_CACHE_HOME) return path.resolve(expandHome(env.XDG_CACHE_HOME), 'huggingface', 'hub');
  return path.join(os.homedir(), '.cache', 'huggingface', 'hub');
}

/** `models--org--name`: the folder of one model repo in the cache. */
export function repoFolderName(repoId: string): string {
  return `models--${repoId.split('/').join('--')}`;
}

/**
 * Paths inside one repo's cache folder. Each method checks the names it is given (repo id,
 * revision, commit hash, ETag, file path) and makes its path with `insideCache`, so no name,
 * whoever chose it, leads outside the cache.
 */
export class RepoCache {
  /** The cache directory, resolved. */
  readonly cacheDir: string;
  readonly root: string;

  constructor(
    cacheDir: string,
    readonly repoId: string,
  ) {
    assertRepoId(repoId);
    this.cacheDir = path.resolve(cacheDir);
    this.root = insideCache(this.cacheDir, repoFolderName(repoId));
  }

  blobPath(etag: string): string {
    return insideCache(this.cacheDir, this.root, 'blobs', checkedBlobName(etag));
  }

  /** Where a blob is written until it is complete (kept between runs, to resume). */
  incompletePath(etag: string): string {
    return insideCache(this.cacheDir, this.root, 'blobs', `${checkedBlobName(etag)}.incomplete`);
  }

  /** huggingface_hub's lock file for a blob: `<cache>/.locks/models--org--name/<etag>.lock`. */
  lockPath(etag: string): string {
    return insideCache(this.cacheDir, '.locks', repoFolderName(this.repoId), `${checkedBlobName(etag)}.lock`);
  }

  snapshotDir(commit: string): string {
    return insideCache(this.cacheDir, this.root, 'snapshots', checkedCommit(commit));
  }

  snapshotPath(commit: string, file: string): string {
    return insideCache(this.cacheDir, this.snapshotDir(commit), ...checkedFile(file).split('/'));
  }

  noExistPath(commit: string, file: string): string {
    return insideCache(this.cacheDir, this.root, '.no_exist', checkedCommit(commit), ...checkedFile(file).split('/'));
  }

  refPath(revision: string): string {
    assertRevision(revision);
    return insideCache(this.cacheDir, this.root, 'refs', ...revision.split('/'));
  }

  /** The commit a revision resolves to from the cache alone, or undefined (also for a ref file not holding a commit hash). */
  async readRef(revision: string): Promise<string | undefined> {
    if (isCommitHash(revision)) return revision;
    const file = this.refPath(revision);
    try {
      const commit = (await fs.readFile(file, 'utf8')).trim();
      return isCommitHash(commit) ? commit : undefined;
    } catch {
      return undefined;
    }
  }

  async writeRef(revision: string, commit: string): Promise<void> {
    if (isCommitHash(revision) || revision === commit) return;
    checkedCommit(commit);
    const file = this.refPath(revision);
    if ((await this.readRef(revision)) === commit) return; // also spares a read-only cache a write
    await fs.mkdir(path.dirname(file), { recursive: true });
    await replaceAtomically(this.cacheDir, file, (temp) => fs.writeFile(temp, commit));
  }

  /** Records that `file` does not exist at `commit`, so later runs need not ask again. */
  async markMissing(commit: string, file: string): Promise<void> {
    const marker = this.noExistPath(commit, file);
    await fs.mkdir(path.dirname(marker), { recursive: true });
    await fs.writeFile(marker, '');
  }

  async isMarkedMissing(commit: string, file: string): Promise<boolean> {
    return exists(this.noExistPath(commit, file));
  }

  /**
   * Points `snapshots/<commit>/<file>` at `blobs/<etag>` with a relative symlink, like
   * huggingface_hub; copies the blob instead when symlinks are unavailable or not wanted. The
   * link or copy is made under a temporary name and renamed into place, so a concurrent download
   * of the same repo never sees it missing, and nothing is ever written through an old link.
   */
  async linkSnapshot(commit: string, file: string, etag: string, useSymlinks = true): Promise<void> {
    const target = this.snapshotPath(commit, file);
    const blob = this.blobPath(etag);
    const relative = path.relative(path.dirname(target), blob);
    await fs.mkdir(path.dirname(target), { recursive: true });
    if (useSymlinks) {
      if ((await fs.readlink(target).catch(() => undefined)) === relative) return;
      try {
        await replaceAtomically(this.cacheDir, target, (temp) => fs.symlink(relative, temp));
        return;
      } catch {
        // Fall through: e.g. Windows without developer mode, or a filesystem without symlinks.
      }
    }
    await replaceAtomically(this.cacheDir, target, (temp) => fs.copyFile(blob, temp));
  }
}

/** Makes `file` by `write` under a temporary name next to it, then renames it into place. */
async function replaceAtomically(cacheDir: string, file: string, write: (temp: string) => Promise<void>): Promise<void> {
  const temp = insideCache(cacheDir, `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  try {
    await write(temp);
    await fs.rename(temp, file);
  } finally {
    await fs.rm(temp, { force: true });
  }
}

function checkedBlobName(etag: string): string {
  if (!isBlobName(etag)) throw new HubError(`Refusing blob name ${JSON.stringify(etag)}: expected a 40- or 64-hex-digit sha.`);
  return etag;
}

function checkedCommit(commit: string): string {
  if (!isCommitHash(commit)) throw new HubError(`Refusing commit hash ${JSON.stringify(commit)}: expected 40 hex digits.`);
  return commit;
}

function checkedFile(file: string): string {
  const problem = repoFileProblem(file);
  if (problem) throw new HubError(`Refusing repo file name ${JSON.stringify(file)}: ${problem}.`);
  return file;
}

/** Whether a path exists (following symlinks: a dangling link does not count). */
export async function exists(p: string): Promise<boolean> {
  try {
    await fs.stat(p);
    return true;
  } catch {
    return false;
  }
}
