// llama.cpp through node-llama-cpp on one long prompt, measured as bench/long_context.ts measures
// graniteflow: the prompt evaluated in batches of 512 (seconds), then 16 decode steps (tok/s),
// peak RSS. usage (from a folder with node-llama-cpp 3.21.1, or with --import ./llamacpp_resolve.mjs):
//   node llamacpp_long.mjs MODEL.gguf LENGTH [threads]
import fs from 'node:fs';
import { getLlama } from 'node-llama-cpp';

const [model, lengthArg, threadsArg] = process.argv.slice(2);
const length = Number(lengthArg);
const threads = Number(threadsArg ?? 2);
const steps = 16;
const peakRss = () => Number(/VmHWM:\s+(\d+)/.exec(fs.readFileSync('/proc/self/status', 'utf8'))[1]) * 1024;

const llama = await getLlama({ gpu: false, build: 'never', maxThreads: threads, logLevel: 'error' });
const m = await llama.loadModel({ modelPath: model, useMmap: true });
const ids = Array.from({ length }, (_, i) => ((i * 7919) % 100000) + 1);
const ctx = await m.createContext({ contextSize: length + steps + 16, batchSize: 512, threads });
const seq = ctx.getSequence();
const start = performance.now();
await seq.evaluateWithoutGeneratingNewTokens(ids.slice(0, length - 1));
let k = 0;
let decodeStart = 0;
for await (const _ of seq.evaluate(ids.slice(length - 1), { temperature: 0 })) {
  if (k === 0) decodeStart = performance.now(); // the first sampled token ends the prompt
  if (++k > steps) break;
}
const out = {
  length,
  threads,
  prefillSeconds: (decodeStart - start) / 1000,
  decodeTokensPerSecond: steps / ((performance.now() - decodeStart) / 1000),
  peakRssGiB: peakRss() / 2 ** 30,
};
console.log(JSON.stringify(out));
await ctx.dispose();
await m.dispose();
process.exit(0);
