/**
 * What is fuzzed, from which seeds, and what counts as a crash. A target turns a seeded stream into
 * one input file and checks it through the real entry point (the file is written to disk and opened
 * as a user's file would be). Success and the target's named error classes (whose message must name
 * the file) are the only acceptable outcomes: any other throw, or a broken invariant on success, is
 * a crash. Hangs and running out of memory are caught by the parent process (run.ts).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { SafetensorsError, SafetensorsFile } from '@graniteflow/core';
import {
  CONFIG_LIMITS,
  ConfigError,
  countParameters,
  estimateMemory,
  configJson,
  familyOf,
  formatBytes,
  ModelFileError,
  preset,
  PRESET_NAMES,
  readModelConfig,
  UnsupportedModelError,
} from '@graniteflow/granite';
import { Pairs, pairsOf, RAW_NUMBERS, RawJson, toJsonText } from './json_text';
import { damageBytes, hostileValue } from './mutate';
import type { Random } from './random';

export const REPO = path.resolve(__dirname, '..');
const GOLDEN = path.join(REPO, 'fixtures', 'golden');

/** An outcome the oracle does not accept: the input is a crash. */
export class OracleViolation extends Error {
  override name = 'OracleViolation';
}

export type Outcome = { kind: 'accepted' } | { kind: 'rejected'; errorClass: string; message: string };

export interface FuzzTarget {
  name: string;
  /** The error classes a rejected input may throw, for the report. */
  rejections: string;
  /** The file name inputs are written to (inside a scratch folder). */
  fileName: string;
  generate(rng: Random): Buffer;
  /** Runs one input written at `file`; throws for a crash. */
  check(file: string): Outcome;
}

/** A rejection is acceptable when it is one of `classes` and its message names the file. */
function rejection(err: unknown, classes: (abstract new (...args: never[]) => Error)[], file: string): Outcome {
  if (!classes.some((c) => err instanceof c)) throw err;
  const message = (err as Error).message;
  if (!message.includes(file)) throw new OracleViolation(`${(err as Error).name} does not name the file: ${message}`);
  if (message.includes('\n')) throw new OracleViolation(`${(err as Error).name} is not one paragraph: ${JSON.stringify(message)}`);
  return { kind: 'rejected', errorClass: (err as Error).name, message };
}

function requireFinite(what: string, n: number): void {
  if (!Number.isFinite(n) || n < 0) throw new OracleViolation(`${what} is ${n}, not a finite size`);
  const text = formatBytes(n);
  if (/Infinity|NaN|undefined/.test(text)) throw new OracleViolation(`formatBytes(${n}) printed "${text}"`);
}

// ---------------------------------------------------------------------------------------------
// safetensors: SafetensorsFile.open, then every tensor read and decoded.

interface SafetensorsSeed {
  entries: [string, unknown][];
  data: Buffer;
}

/** A deliberately plain parse of a valid file (the seeds), independent of the reader under test. */
function splitSafetensors(file: Buffer): SafetensorsSeed {
  const n = Number(file.readBigUInt64LE(0));
  const header = JSON.parse(file.subarray(8, 8 + n).toString('utf8')) as Record<string, unknown>;
  return { entries: Object.entries(header), data: file.subarray(8 + n) };
}

/** The first `count` tensors of a seed, laid out again contiguously: small seeds run fast. */
function reduceSeed(seed: SafetensorsSeed, count: number): SafetensorsSeed {
  const tensors = seed.entries
    .filter(([k]) => k !== '__metadata__')
    .map(([k, v]) => [k, v as { dtype: string; shape: number[]; data_offsets: [number, number] }] as const)
    .sort((a, b) => a[1].data_offsets[0] - b[1].data_offsets[0])
    .slice(0, count);
  const entries: [string, unknown][] = seed.entries.filter(([k]) => k === '__metadata__');
  const chunks: Buffer[] = [];
  let offset = 0;
  for (const [name, info] of tensors) {
    const bytes = seed.data.subarray(info.data_offsets[0], info.data_offsets[1]);
    entries.push([name, { ...info, data_offsets: [offset, offset + bytes.length] }]);
    chunks.push(bytes);
    offset += bytes.length;
  }
  return { entries, data: Buffer.concat(chunks) };
}

function assembleSafetensors(headerText: string, data: Buffer, pad: boolean): Buffer {
  let header = Buffer.from(headerText, 'utf8');
  if (pad && header.length % 8 !== 0) header = Buffer.concat([header, Buffer.alloc(8 - (header.length % 8), 0x20)]);
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(header.length));
  return Buffer.concat([length, header, data]);
}

let safetensorsSeeds: SafetensorsSeed[] | undefined;
function loadSafetensorsSeeds(): SafetensorsSeed[] {
  if (safetensorsSeeds) return safetensorsSeeds;
  const files = fs
    .readdirSync(GOLDEN)
    .flatMap((d) =>
      fs.statSync(path.join(GOLDEN, d)).isDirectory() ? fs.readdirSync(path.join(GOLDEN, d)).map((f) => path.join(GOLDEN, d, f)) : [],
    )
    .filter((f) => f.endsWith('.safetensors'))
    .sort();
  const full = files.map((f) => splitSafetensors(fs.readFileSync(f)));
  safetensorsSeeds = [...full, ...full.flatMap((s) => [reduceSeed(s, 1), reduceSeed(s, 3), reduceSeed(s, 8)])];
  return safetensorsSeeds;
}

const DTYPES = ['F32', 'F16', 'BF16', 'I64', 'I32', 'I16', 'I8', 'U8', 'BOOL', 'F64', 'U64', 'F8_E4M3', 'f32', '', 'F32 '];

function cloneJson<T>(v: T): T {
  return JSON.parse(JSON.stringify(v)) as T;
}

/** One structural change to the header entries (tensor names, dtypes, shapes, offsets, metadata). */
function mutateSafetensorsHeader(rng: Random, entries: [string, unknown][], dataSize: number): void {
  const tensorIndexes = entries.map((e, i) => (e[0] === '__metadata__' ? -1 : i)).filter((i) => i >= 0);
  const anyTensor = () => (tensorIndexes.length ? entries[rng.pick(tensorIndexes)] : undefined);
  const record = (e: [string, unknown] | undefined) =>
    e && e[1] !== null && typeof e[1] === 'object' && !Array.isArray(e[1]) ? (e[1] as Record<string, unknown>) : undefined;
  switch (rng.below(12)) {
    case 0: {
      // Swap the offsets of two tensors.
      const a = record(anyTensor());
      const b = record(anyTensor());
      if (a && b) [a.data_offsets, b.data_offsets] = [b.data_offsets, a.data_offsets];
      return;
    }
    case 1: {
      const t = record(anyTensor());
      if (!t || !Array.isArray(t.data_offsets)) return;
      const i = rng.below(2);
      const v = t.data_offsets[i] as number;
      t.data_offsets[i] = rng.pick<unknown>([
        v + 1,
        v - 1,
        v + 2,
        v - 4,
        v + 8,
        dataSize,
        dataSize + 1,
        0,
        -1,
        2 ** 53,
        2 ** 64,
        1.5,
        '8',
        null,
        new RawJson(rng.pick(RAW_NUMBERS)),
        hostileValue(rng),
      ]);
      return;
    }
    case 2: {
      // Shift one tensor's whole span: a gap, an overlap, or past the end.
      const t = record(anyTensor());
      if (!t || !Array.isArray(t.data_offsets)) return;
      const d = rng.pick([-8, -4, -2, -1, 1, 2, 4, 8, 1024]);
      t.data_offsets = (t.data_offsets as number[]).map((x) => x + d);
      return;
    }
    case 3: {
      const t = record(anyTensor());
      if (!t) return;
      const shape = Array.isArray(t.shape) ? [...(t.shape as unknown[])] : [];
      switch (rng.below(6)) {
        case 0:
          shape.push(rng.pick([0, 1, 2, 2 ** 31, 2 ** 53]));
          break;
        case 1:
          shape.pop();
          break;
        case 2:
          if (shape.length)
            shape[rng.below(shape.length)] = rng.pick<unknown>([
              0,
              -1,
              1.5,
              '2',
              null,
              2 ** 31,
              2 ** 53,
              2 ** 53 + 2,
              1e300,
              new RawJson('1e400'),
            ]);
          break;
        case 3:
          shape.reverse();
          break;
        case 4:
          t.shape = rng.pick<unknown>([Array(rng.pick([64, 10_000])).fill(1), [], {}, 'x', null, [[2, 2]]]);
          return;
        default:
          if (shape.length) shape[rng.below(shape.length)] = (shape[rng.below(shape.length)] as number) * 2;
      }
      t.shape = shape;
      return;
    }
    case 4: {
      const t = record(anyTensor());
      if (t) t.dtype = rng.chance(0.8) ? rng.pick(DTYPES) : hostileValue(rng);
      return;
    }
    case 5: {
      // The same name twice, either copy first.
      const e = anyTensor();
      if (!e) return;
      const copy: [string, unknown] = [e[0], cloneJson(e[1])];
      entries.splice(rng.below(entries.length + 1), 0, copy);
      return;
    }
    case 6:
      if (tensorIndexes.length) entries.splice(rng.pick(tensorIndexes), 1);
      return;
    case 7: {
      const e = anyTensor();
      if (e)
        e[0] = rng.pick([
          '',
          '__metadata__',
          '__proto__',
          'constructor',
          'a'.repeat(10_000),
          '\u0000',
          '\ud800',
          'model.layers.0.mamba.A_log',
          entries[rng.below(entries.length)][0],
        ]);
      return;
    }
    case 8: {
      const meta = entries.find((e) => e[0] === '__metadata__');
      const value = rng.chance(0.5) ? new Pairs([[rng.pick(['format', 'x', '']), hostileValue(rng)]]) : hostileValue(rng);
      if (meta) meta[1] = value;
      else entries.unshift(['__metadata__', value]);
      return;
    }
    case 9: {
      const e = anyTensor();
      if (e)
        e[1] = rng.chance(0.5)
          ? hostileValue(rng)
          : new Pairs([...pairsOf(e[1]).entries, [rng.pick(['dtype', 'shape', 'data_offsets', 'extra']), hostileValue(rng)]]);
      return;
    }
    case 10: {
      // A tensor whose bytes match its shape at a fresh offset: the layout is right, the coverage is not.
      const t = record(anyTensor());
      if (!t || !Array.isArray(t.shape)) return;
      const bytes = (t.shape as number[]).reduce((a, b) => a * b, 1) * 4;
      entries.push([`extra.${rng.below(100)}`, { dtype: 'F32', shape: t.shape, data_offsets: [dataSize, dataSize + bytes] }]);
      return;
    }
    default:
      entries.length = 0;
      if (rng.chance(0.5)) entries.push(['__metadata__', { format: 'pt' }]);
  }
}

export const safetensorsTarget: FuzzTarget = {
  name: 'safetensors',
  rejections: 'SafetensorsError',
  fileName: 'model.safetensors',
  generate(rng) {
    const seed = rng.pick(loadSafetensorsSeeds());
    const entries = cloneJson(seed.entries);
    for (let n = rng.between(0, 3); n > 0; n--) mutateSafetensorsHeader(rng, entries, seed.data.length);
    let headerText = rng.chance(0.05) ? toJsonText(hostileValue(rng)) : toJsonText(new Pairs(entries));
    if (rng.chance(0.1)) headerText = headerText.replace(/,/g, ',\n');
    let file = assembleSafetensors(headerText, seed.data, rng.chance(0.8));
    if (rng.chance(0.25)) {
      // The header length field.
      const length = file.readBigUInt64LE(0);
      const changed = rng.pick([
        length + 1n,
        length - 1n,
        length + 8n,
        length - 8n,
        0n,
        2n ** 63n,
        2n ** 64n - 1n,
        BigInt(file.length),
        BigInt(file.length - 8),
        BigInt(rng.uint32()),
      ]);
      file.writeBigUInt64LE(BigInt.asUintN(64, changed));
    }
    if (rng.chance(0.3)) {
      const headerEnd = 8 + Number(Buffer.from(file).readBigUInt64LE(0) & 0xffffffffn);
      file = damageBytes(rng, file, rng.chance(0.7) ? { start: 0, end: Math.min(file.length, headerEnd) } : undefined);
    }
    return file;
  },
  check(file) {
    let reader: SafetensorsFile;
    try {
      reader = SafetensorsFile.open(file);
    } catch (err) {
      return rejection(err, [SafetensorsError], file);
    }
    try {
      const lengthField = Buffer.alloc(8);
      const fd = fs.openSync(file, 'r');
      fs.readSync(fd, lengthField, 0, 8, 0);
      fs.closeSync(fd);
      const headerLength = Number(lengthField.readBigUInt64LE(0));
      const dataSize = fs.statSync(file).size - 8 - headerLength;
      const infos = reader.names().map((n) => reader.info(n));
      // Accepted files have every data byte in exactly one tensor.
      let covered = 0;
      for (const info of infos) {
        if (info.offset !== 8 + headerLength + covered)
          throw new OracleViolation(`tensor "${info.name}" starts at ${info.offset}, expected ${8 + headerLength + covered}`);
        covered += info.byteLength;
      }
      if (covered !== dataSize) throw new OracleViolation(`the tensors cover ${covered} of ${dataSize} data bytes`);
      for (const info of infos) {
        let decoded;
        try {
          decoded = reader.read(info.name);
        } catch (err) {
          rejection(err, [SafetensorsError], file);
          continue;
        }
        const elements = info.shape.reduce((a, b) => a * b, 1);
        if (decoded.data.length !== elements)
          throw new OracleViolation(`tensor "${info.name}" decoded ${decoded.data.length} values for shape [${info.shape}]`);
      }
    } finally {
      reader.close();
    }
    return { kind: 'accepted' };
  },
};

// ---------------------------------------------------------------------------------------------
// config: readModelConfig (config.json as fromPretrained and inspect read it), then sizing.

const CONFIG_KEYS = [
  ...Object.keys(CONFIG_LIMITS),
  'model_type',
  'layer_types',
  'layers_block_type',
  'attention_bias',
  'attention_multiplier',
  'position_embedding_type',
  'rope_theta',
  'rope_parameters',
  'hidden_act',
  'rms_norm_eps',
  'embedding_multiplier',
  'residual_multiplier',
  'logits_scaling',
  'router_aux_loss_coef',
  'initializer_range',
  'mamba_conv_bias',
  'mamba_proj_bias',
  'time_step_limit',
  'tie_word_embeddings',
  'bos_token_id',
  'eos_token_id',
  'pad_token_id',
  'torch_dtype',
  'dtype',
];

let configSeeds: Record<string, unknown>[] | undefined;
function loadConfigSeeds(): Record<string, unknown>[] {
  if (configSeeds) return configSeeds;
  const golden = fs
    .readdirSync(GOLDEN)
    .map((d) => path.join(GOLDEN, d, 'config.json'))
    .filter((f) => fs.existsSync(f))
    .sort()
    .map((f) => JSON.parse(fs.readFileSync(f, 'utf8')) as Record<string, unknown>);
  const presets = PRESET_NAMES.map((n) => JSON.parse(JSON.stringify(preset(n))) as Record<string, unknown>);
  // The dense family (`granite`), at the sizes of a Granite 3.x 8B config.json.
  const dense = {
    model_type: 'granite',
    vocab_size: 49159,
    hidden_size: 4096,
    intermediate_size: 12800,
    num_hidden_layers: 40,
    num_attention_heads: 32,
    num_key_value_heads: 8,
    max_position_embeddings: 131072,
    attention_multiplier: 0.0078125,
    embedding_multiplier: 12,
    residual_multiplier: 0.22,
    logits_scaling: 16,
    rope_theta: 10_000_000,
    rope_scaling: null,
    tie_word_embeddings: true,
  };
  configSeeds = [...golden, ...presets, dense];
  return configSeeds;
}

/** A value near the limit of a size field, or a hostile one. */
function configValue(rng: Random, key: string, obj: Record<string, unknown>): unknown {
  const limit = (CONFIG_LIMITS as Record<string, number>)[key];
  if (limit !== undefined && rng.chance(0.4)) return rng.pick([limit, limit + 1, limit - 1, limit * 2, 0, 1, 1e6]);
  if (rng.chance(0.15)) return obj[rng.pick(Object.keys(obj))]; // another field's value
  return hostileValue(rng);
}

function mutateConfig(rng: Random, entries: [string, unknown][]): void {
  const obj = Object.fromEntries(entries);
  const set = (key: string, value: unknown) => {
    const e = entries.find(([k]) => k === key);
    if (e) e[1] = value;
    else entries.push([key, value]);
  };
  switch (rng.below(8)) {
    case 0:
    case 1: {
      const key = rng.pick(CONFIG_KEYS);
      set(key, configValue(rng, key, obj));
      return;
    }
    case 2: {
      const i = rng.below(entries.length);
      if (entries.length) entries.splice(i, 1);
      return;
    }
    case 3: {
      // A repeated key, which JSON.parse resolves to the last.
      const key = rng.pick(CONFIG_KEYS);
      entries.splice(rng.below(entries.length + 1), 0, [key, configValue(rng, key, obj)]);
      return;
    }
    case 4: {
      const types = Array.isArray(obj.layer_types) ? [...(obj.layer_types as unknown[])] : [];
      switch (rng.below(5)) {
        case 0:
          types.push(rng.pick(['mamba', 'attention']));
          break;
        case 1:
          types.pop();
          break;
        case 2:
          if (types.length) types[rng.below(types.length)] = rng.pick<unknown>(['conv', '', null, 1, 'Mamba', ['mamba']]);
          break;
        case 3: {
          const n = rng.pick([0, 1, 4096, 4097, 100_000]);
          set('num_hidden_layers', n);
          set(
            'layer_types',
            Array.from({ length: Math.min(n, 100_000) }, (_, i) => (i % 6 === 5 ? 'attention' : 'mamba')),
          );
          return;
        }
        default:
          set(
            rng.pick(['layer_types', 'layers_block_type']),
            rng.chance(0.5) ? types.map((t) => (t === 'mamba' ? 'attention' : 'mamba')) : hostileValue(rng),
          );
          return;
      }
      set('layer_types', types);
      return;
    }
    case 5: {
      // Keep the mixer consistent while making it large: mamba_d_head "auto", heads that divide.
      set('mamba_d_head', 'auto');
      const hidden = rng.pick([64, 4096, 65_536]);
      set('hidden_size', hidden);
      set('mamba_expand', rng.pick([1, 2, 64]));
      set('mamba_n_heads', rng.pick([1, 8, 64, 16_384]));
      set('num_attention_heads', rng.pick([1, 4, 64]));
      set('num_key_value_heads', rng.pick([1, 2, 4]));
      return;
    }
    case 6:
      set(
        rng.pick(['time_step_limit', 'rope_parameters', 'eos_token_id']),
        rng.pick<unknown>([
          [0, 'inf'],
          [1, 0],
          [null, null],
          ['Infinity', 1],
          [0],
          [new RawJson('1e400'), new RawJson('-1e400')],
          { rope_theta: rng.pick<unknown>([0, -1, new RawJson('1e400'), 'x', null]) },
          [1, -1],
          [2 ** 53, 1.5],
          hostileValue(rng),
        ]),
      );
      return;
    default:
      // Rarely: most inputs should get past the model_type check to the fields behind it.
      if (rng.chance(0.3))
        set(
          'model_type',
          rng.pick<unknown>([
            'granitemoehybrid',
            'granite',
            'llama',
            '',
            null,
            1,
            'granitemoehybrid ',
            '__proto__',
            'toString',
            hostileValue(rng),
          ]),
        );
  }
}

export const configTarget: FuzzTarget = {
  name: 'config',
  rejections: 'ConfigError, ModelFileError, UnsupportedModelError',
  fileName: 'config.json',
  generate(rng) {
    const seed = rng.pick(loadConfigSeeds());
    const entries = Object.entries(cloneJson(seed));
    for (let n = rng.between(1, 4); n > 0; n--) mutateConfig(rng, entries);
    let json = toJsonText(new Pairs(entries));
    // Real config.json files are pretty-printed: errors quoting them must stay on one line.
    if (rng.chance(0.3)) json = json.replace(/,/g, ',\n  ');
    const text = Buffer.from(json, 'utf8');
    return rng.chance(0.1) ? damageBytes(rng, text) : text;
  },
  check(file) {
    let cfg;
    try {
      cfg = readModelConfig(path.dirname(file)).config;
    } catch (err) {
      return rejection(err, [ConfigError, ModelFileError, UnsupportedModelError], file);
    }
    const counts = countParameters(cfg);
    if (!(counts.total >= counts.active && counts.active >= 0))
      throw new OracleViolation(`parameters ${counts.total} total, ${counts.active} active`);
    for (const options of [{}, { contextLength: 2 ** 30, batchSize: 2 ** 20 }]) {
      const e = estimateMemory(cfg, options);
      for (const key of ['weightBytes', 'stateBytesPerSequence', 'kvBytesPerToken', 'totalBytes'] as const) requireFinite(key, e[key]);
    }
    // The formula must agree with the model it sizes (building the tree allocates no tensor).
    const family = familyOf(cfg);
    const model = family.createModel(cfg);
    const built = model.parameterCount();
    model.dispose();
    const exact = counts.total <= Number.MAX_SAFE_INTEGER;
    if (exact ? built !== counts.total : Math.abs(built - counts.total) > counts.total * 1e-12) {
      throw new OracleViolation(`countParameters says ${counts.total}, the module tree has ${built}`);
    }
    // What writeRandomCheckpoint writes for a config must read back as the same config.
    const again = family.parseConfig(JSON.parse(JSON.stringify(configJson(cfg))), file);
    if (JSON.stringify(again) !== JSON.stringify(cfg)) {
      throw new OracleViolation(`the config does not survive a write and read: ${JSON.stringify(configJson(cfg)).slice(0, 300)}`);
    }
    return { kind: 'accepted' };
  },
};

export const TARGETS: Record<string, FuzzTarget> = { safetensors: safetensorsTarget, config: configTarget };
