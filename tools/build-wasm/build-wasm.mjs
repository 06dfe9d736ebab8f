// Compiles a package's AssemblyScript kernels, assembly/<family>.ts (one file per kernel family), to
// wasm/<family>.wasm, which @graniteflow/core's simd_module.ts loads (simdKernels / simdInstance).
// Run from the package's root (its `build:wasm` script): `node ../../tools/build-wasm/build-wasm.mjs`.
// Helpers every package's kernels share (horizontalSum, …) are in tools/build-wasm/assembly/, imported
// by relative path and inlined.
// The modules are instantiated against the tfjs wasm backend's own memory, so instantiating one
// must not write a byte of it: each built module is checked to import nothing but env.memory and to
// have no data segments and no start function.
import * as fs from 'node:fs';
import * as path from 'node:path';
import asc from 'assemblyscript/asc';

const root = process.cwd();
const sourceDir = path.join(root, 'assembly');
const outDir = path.join(root, 'wasm');

const ASC_OPTIONS = [
  '--runtime',
  'stub', // no garbage collector: the kernels allocate nothing
  '--importMemory', // env.memory: the tfjs heap
  '--enable',
  'simd',
  '-O3',
  '--noAssert',
  '--use',
  'abort=', // no abort import (it would need strings in the heap)
];

/** Section ids of a WebAssembly binary, in order. */
function sectionIds(bytes) {
  const ids = [];
  let at = 8; // magic + version
  while (at < bytes.length) {
    const id = bytes[at++];
    let size = 0;
    for (let shift = 0; ; shift += 7) {
      const b = bytes[at++];
      size |= (b & 0x7f) << shift;
      if ((b & 0x80) === 0) break;
    }
    ids.push(id);
    at += size;
  }
  return ids;
}

const START = 8,
  DATA = 11,
  DATA_COUNT = 12;

function check(file) {
  const bytes = fs.readFileSync(file);
  const imports = WebAssembly.Module.imports(new WebAssembly.Module(bytes));
  const problems = [];
  const foreign = imports.filter((i) => !(i.module === 'env' && i.name === 'memory' && i.kind === 'memory'));
  if (foreign.length > 0) problems.push(`imports ${foreign.map((i) => `${i.module}.${i.name}`).join(', ')} (only env.memory is allowed)`);
  if (!imports.some((i) => i.kind === 'memory')) problems.push('does not import its memory');
  const ids = sectionIds(bytes);
  if (ids.includes(DATA) || ids.includes(DATA_COUNT)) problems.push('has data segments (they would be written into the tfjs heap)');
  if (ids.includes(START)) problems.push('has a start function');
  return problems;
}

async function main() {
  const sources = fs
    .readdirSync(sourceDir)
    .filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts'))
    .sort();
  fs.mkdirSync(outDir, { recursive: true });
  for (const source of sources) {
    const family = source.slice(0, -3);
    const out = path.join(outDir, `${family}.wasm`);
    const { error, stderr } = await asc.main([path.join(sourceDir, source), '--outFile', out, ...ASC_OPTIONS]);
    if (error) {
      fs.rmSync(out, { force: true });
      console.error(stderr.toString());
      throw new Error(`asc could not compile ${path.relative(process.cwd(), path.join(sourceDir, source))}: ${error.message}`);
    }
    const problems = check(out);
    if (problems.length > 0) {
      fs.rmSync(out, { force: true });
      throw new Error(`wasm/${family}.wasm ${problems.join('; ')}.`);
    }
    console.log(`wasm/${family}.wasm (${fs.statSync(out).size} bytes)`);
  }
}

main().catch((err) => {
  console.error(err.message);
  process.exit(1);
});
