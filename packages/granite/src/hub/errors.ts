/** Errors of hub resolution and download. Each names the repo, revision, file or URL involved. */

/** Base class of every hub error. */
export class HubError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'HubError';
  }
}

/** The repo, revision or a required file does not exist (HTTP 404). */
export class RepoNotFoundError extends HubError {
  constructor(message: string) {
    super(message);
    this.name = 'RepoNotFoundError';
  }
}

/** The hub refused access (HTTP 401/403): the repo is private or gated, or the token is wrong. */
export class HubAuthError extends HubError {
  constructor(message: string) {
    super(message);
    this.name = 'HubAuthError';
  }
}

/** The hub could not be reached, answered unexpectedly, or a transfer broke off. */
export class HubNetworkError extends HubError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'HubNetworkError';
  }
}

/**
 * The hub answered something that cannot be used safely: an ETag that is not a sha, a commit
 * hash that is not 40 hex digits, a file name that leaves the repo, a Content-Range that does
 * not continue the partial file. Names the URL or file and the header or field.
 */
export class HubResponseError extends HubError {
  constructor(message: string) {
    super(message);
    this.name = 'HubResponseError';
  }
}

/** Offline mode, and the cache does not hold what is needed. */
export class OfflineCacheMissError extends HubError {
  constructor(message: string) {
    super(message);
    this.name = 'OfflineCacheMissError';
  }
}

/** A downloaded file does not match its checksum (the sha256 ETag of LFS files). */
export class IntegrityError extends HubError {
  constructor(message: string) {
    super(message);
    this.name = 'IntegrityError';
  }
}
