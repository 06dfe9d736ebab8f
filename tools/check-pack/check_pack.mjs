#!/usr/bin/env node
// Checks what `npm pack` would put in each publishable workspace's tarball (npm run test:pack).
//
//   node tools/check-pack/check_pack.mjs [--no-prepack] [--expected FILE] [--only NAME[,NAME]]
//
// For every workspace of the root package.json that is not private:
//   - runs its prepack / prepare scripts as `npm pack` would (native: prebuildify), unless --no-prepack;
//   - lists the tarball with `npm pack --dry-run --json --ignore-scripts --workspace NAME`;
//   - requires the globs of expected.json's `must` (and every path package.json's main, types, bin,
//     exports and sideEffects point at), refuses those of `mustNot`, and caps the unpacked size;
//   - requires every `//# sourceMappingURL=` of a shipped .js / .d.ts to name a shipped .map, and every
//     `sources` entry of a shipped .map to be shipped;
//   - requires every bare specifier that shipped dist files require / import (package names, not
//     node: builtins or relative paths) to be declared in dependencies, peerDependencies or
//     optionalDependencies.
// Prints a table, then each failure; exits 1 when anything failed. The packages must be built first
// (npm run build; npm test builds them too).
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import { builtinModules } from 'node:module';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..', '..');

function parseArgs(argv) {
  const options = { prepack: true, expected: path.join(here, 'expected.json'), only: null };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--no-prepack') options.prepack = false;
    else if (arg === '--expected') options.expected = path.resolve(argv[++i] ?? '');
    else if (arg === '--only') options.only = new Set((argv[++i] ?? '').split(',').filter(Boolean));
    else if (arg === '--help' || arg === '-h') {
      console.log('usage: node tools/check-pack/check_pack.mjs [--no-prepack] [--expected FILE] [--only NAME[,NAME]]');
      process.exit(0);
    } else {
      console.error(`check_pack: unknown argument ${arg}`);
      process.exit(2);
    }
  }
  return options;
}

/** A glob (`*` within a segment, `**` any segments, `?` one character) as a RegExp over posix paths. */
export function globToRegExp(glob) {
  let re = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i];
    if (c === '*') {
      if (glob[i + 1] === '*') {
        // `**/` matches zero or more whole segments; a trailing `**` matches the rest.
        if (glob[i + 2] === '/') {
          re += '(?:[^/]+/)*';
          i += 2;
        } else {
          re += '.*';
          i += 1;
        }
      } else re += '[^/]*';
    } else if (c === '?') re += '[^/]';
    else re += c.replace(/[.+^${}()|[\]\\]/g, '\\$&');
  }
  return new RegExp(`^${re}$`);
}

const BUILTINS = new Set(builtinModules.flatMap((m) => [m, m.split('/')[0]]));

/** The package a bare specifier names (`@scope/name/deep` → `@scope/name`), or null when it is not bare. */
export function packageOfSpecifier(specifier) {
  if (specifier.startsWith('.') || specifier.startsWith('/') || specifier.startsWith('#')) return null;
  if (/^[a-z][a-z0-9+.-]*:/i.test(specifier)) return null; // node:, data:, file:, https:
  const parts = specifier.split('/');
  const name = specifier.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0];
  if (BUILTINS.has(name)) return null;
  return name;
}

const JS_SPECIFIER_PATTERNS = [
  /\brequire(?:\.resolve)?\(\s*(['"])([^'"\n]+)\1\s*[,)]/g,
  /\bimport\(\s*(['"])([^'"\n]+)\1\s*[,)]/g,
  /^\s*(?:import|export)\s[^'";]*?\bfrom\s*(['"])([^'"\n]+)\1/gm,
  /^\s*import\s*(['"])([^'"\n]+)\1/gm,
];
const DTS_REFERENCE = /^\/\/\/\s*<reference\s+types\s*=\s*(['"])([^'"]+)\1/gm;

/** Bare specifiers a shipped file uses: `[specifier, line]`. */
function specifiersOf(text, isDeclaration) {
  const found = [];
  const lineOf = (index) => text.slice(0, index).split('\n').length;
  for (const pattern of JS_SPECIFIER_PATTERNS) {
    for (const m of text.matchAll(pattern)) found.push([m[2], lineOf(m.index)]);
  }
  if (isDeclaration) for (const m of text.matchAll(DTS_REFERENCE)) found.push([`@types/${m[2]}`, lineOf(m.index), m[2]]);
  return found;
}

function npm(args, { json = false, inherit = false } = {}) {
  const out = execFileSync('npm', args, {
    cwd: root,
    encoding: 'utf8',
    maxBuffer: 256 * 1024 * 1024,
    // Scripts' output goes to our stderr so that stdout stays the JSON npm prints.
    stdio: inherit ? ['ignore', process.stderr, process.stderr] : ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, npm_config_fund: 'false', npm_config_audit: 'false', npm_config_update_notifier: 'false' },
  });
  return json ? JSON.parse(out) : out;
}

function workspaces() {
  const rootPkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8'));
  return (rootPkg.workspaces ?? []).map((dir) => {
    const pkg = JSON.parse(fs.readFileSync(path.join(root, dir, 'package.json'), 'utf8'));
    return { dir, pkg };
  });
}

/** Every file path package.json points at: main, types, bin, exports (every condition), sideEffects. */
function pointedAt(pkg) {
  const paths = [];
  const add = (p, field) => {
    if (typeof p !== 'string' || p.includes('*')) return;
    paths.push([path.posix.normalize(p.replace(/^\.\//, '')), field]);
  };
  add(pkg.main, 'main');
  add(pkg.types ?? pkg.typings, 'types');
  if (typeof pkg.bin === 'string') add(pkg.bin, 'bin');
  else for (const [name, p] of Object.entries(pkg.bin ?? {})) add(p, `bin.${name}`);
  const walk = (node, at) => {
    if (typeof node === 'string') add(node, at);
    else if (Array.isArray(node)) node.forEach((n, i) => walk(n, `${at}[${i}]`));
    else if (node && typeof node === 'object') for (const [k, v] of Object.entries(node)) walk(v, `${at}[${JSON.stringify(k)}]`);
  };
  walk(pkg.exports, 'exports');
  if (Array.isArray(pkg.sideEffects)) pkg.sideEffects.forEach((p, i) => add(p, `sideEffects[${i}]`));
  return paths;
}

function checkPackage({ dir, pkg }, expected, options) {
  const failures = [];
  const fail = (check, message) => failures.push({ check, message });
  const name = pkg.name;
  const own = expected.packages[name];
  const rules = {
    must: [...(expected.all.must ?? []), ...(own.must ?? [])],
    mustNot: [...(expected.all.mustNot ?? []), ...(own.mustNot ?? [])],
    maxUnpackedBytes: own.maxUnpackedBytes ?? expected.all.maxUnpackedBytes ?? Infinity,
  };

  if (options.prepack) {
    for (const script of ['prepack', 'prepare']) {
      if (pkg.scripts?.[script]) {
        process.stderr.write(`check_pack: ${name}: npm run ${script}\n`);
        npm(['run', script, '--workspace', name], { inherit: true });
      }
    }
  }
  const [report] = npm(['pack', '--dry-run', '--json', '--ignore-scripts', '--workspace', name], { json: true });
  const files = report.files.map((f) => f.path);
  const shipped = new Set(files);
  const read = (p) => fs.readFileSync(path.join(root, dir, p), 'utf8');
  const counts = { files: files.length, size: report.size, unpackedSize: report.unpackedSize, maps: 0, specifiers: 0 };

  // Lists.
  for (const glob of rules.must) {
    const re = globToRegExp(glob);
    if (!files.some((f) => re.test(f))) fail('must', `nothing matches "${glob}" (required by expected.json)`);
  }
  for (const [p, field] of pointedAt(pkg)) {
    if (!shipped.has(p)) fail('must', `package.json ${field} points at ${p}, which is not in the tarball`);
  }
  for (const [binName, p] of Object.entries(typeof pkg.bin === 'string' ? { [name]: pkg.bin } : (pkg.bin ?? {}))) {
    const file = path.posix.normalize(p.replace(/^\.\//, ''));
    if (shipped.has(file) && !read(file).startsWith('#!')) fail('must', `bin ${binName} (${file}) has no #! line`);
  }
  for (const glob of rules.mustNot) {
    const re = globToRegExp(glob);
    const bad = files.filter((f) => re.test(f));
    if (bad.length > 0) {
      const shown = bad.slice(0, 5).join(', ') + (bad.length > 5 ? `, … (${bad.length} files)` : '');
      fail('mustNot', `"${glob}" must not be shipped: ${shown}`);
    }
  }
  if (report.unpackedSize > rules.maxUnpackedBytes) {
    fail('size', `unpacked size ${report.unpackedSize} bytes is over the ${rules.maxUnpackedBytes} bytes expected.json allows`);
  }

  // Source maps.
  for (const file of files) {
    if (/\.(?:c|m)?js$|\.d\.(?:c|m)?ts$/.test(file)) {
      const text = read(file);
      const m = /\/\/# sourceMappingURL=(\S+)\s*$/.exec(text);
      if (m && !m[1].startsWith('data:')) {
        const map = path.posix.normalize(path.posix.join(path.posix.dirname(file), decodeURIComponent(m[1])));
        if (!shipped.has(map)) fail('sourcemap', `${file} names source map ${m[1]}, which is not in the tarball`);
      }
    }
    if (file.endsWith('.map')) {
      counts.maps++;
      let map;
      try {
        map = JSON.parse(read(file));
      } catch (err) {
        fail('sourcemap', `${file} is not valid JSON: ${err.message}`);
        continue;
      }
      for (const source of map.sources ?? []) {
        if (/^[a-z][a-z0-9+.-]*:/i.test(source)) {
          fail('sourcemap', `${file} lists source ${source}, a URL rather than a shipped file`);
          continue;
        }
        const resolved = path.posix.normalize(path.posix.join(path.posix.dirname(file), map.sourceRoot ?? '', source));
        if (resolved.startsWith('../')) fail('sourcemap', `${file} lists source ${source}, outside the package`);
        else if (!shipped.has(resolved)) fail('sourcemap', `${file} lists source ${source} (${resolved}), which is not in the tarball`);
      }
    }
  }

  // Bare specifiers of shipped dist files.
  const declared = new Set([
    ...Object.keys(pkg.dependencies ?? {}),
    ...Object.keys(pkg.peerDependencies ?? {}),
    ...Object.keys(pkg.optionalDependencies ?? {}),
  ]);
  const undeclared = new Map();
  for (const file of files) {
    if (!file.startsWith('dist/') || !/\.(?:c|m)?js$|\.d\.(?:c|m)?ts$/.test(file)) continue;
    const isDeclaration = /\.d\.(?:c|m)?ts$/.test(file);
    for (const [specifier, line, typesName] of specifiersOf(read(file), isDeclaration)) {
      const needed = packageOfSpecifier(specifier);
      if (needed === null || needed === name) continue;
      counts.specifiers++;
      // `/// <reference types="x" />` is satisfied by x or @types/x.
      if (declared.has(needed) || (typesName !== undefined && declared.has(typesName))) continue;
      if (!undeclared.has(needed)) undeclared.set(needed, []);
      undeclared.get(needed).push(`${file}:${line} (${typesName !== undefined ? `reference types "${typesName}"` : `'${specifier}'`})`);
    }
  }
  for (const [needed, where] of undeclared) {
    const shown = where.slice(0, 3).join(', ') + (where.length > 3 ? `, … (${where.length} places)` : '');
    const kind = pkg.devDependencies?.[needed] ? 'only a devDependency' : 'not declared';
    fail('deps', `${needed} is ${kind} in ${dir}/package.json but shipped code uses it: ${shown}`);
  }

  return { name, dir, counts, failures };
}

function kib(n) {
  return `${(n / 1024).toFixed(1)} KiB`;
}

function printTable(rows) {
  const header = ['package', 'files', 'packed', 'unpacked', 'maps', 'imports', 'must', 'mustNot', 'size', 'sourcemap', 'deps', 'result'];
  const checks = ['must', 'mustNot', 'size', 'sourcemap', 'deps'];
  const body = rows.map((r) => [
    r.name,
    String(r.counts.files),
    kib(r.counts.size),
    kib(r.counts.unpackedSize),
    String(r.counts.maps),
    String(r.counts.specifiers),
    ...checks.map((c) => {
      const n = r.failures.filter((f) => f.check === c).length;
      return n === 0 ? 'ok' : `${n} FAIL`;
    }),
    r.failures.length === 0 ? 'PASS' : 'FAIL',
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((row) => row[i].length)));
  const line = (cells) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
  console.log(line(header));
  console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const row of body) console.log(line(row));
}

function main() {
  const options = parseArgs(process.argv.slice(2));
  const expected = JSON.parse(fs.readFileSync(options.expected, 'utf8'));
  const all = workspaces();
  const publishable = all.filter((w) => !w.pkg.private && (options.only === null || options.only.has(w.pkg.name)));
  const problems = [];
  for (const listed of Object.keys(expected.packages)) {
    if (!all.some((w) => w.pkg.name === listed && !w.pkg.private)) {
      problems.push(`expected.json lists ${listed}, which is not a publishable workspace: remove it or fix the name`);
    }
  }
  const rows = [];
  for (const w of publishable) {
    if (!expected.packages[w.pkg.name]) {
      problems.push(
        `${w.pkg.name} (${w.dir}) is publishable but has no entry in ${path.relative(root, options.expected)}: say what its tarball must hold`,
      );
      continue;
    }
    if (!fs.existsSync(path.join(root, w.dir, 'dist'))) {
      problems.push(`${w.pkg.name}: ${w.dir}/dist does not exist: build first (npm run build)`);
      continue;
    }
    rows.push(checkPackage(w, expected, options));
  }
  printTable(rows);
  const failures = rows.flatMap((r) => r.failures.map((f) => `${r.name} [${f.check}]: ${f.message}`));
  const all_ = [...problems, ...failures];
  if (all_.length > 0) {
    console.error(`\ncheck_pack: ${all_.length} problem${all_.length === 1 ? '' : 's'}:`);
    for (const p of all_) console.error(`  - ${p}`);
    process.exit(1);
  }
  console.log(`\ncheck_pack: ${rows.length} tarballs as expected`);
}

main();
