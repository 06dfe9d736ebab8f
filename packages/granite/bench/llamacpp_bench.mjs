// llama.cpp through node-llama-cpp (what a Node user would pick instead): prefill and decode tok/s
// and peak RSS of one GGUF, measured like graniteflow's granite benchmark (prefill 128 and 512
// tokens with logits for the last one, then 16 decode steps after a 4-token prompt).
// usage: node llamacpp_bench.mjs MODEL.gguf [threads]   (run from a folder with node-llama-cpp 3.21.1,
// or from anywhere with `--import ./llamacpp_resolve.mjs` and GRANITEFLOW_LLAMACPP_DIR)
// The measuring method of the project's llama.cpp anchor, kept here verbatim so the benchmark that
// runs it is self-contained; change both together.
import fs from 'node:fs';
import { getLlama } from 'node-llama-cpp';

const [model, threadsArg] = process.argv.slice(2);
const threads = Number(threadsArg ?? 2);
const peakRss = () => Number(/VmHWM:\s+(\d+)/.exec(fs.readFileSync('/proc/self/status', 'utf8'))[1]) * 1024;

const llama = await getLlama({ gpu: false, build: 'never', maxThreads: threads, logLevel: 'error' });
const t0 = performance.now();
const m = await llama.loadModel({ modelPath: model, useMmap: false });
const loadSeconds = (performance.now() - t0) / 1000;
const ids = (n) => Array.from({ length: n }, (_, i) => ((i * 7919) % 100000) + 1);
const out = { model, threads, loadSeconds, prefill: {}, decode: 0, peakRssGiB: 0 };
for (const n of [128, 512]) {
  const ctx = await m.createContext({ contextSize: 1024, batchSize: 512, threads });
  const seq = ctx.getSequence();
  await seq.evaluateWithoutGeneratingNewTokens(ids(4)); // warm-up
  seq.eraseContextTokenRanges([{ start: 0, end: 4 }]);
  const s = performance.now();
  await seq.evaluateWithoutGeneratingNewTokens(ids(n));
  out.prefill[n] = n / ((performance.now() - s) / 1000);
  await ctx.dispose();
}
{
  const ctx = await m.createContext({ contextSize: 1024, batchSize: 512, threads });
  const seq = ctx.getSequence();
  const steps = 16;
  let k = 0,
    s = 0;
  for await (const _ of seq.evaluate(ids(4), { temperature: 0 })) {
    if (k === 0) s = performance.now(); // first sampled token ends the prompt's prefill
    if (++k > steps) break;
  }
  out.decode = steps / ((performance.now() - s) / 1000);
  await ctx.dispose();
}
out.peakRssGiB = peakRss() / 2 ** 30;
console.log(JSON.stringify(out));
await m.dispose();
process.exit(0);
