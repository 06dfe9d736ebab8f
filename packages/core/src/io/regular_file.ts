import * as fs from 'node:fs';

/**
 * A path that cannot be read as a regular file: missing, a directory, a FIFO, a socket, a device,
 * a symbolic link loop or a link to nothing. `detail` says what it is and what was expected,
 * without the path, so loaders can wrap it in their own error class.
 */
export class FileKindError extends Error {
  override name = 'FileKindError';

  constructor(
    readonly file: string,
    readonly detail: string,
    /** The errno code behind it, or `'ENOTREG'` when the path opened but is not a regular file. */
    readonly code: string,
  ) {
    super(`${file} ${detail}`);
  }

  /** True when nothing is at the path (not even a broken link). */
  get missing(): boolean {
    return this.code === 'ENOENT';
  }
}

// Opening a FIFO for reading blocks until a writer appears; O_NONBLOCK makes open() return at once
// so fstat can refuse it. It changes nothing for regular files. (Windows has no O_NONBLOCK.)
const OPEN_FLAGS = fs.constants.O_RDONLY | (fs.constants.O_NONBLOCK ?? 0);

const EXPECTED = 'expected a regular file';

function kindOf(stat: fs.Stats): string {
  if (stat.isDirectory()) return 'a directory';
  if (stat.isFIFO()) return 'a FIFO (named pipe)';
  if (stat.isSocket()) return 'a socket';
  if (stat.isCharacterDevice()) return 'a character device';
  if (stat.isBlockDevice()) return 'a block device';
  return 'not a regular file';
}

/** What is at `file` when it is not a regular file, else null. Follows symbolic links. */
function notRegular(stat: fs.Stats): string | null {
  return stat.isFile() ? null : `is ${kindOf(stat)}, ${EXPECTED}`;
}

function openFailure(file: string, err: NodeJS.ErrnoException): FileKindError {
  const code = err.code ?? 'EIO';
  if (code === 'ELOOP') return new FileKindError(file, `is a symbolic link loop (ELOOP), ${EXPECTED}`, code);
  if (code === 'ENOENT') {
    const link = fs.lstatSync(file, { throwIfNoEntry: false });
    if (link?.isSymbolicLink()) {
      let target = '?';
      try {
        target = fs.readlinkSync(file);
      } catch {
        // The link vanished between the two calls; "?" says as much.
      }
      return new FileKindError(file, `is a symbolic link to "${target}", which does not exist`, 'EDANGLING');
    }
    return new FileKindError(file, 'does not exist', code);
  }
  if (code === 'EACCES' || code === 'EPERM') return new FileKindError(file, 'cannot be read: permission denied', code);
  // open() of a socket fails with ENXIO; say what the path is when stat can tell.
  const stat = fs.statSync(file, { throwIfNoEntry: false });
  const kind = stat && notRegular(stat);
  if (kind) return new FileKindError(file, kind, code);
  return new FileKindError(file, `cannot be opened: ${err.message}`, code);
}

/**
 * True when something is at `file`, even a symbolic link that does not resolve (`fs.existsSync`
 * says false for those, which would report a broken link as a missing file).
 */
export function pathEntryExists(file: string): boolean {
  return fs.lstatSync(file, { throwIfNoEntry: false }) !== undefined;
}

/**
 * Opens `file` for reading and returns its descriptor, refusing without blocking anything but a
 * regular file (following symbolic links). Throws {@link FileKindError}.
 */
export function openRegularFile(file: string): number {
  let fd: number;
  try {
    fd = fs.openSync(file, OPEN_FLAGS);
  } catch (err) {
    throw openFailure(file, err as NodeJS.ErrnoException);
  }
  const kind = notRegular(fs.fstatSync(fd));
  if (kind) {
    fs.closeSync(fd);
    throw new FileKindError(file, kind, 'ENOTREG');
  }
  return fd;
}

/** The whole of a regular file (see {@link openRegularFile}). Throws {@link FileKindError}. */
export function readRegularFile(file: string): Buffer {
  const fd = openRegularFile(file);
  try {
    return fs.readFileSync(fd);
  } catch (err) {
    throw new FileKindError(file, `cannot be read: ${(err as Error).message}`, (err as NodeJS.ErrnoException).code ?? 'EIO');
  } finally {
    fs.closeSync(fd);
  }
}

/** {@link readRegularFile} without blocking the event loop on the read. */
export async function readRegularFileAsync(file: string): Promise<Buffer> {
  let handle: fs.promises.FileHandle;
  try {
    handle = await fs.promises.open(file, OPEN_FLAGS);
  } catch (err) {
    throw openFailure(file, err as NodeJS.ErrnoException);
  }
  try {
    const kind = notRegular(await handle.stat());
    if (kind) throw new FileKindError(file, kind, 'ENOTREG');
    try {
      return await handle.readFile();
    } catch (err) {
      throw new FileKindError(file, `cannot be read: ${(err as Error).message}`, (err as NodeJS.ErrnoException).code ?? 'EIO');
    }
  } finally {
    await handle.close();
  }
}
