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
 * ```
 */
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

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

/** Whether `revision` is a full commit hash (then no ref is needed). */
export function isCommitHash(revision: string): boolean {
  return /^[0-9a-f]{40}$/.test(revision);
}

/** Paths inside one repo's cache folder. */
export class RepoCache {
  readonly root: string;

  constructor(cacheDir: string, readonly repoId: string) {
    this.root = path.join(cacheDir, repoFolderName(repoId));
  }

  blobPath(etag: string): string {
    return path.join(this.root, 'blobs', etag);
  }

  snapshotDir(commit: string): string {
    return path.join(this.root, 'snapshots', commit);
  }

  snapshotPath(commit: string, file: string): string {
    return path.join(this.snapshotDir(commit), ...file.split('/'));
  }

  noExistPath(commit: string, file: string): string {
    return path.join(this.root, '.no_exist', commit, ...file.split('/'));
  }

  refPath(revision: string): string {
    return path.join(this.root, 'refs', ...revision.split('/'));
  }

  /** The commit a revision resolves to from the cache alone, or undefined. */
  async readRef(revision: string): Promise<string | undefined> {
    if (isCommitHash(revision)) return revision;
    try {
      const commit = (await fs.readFile(this.refPath(revision), 'utf8')).trim();
      return commit || undefined;
    } catch {
      return undefined;
    }
  }

  async writeRef(revision: string, commit: string): Promise<void> {
    if (isCommitHash(revision) || revision === commit) return;
    const file = this.refPath(revision);
    await fs.mkdir(path.dirname(file), { recursive: true });
    await fs.writeFile(file, commit);
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
   * huggingface_hub; copies the blob instead when symlinks are unavailable or not wanted.
   */
  async linkSnapshot(commit: string, file: string, etag: string, useSymlinks = true): Promise<void> {
    const target = this.snapshotPath(commit, file);
    const blob = this.blobPath(etag);
    await fs.mkdir(path.dirname(target), { recursive: true });
    await fs.rm(target, { force: true });
    if (useSymlinks) {
      try {
        await fs.symlink(path.relative(path.dirname(target), blob), target);
        return;
      } catch {
        // Fall through: e.g. Windows without developer mode, or a filesystem without symlinks.
      }
    }
    await fs.copyFile(blob, target);
  }
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
