// `node --import ./llamacpp_resolve.mjs script.mjs`: resolves the bare specifier `node-llama-cpp`
// from the folder it is installed in (GRANITEFLOW_LLAMACPP_DIR, else the working directory) rather
// than from the script's own folder, so scripts kept in the repository run against a scratch
// install of node-llama-cpp without it being a dependency.
import { register } from 'node:module';
import { pathToFileURL } from 'node:url';
import { isMainThread } from 'node:worker_threads';

let parentURL;

export function initialize(data) {
  parentURL = data.parentURL;
}

export async function resolve(specifier, context, next) {
  if (specifier === 'node-llama-cpp' || specifier.startsWith('node-llama-cpp/')) {
    return next(specifier, { ...context, parentURL });
  }
  return next(specifier, context);
}

if (isMainThread) {
  const dir = process.env.GRANITEFLOW_LLAMACPP_DIR || process.cwd();
  register(import.meta.url, { data: { parentURL: pathToFileURL(`${dir.replace(/\/$/, '')}/`).href } });
}
