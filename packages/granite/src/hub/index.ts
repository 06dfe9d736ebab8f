// Public surface of the hub folder: model folder resolution over the Hugging Face cache.
export {
  resolveModelFolder,
  MODEL_FILES,
  hubOfflineMode,
  type DownloadProgress,
  type ResolveModelFolderOptions,
} from './resolve_model_folder';
export { resolveCacheDir, repoFolderName, RepoCache } from './cache_layout';
export {
  HubError,
  RepoNotFoundError,
  HubAuthError,
  HubNetworkError,
  HubResponseError,
  OfflineCacheMissError,
  IntegrityError,
} from './errors';
