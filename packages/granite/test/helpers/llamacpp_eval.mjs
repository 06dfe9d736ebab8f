// Runs token id sequences through a GGUF in llama.cpp (node-llama-cpp) and prints, as one JSON
// line, the next-token log-probabilities at every prompt position and during greedy decoding.
// node-llama-cpp exposes probabilities, not logits: log p = logit − logsumexp(logits), so the
// caller compares against the log-softmax of its own logits.
// usage: node --import ../../bench/llamacpp_resolve.mjs llamacpp_eval.mjs MODEL.gguf REQUEST.json
//   REQUEST.json: {"prompts": [[ids...], ...], "decodeSteps": 8, "texts": ["..."], "threads": 2}
//   texts are tokenized by the GGUF's own tokenizer, special tokens parsed as tokens.
import fs from 'node:fs';
import { getLlama } from 'node-llama-cpp';

const [model, requestFile] = process.argv.slice(2);
const { prompts = [], decodeSteps = 0, texts = [], threads = 2 } = JSON.parse(fs.readFileSync(requestFile, 'utf8'));

const llama = await getLlama({ gpu: false, build: 'never', maxThreads: threads, logLevel: 'error' });
const m = await llama.loadModel({ modelPath: model, useMmap: false });

/** Dense log-probabilities over the vocabulary from node-llama-cpp's sorted probability map. */
function logProbs(probabilities, n) {
  const out = new Array(n).fill(null);
  for (const [token, p] of probabilities) out[token] = Math.log(p);
  return out;
}

const results = [];
for (const ids of prompts) {
  // Float32 throughout: llama.cpp's default F16 KV cache rounds keys and values, and its CPU flash
  // attention rounds in F16 even over an F32 cache (≈5e-4 on these logits, against 4e-6 without).
  const ctx = await m.createContext({
    contextSize: 256,
    batchSize: Math.max(ids.length, 1),
    threads,
    flashAttention: false,
    experimentalKvCacheKeyType: 'F32',
    experimentalKvCacheValueType: 'F32',
  });
  const seq = ctx.getSequence();
  const greedy = { temperature: 0 };
  const outs = await seq.controlledEvaluate(ids.map((t) => [t, { generateNext: { probabilities: true, token: true, options: greedy } }]));
  const nVocab = Math.max(...[...outs[0].next.probabilities.keys()]) + 1;
  const promptLogProbs = outs.map((o) => logProbs(o.next.probabilities, nVocab));
  const tokens = [outs[outs.length - 1].next.token];
  const decodeLogProbs = [promptLogProbs[promptLogProbs.length - 1]];
  for (let s = 1; s < decodeSteps; s++) {
    const [o] = await seq.controlledEvaluate([
      [tokens[tokens.length - 1], { generateNext: { probabilities: true, token: true, options: greedy } }],
    ]);
    tokens.push(o.next.token);
    decodeLogProbs.push(logProbs(o.next.probabilities, nVocab));
  }
  results.push({ logProbs: promptLogProbs, greedy: tokens, decodeLogProbs, vocabSeen: outs[0].next.probabilities.size });
  await ctx.dispose();
}
const tokenized = texts.map((text) => [...m.tokenize(text, true)]);
await m.dispose();
// Exit only once the output is flushed: writes to a pipe are asynchronous, and node-llama-cpp
// keeps the process alive otherwise.
process.stdout.write(`${JSON.stringify({ model, results, tokenized })}\n`, () => process.exit(0));
