/**
 * Checks of every name that becomes part of a path in the hub cache. Repo ids and revisions come
 * from the user; ETags, commit hashes and file names come from the hub, which may be hostile or
 * broken: none of them may lead a write outside the cache.
 */
import * as path from 'node:path';
import { HubError } from './errors';

const COMMIT_HASH = /^[0-9a-f]{40}$/;
// A git blob id (sha1, for files stored in git) or a sha256 (for LFS files): what the hub's ETags are.
const BLOB_NAME = /^(?:[0-9a-f]{40}|[0-9a-f]{64})$/;
// huggingface_hub's REPO_ID_REGEX: an optional namespace, then a name of at most 96 characters,
// both made of word characters, "-" and ".", starting and ending with a word character.
const REPO_ID = /^(?:\w(?:[\w.-]*\w)?\/)?\w(?:[\w.-]{0,94}\w)?$/;

/** Whether `revision` is a full commit hash (then no ref is needed). */
export function isCommitHash(revision: string): boolean {
  return COMMIT_HASH.test(revision);
}

/** Whether `name` can name a blob: a 40- or 64-hex-digit sha. */
export function isBlobName(name: string): boolean {
  return BLOB_NAME.test(name);
}

/** Why `repoId` is not a hub repo id (huggingface_hub's rules), or undefined when it is one. */
export function repoIdProblem(repoId: string): string | undefined {
  if (!REPO_ID.test(repoId)) {
    return 'expected "name" or "org/name" made of letters, digits, "_", "-" and ".", each starting and ending with a letter or digit, the name at most 96 characters';
  }
  if (repoId.includes('--') || repoId.includes('..'))
    return 'it contains "--" or "..", which the hub forbids ("--" separates org and name in cache folder names)';
  if (repoId.endsWith('.git')) return 'it ends with ".git"';
  return undefined;
}

/** Throws a {@link HubError} naming the problem when `repoId` is not a hub repo id. */
export function assertRepoId(repoId: string): void {
  const problem = repoIdProblem(repoId);
  if (problem) throw new HubError(`"${repoId}" is not a valid hub repo id: ${problem}.`);
}

/**
 * Why `revision` is not a branch, tag or commit name, or undefined when it is one. The rules are
 * git's for ref names (git check-ref-format): a revision becomes a path under `refs/`, so it must
 * not climb out of it or name a hidden or temporary file.
 */
export function revisionProblem(revision: string): string | undefined {
  if (revision === '') return 'it is empty';
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what it rejects
  if (/[\u0000-\u0020\u007f~^:?*[\\]/.test(revision)) return 'it contains a space, a control character or one of ~ ^ : ? * [ \\';
  if (revision.includes('..')) return 'it contains ".."';
  if (revision.includes('@{') || revision === '@') return 'it contains "@{" or is "@"';
  if (revision.startsWith('/') || revision.endsWith('/') || revision.includes('//'))
    return 'it starts or ends with "/" or has an empty part between two "/"';
  if (revision.endsWith('.')) return 'it ends with "."';
  for (const part of revision.split('/')) {
    if (part.startsWith('.')) return `its part "${part}" starts with "."`;
    if (part.endsWith('.lock')) return `its part "${part}" ends with ".lock"`;
  }
  return undefined;
}

/** Throws a {@link HubError} naming the problem when `revision` is not a valid ref name or commit. */
export function assertRevision(revision: string): void {
  const problem = revisionProblem(revision);
  if (problem) throw new HubError(`Revision ${JSON.stringify(revision)} is not a valid branch, tag or commit name: ${problem}.`);
}

/**
 * Why `file` is not a file path inside a repo, or undefined when it is one: "/"-separated parts,
 * none empty, "." or "..", no backslash, no control character, not absolute.
 */
export function repoFileProblem(file: string): string | undefined {
  if (file === '') return 'it is empty';
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what it rejects
  if (/[\u0000-\u001f\u007f\\]/.test(file)) return 'it contains a backslash or a control character';
  if (file.startsWith('/') || path.isAbsolute(file)) return 'it is an absolute path';
  for (const part of file.split('/')) {
    if (part === '' || part === '.' || part === '..') return 'it has an empty, "." or ".." part';
  }
  return undefined;
}

/**
 * `parts` resolved under `cacheDir`, proven to stay strictly inside it; every path the hub code
 * writes (blobs, snapshots, refs, `.no_exist` markers, partial and temporary files, locks) is
 * made here. The check is on the resolved path, not on the real path: users do symlink parts of
 * their cache to other disks, and those links are theirs, not the hub's.
 */
export function insideCache(cacheDir: string, ...parts: string[]): string {
  const root = path.resolve(cacheDir);
  const resolved = path.resolve(root, ...parts);
  const relative = path.relative(root, resolved);
  if (relative === '' || relative === '..' || relative.startsWith(`..${path.sep}`) || path.isAbsolute(relative)) {
    throw new HubError(`Refusing to write ${resolved}: it is not inside the hub cache ${root}.`);
  }
  return resolved;
}
