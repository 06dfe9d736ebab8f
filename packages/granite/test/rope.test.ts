import * as tf from '@tensorflow/tfjs-core';
import { describeBackends, expectNoTensorLeak } from '@graniteflow/core/testing';
import { GraniteMoeHybridForCausalLM, parseConfig, preset } from '../src';
import { applyRope, ropeAngles } from '../src/layers/rope';

/**
 * RoPE as HF's Granite applies it, written out in float64 from the definition: for head dim d and
 * pair i < d/2, angle = position · theta^(−2i/d); element i becomes x_i·cos − x_{i+d/2}·sin and
 * element i + d/2 becomes x_{i+d/2}·cos + x_i·sin. x is [B, T, heads, d].
 */
function naiveRope(x: Float64Array, shape: readonly number[], positions: readonly number[][], theta: number): Float64Array {
  const [B, T, H, d] = shape;
  const half = d / 2;
  const out = new Float64Array(x.length);
  for (let b = 0; b < B; b++)
    for (let t = 0; t < T; t++)
      for (let h = 0; h < H; h++) {
        const at = ((b * T + t) * H + h) * d;
        for (let i = 0; i < half; i++) {
          const angle = positions[b][t] * theta ** ((-2 * i) / d);
          const [lo, hi] = [x[at + i], x[at + i + half]];
          out[at + i] = lo * Math.cos(angle) - hi * Math.sin(angle);
          out[at + i + half] = hi * Math.cos(angle) + lo * Math.sin(angle);
        }
      }
  return out;
}

function randomValues(n: number, seed: number): Float64Array {
  let s = seed >>> 0;
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = Math.fround(s / 2 ** 31 - 1);
  }
  return out;
}

describeBackends('RoPE', () => {
  it('equals a float64 implementation of the definition, at small, offset and long-context positions', async () => {
    const shape = [2, 4, 3, 16];
    const theta = 10000;
    // Row 0 from 0, row 1 continuing a cached prefix; then positions deep in a 128K context.
    const cases: { positions: number[][]; tolerance: number }[] = [
      {
        positions: [
          [0, 1, 2, 3],
          [37, 38, 39, 40],
        ],
        tolerance: 2e-6,
      },
      // float32 holds a position near 131072 to 2^-7, so the angle of pair 0 carries ~0.004 of
      // rounding before cos/sin see it: the bound is that, not the arithmetic.
      {
        positions: [
          [4093, 4094, 4095, 4096],
          [131068, 131069, 131070, 131071],
        ],
        tolerance: 2e-2,
      },
    ];
    const x = randomValues(2 * 4 * 3 * 16, 7);
    await expectNoTensorLeak(() => {
      for (const { positions, tolerance } of cases) {
        const want = naiveRope(x, shape, positions, theta);
        const got = tf.tidy(() => {
          const [cos, sin] = ropeAngles(tf.tensor2d(positions, undefined, 'int32'), shape[3], theta);
          return applyRope(tf.tensor4d(Float32Array.from(x), shape as [number, number, number, number]), cos, sin).dataSync();
        });
        let worst = 0;
        for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(got[i] - want[i]));
        // Written so that a NaN fails it (NaN <= tolerance is false).
        expect(worst <= tolerance).toBe(true);
        if (tolerance < 1e-3) expect(worst).toBeLessThan(tolerance);
      }
    });
  });

  it('the model applies it: with rope the logits differ from the same weights without, and a cached step matches the full pass', async () => {
    const raw = {
      ...preset('granite-4.0-350m'),
      time_step_limit: null,
      hidden_size: 32,
      num_hidden_layers: 1,
      layer_types: ['attention'],
      num_attention_heads: 4,
      num_key_value_heads: 2,
      shared_intermediate_size: 16,
      intermediate_size: 16,
      vocab_size: 40,
      // Large weights, so attention is far from uniform and the rotation shows in the logits.
      initializer_range: 0.5,
    };
    const withRope = new GraniteMoeHybridForCausalLM(parseConfig({ ...raw, position_embedding_type: 'rope' }), { seed: 5 });
    const without = new GraniteMoeHybridForCausalLM(parseConfig({ ...raw, position_embedding_type: null }), { seed: 5 });
    const ids = [3, 9, 4, 1, 7, 12];
    // Weights are allocated on first read; read them before counting tensors.
    for (const m of [withRope, without])
      tf.tidy(() => {
        m.forward(tf.tensor2d([ids], undefined, 'int32'));
      });
    await expectNoTensorLeak(() => {
      const a = tf.tidy(() => withRope.forward(tf.tensor2d([ids], undefined, 'int32')).logits!.dataSync());
      const b = tf.tidy(() => without.forward(tf.tensor2d([ids], undefined, 'int32')).logits!.dataSync());
      // Position 0 has angle 0 (no rotation), so the first token's logits agree; later ones must not.
      let first = 0,
        later = 0;
      for (let i = 0; i < a.length; i++) {
        const d = Math.abs(a[i] - b[i]);
        if (i < raw.vocab_size) first = Math.max(first, d);
        else later = Math.max(later, d);
      }
      expect(first).toBeLessThan(1e-5);
      expect(later).toBeGreaterThan(1e-3);
      // The cached step's queries and keys sit at positions 4 and 5, not 0 and 1.
      const cache = withRope.makeCache(1);
      tf.tidy(() => {
        withRope.forward(tf.tensor2d([ids.slice(0, 4)], undefined, 'int32'), { cache, logits: 'none' });
      });
      const step = tf.tidy(() => withRope.forward(tf.tensor2d([ids.slice(4)], undefined, 'int32'), { cache }).logits!.dataSync());
      cache.dispose();
      let worst = 0;
      for (let i = 0; i < step.length; i++) worst = Math.max(worst, Math.abs(step[i] - a[4 * raw.vocab_size + i]));
      expect(worst <= 1e-5).toBe(true);
    });
    withRope.dispose();
    without.dispose();
  }, 30_000);
});
