/** Mutations shared by the targets: hostile JSON values, and byte-level damage. */
import { Pairs, RAW_NUMBERS, RawJson } from './json_text';
import type { Random } from './random';

/** Numbers that sit on or just past limits: int32, 2^53, float range, the config limits. */
const EDGE_NUMBERS = [
  0,
  1,
  2,
  3,
  7,
  8,
  16,
  255,
  256,
  1023,
  1024,
  1025,
  4095,
  4096,
  4097,
  16_384,
  16_385,
  65_535,
  65_536,
  65_537,
  262_144,
  262_145,
  4_194_304,
  4_194_305,
  1e6,
  2 ** 30,
  2 ** 31 - 1,
  2 ** 31,
  2 ** 32,
  2 ** 32 + 1,
  2 ** 53 - 1,
  2 ** 53,
  2 ** 53 + 2,
  1e15,
  1e21,
  1e300,
  Number.MAX_VALUE,
  -1,
  -2,
  -(2 ** 31),
  -(2 ** 53),
  -1e300,
  0.5,
  1.5,
  1e-7,
  1e-300,
  5e-324,
];

const EDGE_STRINGS = [
  '',
  'auto',
  'mamba',
  'attention',
  'rope',
  'nope',
  'silu',
  'inf',
  'Infinity',
  'NaN',
  '1e9',
  '0',
  '-1',
  '__proto__',
  'constructor',
  '\u0000',
  '\ud800',
  '☃'.repeat(3),
];

/** A value a hostile or damaged JSON file could hold where a number, string or list belongs. */
export function hostileValue(rng: Random, depth = 0): unknown {
  switch (rng.below(depth > 1 ? 6 : 10)) {
    case 0:
    case 1:
      return rng.pick(EDGE_NUMBERS);
    case 2:
      return new RawJson(rng.pick(RAW_NUMBERS));
    case 3:
      return rng.chance(0.1) ? 'x'.repeat(rng.between(1000, 100_000)) : rng.pick(EDGE_STRINGS);
    case 4:
      return rng.pick([null, true, false]);
    case 5:
      return rng.between(-3, 5000);
    case 6:
      return Array.from({ length: rng.pick([0, 1, 2, 3, 6]) }, () => hostileValue(rng, depth + 1));
    case 7:
      return new Pairs(
        Array.from({ length: rng.below(3) }, () => [rng.pick(EDGE_STRINGS), hostileValue(rng, depth + 1)] as [string, unknown]),
      );
    case 8:
      return nested(rng);
    default:
      return Array(rng.pick([100, 5000, 200_000])).fill(rng.pick([1, 'mamba', 0, null]));
  }
}

/** Deeply nested lists or objects, which break recursive walkers. */
function nested(rng: Random): RawJson {
  const depth = rng.pick([50, 1000, 20_000]);
  return rng.chance(0.5)
    ? new RawJson('['.repeat(depth) + ']'.repeat(depth))
    : new RawJson(`${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}`);
}

/** Byte-level damage to a file: flips, overwrites, cuts, insertions, appended bytes. */
export function damageBytes(rng: Random, bytes: Buffer, focus?: { start: number; end: number }): Buffer {
  const lo = focus?.start ?? 0;
  const hi = Math.max(lo + 1, focus?.end ?? bytes.length);
  const at = () => Math.min(bytes.length, rng.between(lo, hi - 1));
  switch (rng.below(6)) {
    case 0: {
      const out = Buffer.from(bytes);
      for (let n = rng.between(1, 4); n > 0 && out.length > 0; n--) out[Math.min(out.length - 1, at())] ^= 1 << rng.below(8);
      return out;
    }
    case 1: {
      const out = Buffer.from(bytes);
      const token = Buffer.from(
        rng.pick(['{', '}', '[', ']', '"', ',', ':', '\\', '0', '-', 'e', ' ', '\n', '\t', '\u00ff', '\u0000']),
        'latin1',
      );
      token.copy(out, Math.min(out.length - token.length, at()));
      return out;
    }
    case 2:
      return bytes.subarray(0, at());
    case 3: {
      const i = at();
      return Buffer.concat([bytes.subarray(0, i), bytes.subarray(Math.min(bytes.length, i + rng.between(1, 64)))]);
    }
    case 4: {
      const i = at();
      const inserted = Buffer.alloc(rng.pick([1, 7, 8, 9, 64]), rng.pick([0, 0x20, 0x7b, 0xff]));
      return Buffer.concat([bytes.subarray(0, i), inserted, bytes.subarray(i)]);
    }
    default:
      return Buffer.concat([bytes, Buffer.alloc(rng.pick([1, 2, 4, 8, 4096]), rng.pick([0, 0x20, 0x41]))]);
  }
}
