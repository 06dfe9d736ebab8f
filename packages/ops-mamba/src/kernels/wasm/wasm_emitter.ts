/**
 * A minimal WebAssembly binary writer: just what the SIMD kernels of this package need (one
 * imported memory, i32/f32/v128 locals, loops, loads, stores and a handful of arithmetic ops).
 * Emitting the bytes from TypeScript keeps the kernels free of build steps and dependencies, and
 * lets a generator unroll loops by a tile size chosen at run time.
 */

export const I32 = 0x7f;
export const F32 = 0x7d;
export const V128 = 0x7b;
export type ValType = typeof I32 | typeof F32 | typeof V128;

/** Unsigned LEB128. */
function uleb(n: number): number[] {
  const out: number[] = [];
  do {
    let byte = n & 0x7f;
    n >>>= 7;
    if (n !== 0) byte |= 0x80;
    out.push(byte);
  } while (n !== 0);
  return out;
}

/** Signed LEB128 (32-bit). */
function sleb(n: number): number[] {
  const out: number[] = [];
  for (;;) {
    const byte = n & 0x7f;
    n >>= 7;
    if ((n === 0 && (byte & 0x40) === 0) || (n === -1 && (byte & 0x40) !== 0)) {
      out.push(byte);
      return out;
    }
    out.push(byte | 0x80);
  }
}

function name(s: string): number[] {
  const bytes = [...Buffer.from(s, 'utf8')];
  return [...uleb(bytes.length), ...bytes];
}

function vec(items: number[][]): number[] {
  return [...uleb(items.length), ...items.flat()];
}

function section(id: number, body: number[]): number[] {
  return [id, ...uleb(body.length), ...body];
}

/** A function body under construction: locals and an instruction stream. */
export class FunctionBuilder {
  readonly code: number[] = [];
  private readonly locals: ValType[] = [];

  constructor(
    readonly params: ValType[],
    readonly results: ValType[] = [],
  ) {}

  /** Declares a local; returns its index. */
  local(type: ValType): number {
    this.locals.push(type);
    return this.params.length + this.locals.length - 1;
  }

  private op(...bytes: number[]): this {
    this.code.push(...bytes);
    return this;
  }

  private simd(opcode: number, ...imm: number[]): this {
    return this.op(0xfd, ...uleb(opcode), ...imm);
  }

  get(i: number) { return this.op(0x20, ...uleb(i)); }
  set(i: number) { return this.op(0x21, ...uleb(i)); }
  tee(i: number) { return this.op(0x22, ...uleb(i)); }
  i32Const(v: number) { return this.op(0x41, ...sleb(v)); }
  f32Const(v: number) {
    const b = new Uint8Array(new Float32Array([v]).buffer);
    return this.op(0x43, ...b);
  }
  i32Add() { return this.op(0x6a); }
  i32Sub() { return this.op(0x6b); }
  i32Mul() { return this.op(0x6c); }
  i32DivU() { return this.op(0x6e); }
  i32Eqz() { return this.op(0x45); }
  i32Ne() { return this.op(0x47); }
  i32LtU() { return this.op(0x49); }
  f32Add() { return this.op(0x92); }
  f32Mul() { return this.op(0x94); }
  select() { return this.op(0x1b); }
  /** f32.load with a static byte offset (align hint 4 bytes). */
  f32Load(offset = 0) { return this.op(0x2a, 2, ...uleb(offset)); }
  f32Store(offset = 0) { return this.op(0x38, 2, ...uleb(offset)); }
  v128Load(offset = 0) { return this.simd(0x00, 2, ...uleb(offset)); }
  v128Store(offset = 0) { return this.simd(0x0b, 2, ...uleb(offset)); }
  f32x4Splat() { return this.simd(0x13); }
  f32x4ExtractLane(lane: number) { return this.simd(0x1f, lane); }
  f32x4Add() { return this.simd(0xe4); }
  f32x4Mul() { return this.simd(0xe6); }
  /** `loop` … `end`, with `br_if 0` inside continuing the loop. */
  loop(body: () => void) {
    this.op(0x03, 0x40);
    body();
    return this.op(0x0b);
  }
  brIf(depth: number) { return this.op(0x0d, ...uleb(depth)); }

  /** The encoded body (locals + code + end). */
  encode(): number[] {
    const groups: number[][] = [];
    for (const t of this.locals) groups.push([1, t]);
    const body = [...vec(groups), ...this.code, 0x0b];
    return [...uleb(body.length), ...body];
  }
}

/** Encodes a module importing `env.memory` and exporting `functions` by name. */
export function encodeModule(functions: { name: string; fn: FunctionBuilder }[]): Uint8Array {
  const types = functions.map(({ fn }) => [0x60, ...vec(fn.params.map((p) => [p])), ...vec(fn.results.map((r) => [r]))]);
  const imports = vec([[...name('env'), ...name('memory'), 0x02, 0x00, ...uleb(0)]]);
  const funcs = vec(functions.map((_, i) => uleb(i)));
  const exports = vec(functions.map(({ name: n }, i) => [...name(n), 0x00, ...uleb(i)]));
  const code = vec(functions.map(({ fn }) => fn.encode()));
  return new Uint8Array([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    ...section(1, vec(types)),
    ...section(2, imports),
    ...section(3, funcs),
    ...section(7, exports),
    ...section(10, code),
  ]);
}
