import type { SsmScanDims } from '../src';
import { rng } from './reference';
import { atLevel, availableLevels, calls, native } from './setup';

/** Uniform values in [lo, hi), seeded. */
function uniform(n: number, seed: number, lo = -1, hi = 1): Float32Array {
  const next = rng(seed);
  return Float32Array.from({ length: n }, () => lo + (hi - lo) * next());
}

/** Largest |a − b| / (atol + rtol·|b|) over the elements; ≤ 1 passes. */
function worst(a: Float32Array, b: Float64Array | Float32Array, atol: number, rtol: number): number {
  let w = 0;
  for (let i = 0; i < a.length; i++) w = Math.max(w, Math.abs(a[i] - b[i]) / (atol + rtol * Math.abs(b[i])));
  return Number.isNaN(w) ? Infinity : w;
}

/** The recurrence in float64, written from the formula (model guide: The Mamba-2 mixer): the oracle. */
function scanReference(
  a: { [K in 'x' | 'dt' | 'A_log' | 'B' | 'C' | 'D' | 'dt_bias']: ArrayLike<number> } & { initialState?: ArrayLike<number> },
  { batch, seqLen: T, heads: H, headDim: P, groups: G, stateSize: N }: SsmScanDims,
  dtMin: number,
  dtMax: number,
) {
  const y = new Float64Array(batch * T * H * P);
  const state = Float64Array.from(a.initialState ?? new Float64Array(batch * H * P * N));
  for (let b = 0; b < batch; b++)
    for (let t = 0; t < T; t++)
      for (let h = 0; h < H; h++) {
        const v = a.dt[(b * T + t) * H + h] + a.dt_bias[h];
        const dt = Math.min(dtMax, Math.max(dtMin, v > 20 ? v : Math.log(1 + Math.exp(v))));
        const decay = Math.exp(-dt * Math.exp(a.A_log[h]));
        const g = Math.floor(h / (H / G));
        for (let p = 0; p < P; p++) {
          const xv = a.x[((b * T + t) * H + h) * P + p];
          let acc = 0;
          for (let n = 0; n < N; n++) {
            const si = ((b * H + h) * P + p) * N + n;
            const bn = (b * T + t) * G * N + g * N + n;
            state[si] = decay * state[si] + dt * xv * a.B[bn];
            acc += state[si] * a.C[bn];
          }
          y[((b * T + t) * H + h) * P + p] = acc + a.D[h] * xv;
        }
      }
  return { y, state };
}

function scanCase(dims: SsmScanDims, seed: number, withState: boolean) {
  const { batch, seqLen: T, heads: H, headDim: P, groups: G, stateSize: N } = dims;
  return {
    x: uniform(batch * T * H * P, seed),
    dt: uniform(batch * T * H, seed + 1, -3, 1),
    A_log: uniform(H, seed + 2, -1, 1.5),
    B: uniform(batch * T * G * N, seed + 3),
    C: uniform(batch * T * G * N, seed + 4),
    D: uniform(H, seed + 5),
    dt_bias: uniform(H, seed + 6, -1, 1),
    ...(withState ? { initialState: uniform(batch * H * P * N, seed + 7) } : {}),
  };
}

/* State sizes around the 16- and 32-lane SIMD steps and their masked tails; H-Micro's head shape. */
const SCANS: Array<[SsmScanDims, boolean]> = [
  [{ batch: 1, seqLen: 1, heads: 1, headDim: 1, groups: 1, stateSize: 1 }, false],
  [{ batch: 2, seqLen: 7, heads: 4, headDim: 3, groups: 2, stateSize: 37 }, true],
  [{ batch: 1, seqLen: 5, heads: 6, headDim: 5, groups: 3, stateSize: 16 }, false],
  [{ batch: 1, seqLen: 33, heads: 8, headDim: 8, groups: 1, stateSize: 128 }, true],
  [{ batch: 1, seqLen: 1, heads: 48, headDim: 64, groups: 1, stateSize: 128 }, true],
];

describe.each(availableLevels)('ssmScan at %s', (level) => {
  test('equals the float64 recurrence (with and without an initial state, 1 and 2 threads)', () => {
    const before = calls('ssmScan', level);
    for (const threads of [1, 2]) {
      for (const [dims, withState] of SCANS) {
        const inputs = scanCase(dims, dims.heads * 7 + dims.stateSize, withState);
        const y = new Float32Array(inputs.x.length);
        const finalState = new Float32Array(dims.batch * dims.heads * dims.headDim * dims.stateSize);
        atLevel(level, () => native.ssmScan(inputs, dims, 0.001, 0.5, { y, finalState }), threads);
        const ref = scanReference(inputs, dims, 0.001, 0.5);
        expect(worst(y, ref.y, 1e-5, 1e-4)).toBeLessThanOrEqual(1);
        expect(worst(finalState, ref.state, 1e-5, 1e-4)).toBeLessThanOrEqual(1);
      }
    }
    expect(calls('ssmScan', level)).toBe(before + 2 * SCANS.length);
    expect(atLevel(level, () => native.kernelLevel('ssmScan'))).toBe(level);
  });

  test('updates the state in place when finalState is initialState (a decode step)', () => {
    const dims = { batch: 1, seqLen: 1, heads: 4, headDim: 2, groups: 2, stateSize: 20 };
    const inputs = scanCase(dims, 5, true);
    const ref = scanReference(inputs, dims, 0, Infinity);
    const y = new Float32Array(inputs.x.length);
    atLevel(level, () => native.ssmScan(inputs, dims, 0, Infinity, { y, finalState: inputs.initialState! }));
    expect(worst(inputs.initialState!, ref.state, 1e-5, 1e-4)).toBeLessThanOrEqual(1);
    expect(worst(y, ref.y, 1e-5, 1e-4)).toBeLessThanOrEqual(1);
  });
});

describe('ssmScanGrad', () => {
  const GRADS = ['x', 'dt', 'A_log', 'B', 'C', 'D', 'dt_bias', 'initialState'] as const;

  /** L = Σ y·dy + Σ finalState·dFinal by the float64 recurrence, so dL/d(input) is the gradient. */
  function lossOf(
    inputs: Record<string, ArrayLike<number>>,
    dy: Float32Array,
    dFinal: Float32Array,
    dims: SsmScanDims,
    lo: number,
    hi: number,
  ): number {
    const { y, state } = scanReference(inputs as Parameters<typeof scanReference>[0], dims, lo, hi);
    let l = 0;
    for (let i = 0; i < y.length; i++) l += y[i] * dy[i];
    for (let i = 0; i < state.length; i++) l += state[i] * dFinal[i];
    return l;
  }

  test.each([
    [{ batch: 2, seqLen: 150, heads: 4, headDim: 3, groups: 2, stateSize: 5 }, true], // across 64-token checkpoints
    [{ batch: 3, seqLen: 9, heads: 6, headDim: 4, groups: 3, stateSize: 8 }, false],
    [{ batch: 1, seqLen: 70, heads: 2, headDim: 2, groups: 1, stateSize: 3 }, true],
  ] as [SsmScanDims, boolean][])(
    '%j (initial state %s): every gradient equals central differences of the float64 recurrence; 1 and 2 threads agree',
    (dims, withState) => {
      const { batch, seqLen: T, heads: H, headDim: P, stateSize: N } = dims;
      const inputs = scanCase(dims, 11, withState);
      const dy = uniform(batch * T * H * P, 21);
      const dFinal = uniform(batch * H * P * N, 22);
      const [lo, hi] = [0.001, 0.5]; // some dt clamped at 0.5: their gradient is zero
      const outFor = () =>
        Object.fromEntries(GRADS.map((k) => [k, new Float32Array(k === 'initialState' ? batch * H * P * N : inputs[k].length)])) as Record<
          (typeof GRADS)[number],
          Float32Array
        >;
      const before = calls('ssmScanGrad', 'scalar');
      const [one, two] = [1, 2].map((threads) => {
        const out = outFor();
        atLevel('scalar', () => native.ssmScanGrad(inputs, { dy, dFinalState: dFinal }, dims, lo, hi, out), threads);
        return out;
      });
      expect(calls('ssmScanGrad', 'scalar')).toBe(before + 2);
      for (const k of GRADS) expect([k, worst(two[k], one[k], 1e-6, 1e-5) <= 1]).toEqual([k, true]);
      // Central differences at a spread of elements of every input, in float64.
      const f64 = Object.fromEntries(Object.entries(inputs).map(([k, v]) => [k, Float64Array.from(v)])) as Record<string, Float64Array>;
      if (!withState) f64.initialState = new Float64Array(batch * H * P * N);
      for (const k of GRADS) {
        const v = f64[k];
        for (const at of [0, Math.floor(v.length / 3), Math.floor((2 * v.length) / 3), v.length - 1]) {
          const saved = v[at];
          const eps = 1e-4;
          v[at] = saved + eps;
          const up = lossOf(f64, dy, dFinal, dims, lo, hi);
          v[at] = saved - eps;
          const down = lossOf(f64, dy, dFinal, dims, lo, hi);
          v[at] = saved;
          const fd = (up - down) / (2 * eps);
          expect([k, at, Math.abs(two[k][at] - fd) <= 2e-3 + 2e-3 * Math.abs(fd)]).toEqual([k, at, true]);
        }
      }
    },
  );

  test('checks every array at the boundary, naming it', () => {
    const dims = { batch: 1, seqLen: 3, heads: 2, headDim: 2, groups: 1, stateSize: 4 };
    const inputs = scanCase(dims, 3, false);
    const ok = { dy: new Float32Array(12), dFinalState: new Float32Array(16) };
    const out = {
      x: new Float32Array(12),
      dt: new Float32Array(6),
      A_log: new Float32Array(2),
      B: new Float32Array(12),
      C: new Float32Array(12),
      D: new Float32Array(2),
      dt_bias: new Float32Array(2),
      initialState: new Float32Array(16),
    };
    expect(() => native.ssmScanGrad(inputs, { ...ok, dy: new Float32Array(11) }, dims, 0, 1, out)).toThrow(/ssmScanGrad: cotangents\.dy/);
    expect(() => native.ssmScanGrad(inputs, ok, dims, 0, 1, { ...out, B: new Float32Array(13) })).toThrow(/ssmScanGrad: out\.B/);
    expect(() => native.ssmScanGrad(inputs, ok, dims, 0, 1, { ...out, C: out.B })).toThrow(/dC must not share memory with dB/);
    expect(() => native.ssmScanGrad(inputs, ok, { ...dims, groups: 3 }, 0, 1, out)).toThrow(/groups must be positive and divide/);
  });
});

describe('causalConv1d', () => {
  function convReference(
    x: Float32Array,
    w: Float32Array,
    bias: Float32Array | undefined,
    state: Float32Array | undefined,
    batch: number,
    T: number,
    C: number,
    K: number,
    silu: boolean,
  ) {
    const S = K - 1;
    const u = (b: number, r: number, c: number) => (r < S ? (state ? state[(b * S + r) * C + c] : 0) : x[(b * T + r - S) * C + c]);
    const y = new Float64Array(batch * T * C),
      ns = new Float64Array(batch * S * C);
    for (let b = 0; b < batch; b++)
      for (let c = 0; c < C; c++) {
        for (let t = 0; t < T; t++) {
          let v = bias ? bias[c] : 0;
          for (let k = 0; k < K; k++) v += w[c * K + k] * u(b, t + k, c);
          y[(b * T + t) * C + c] = silu ? v / (1 + Math.exp(-v)) : v;
        }
        for (let i = 0; i < S; i++) ns[(b * S + i) * C + c] = u(b, T + i, c);
      }
    return { y, ns };
  }

  test.each([
    [1, 1, 5, 4, true, true, true],
    [2, 2, 37, 4, false, true, false], // fewer tokens than the state holds
    [2, 9, 33, 3, true, false, true],
    [1, 64, 300, 4, true, true, true],
    [1, 3, 8, 1, false, false, false], // K = 1: no state
  ])('batch %i, T %i, C %i, K %i (bias %s, state %s, silu %s): equals the float64 conv', (batch, T, C, K, withBias, withState, silu) => {
    const x = uniform(batch * T * C, 1),
      w = uniform(C * K, 2);
    const bias = withBias ? uniform(C, 3) : undefined;
    const convState = withState ? uniform(batch * (K - 1) * C, 4) : undefined;
    const y = new Float32Array(x.length),
      newState = new Float32Array(batch * (K - 1) * C);
    const before = calls('causalConv1d', 'scalar');
    native.causalConv1d({ x, weight: w, bias, convState }, { batch, seqLen: T, channels: C, kernelSize: K }, silu ? 'silu' : 'none', {
      y,
      newState,
    });
    expect(calls('causalConv1d', 'scalar')).toBe(before + 1);
    const ref = convReference(x, w, bias, convState, batch, T, C, K, silu);
    expect(worst(y, ref.y, 1e-6, 1e-5)).toBeLessThanOrEqual(1);
    expect(Array.from(newState)).toEqual(Array.from(Float32Array.from(ref.ns)));
  });
});

describe('gatedRmsNorm', () => {
  test.each([
    [1, 8, 8],
    [3, 64, 16],
    [7, 3072, 3072],
  ])('%i rows of %i in groups of %i: equals the float64 norm', (rows, dim, groupSize) => {
    const y = uniform(rows * dim, 1, -3, 3),
      z = uniform(rows * dim, 2, -4, 4),
      w = uniform(dim, 3);
    const out = new Float32Array(rows * dim);
    const before = calls('gatedRmsNorm', 'scalar');
    native.gatedRmsNorm(y, z, w, rows, dim, groupSize, 1e-5, out);
    expect(calls('gatedRmsNorm', 'scalar')).toBe(before + 1);
    const ref = new Float64Array(rows * dim);
    for (let i0 = 0; i0 < rows * dim; i0 += groupSize) {
      let sum = 0;
      for (let i = i0; i < i0 + groupSize; i++) {
        ref[i] = (y[i] * z[i]) / (1 + Math.exp(-z[i]));
        sum += ref[i] * ref[i];
      }
      const inv = 1 / Math.sqrt(sum / groupSize + 1e-5);
      for (let i = i0; i < i0 + groupSize; i++) ref[i] *= inv * w[i % dim];
    }
    expect(worst(out, ref, 1e-6, 1e-5)).toBeLessThanOrEqual(1);
  });
});

describe('argument checks', () => {
  const dims = { batch: 1, seqLen: 2, heads: 4, headDim: 2, groups: 2, stateSize: 8 };
  const inputs = scanCase(dims, 1, false);
  const out = () => ({ y: new Float32Array(16), finalState: new Float32Array(64) });

  test('ssmScan names the array whose length does not match the dims', () => {
    expect(() => native.ssmScan({ ...inputs, B: new Float32Array(31) }, dims, 0, Infinity, out())).toThrow(
      'ssmScan: inputs.B must hold batch * seqLen * groups * stateSize = 1 * 2 * 2 * 8 = 32 elements, got 31',
    );
    expect(() => native.ssmScan(inputs, { ...dims, groups: 3 }, 0, Infinity, out())).toThrow(
      'ssmScan: dims.groups must be positive and divide dims.heads = 4, got 3',
    );
    expect(() => native.ssmScan(inputs, dims, NaN, Infinity, out())).toThrow('ssmScan: dtMin must be a number other than NaN');
  });

  test('the binding refuses an output sharing memory with an input', () => {
    const o = out();
    expect(() => native.ssmScan(inputs, dims, 0, Infinity, { y: inputs.x.subarray(0, 16), finalState: o.finalState })).toThrow(
      'ssmScan: y must not share memory with x',
    );
    const x = new Float32Array(8);
    expect(() => native.gatedRmsNorm(x, new Float32Array(8), new Float32Array(8), 1, 8, 8, 1e-5, x)).toThrow(
      'gatedRmsNorm: out must not share memory with y',
    );
  });

  test('causalConv1d and gatedRmsNorm check their sizes and options', () => {
    const dimsC = { batch: 1, seqLen: 2, channels: 3, kernelSize: 4 };
    const o = { y: new Float32Array(6), newState: new Float32Array(9) };
    expect(() => native.causalConv1d({ x: new Float32Array(6), weight: new Float32Array(11) }, dimsC, 'silu', o)).toThrow(
      'causalConv1d: inputs.weight must hold channels * kernelSize = 3 * 4 = 12 elements, got 11',
    );
    expect(() => native.causalConv1d({ x: new Float32Array(6), weight: new Float32Array(12) }, dimsC, 'gelu' as 'silu', o)).toThrow(
      "causalConv1d: activation must be 'silu' or 'none', got the string 'gelu'",
    );
    expect(() =>
      native.gatedRmsNorm(new Float32Array(8), new Float32Array(8), new Float32Array(8), 1, 8, 3, 1e-5, new Float32Array(8)),
    ).toThrow('gatedRmsNorm: groupSize must be positive and divide dim = 8, got 3');
  });
});
