import * as tf from '@tensorflow/tfjs-core';
import { checkDtype, fail, failShape, shapeStr } from './checks';
import { swiglu } from './swiglu';

/**
 * Activations of a gated MLP, by their Hugging Face names (`hidden_act`): `silu` (SwiGLU, the
 * fused kernel), `gelu` (exact, with erf), `gelu_pytorch_tanh` and `gelu_new` (the tanh
 * approximation), `relu`. The others run composed from stock tfjs ops.
 */
export const GATED_ACTIVATIONS = ['silu', 'gelu', 'gelu_pytorch_tanh', 'gelu_new', 'relu'] as const;

/** One of {@link GATED_ACTIVATIONS}. */
export type GatedActivation = (typeof GATED_ACTIVATIONS)[number];

/** Whether `name` is a supported {@link GatedActivation}. */
export function isGatedActivation(name: unknown): name is GatedActivation {
  return typeof name === 'string' && (GATED_ACTIVATIONS as readonly string[]).includes(name);
}

/** `activation` applied elementwise to `x` (differentiable). */
export function activate(x: tf.Tensor, activation: GatedActivation): tf.Tensor {
  return tf.tidy(() => {
    switch (activation) {
      case 'silu':
        return tf.mul(x, tf.sigmoid(x));
      case 'gelu':
        return tf.mul(tf.mul(x, 0.5), tf.add(1, tf.erf(tf.mul(x, Math.SQRT1_2))));
      case 'gelu_pytorch_tanh':
      case 'gelu_new': {
        const inner = tf.mul(Math.sqrt(2 / Math.PI), tf.add(x, tf.mul(0.044715, tf.pow(x, 3))));
        return tf.mul(tf.mul(x, 0.5), tf.add(1, tf.tanh(inner)));
      }
      case 'relu':
        return tf.relu(x);
      default:
        return fail('activate', `activation must be one of ${GATED_ACTIVATIONS.join(', ')}, got ${String(activation)}.`);
    }
  });
}

/**
 * A gated activation on a packed projection: `act(a[..., :I]) ⊙ a[..., I:]`, first half gate,
 * second half up (as {@link swiglu}, which it is for `'silu'`). Differentiable.
 *
 * @param a [..., 2I] float32
 * @returns [..., I]
 */
export function gatedActivation(a: tf.Tensor, activation: GatedActivation = 'silu'): tf.Tensor {
  if (activation === 'silu') return swiglu(a);
  const op = 'gatedActivation';
  checkDtype(op, 'a', a, 'float32');
  const last = a.shape[a.rank - 1];
  if (a.rank < 1 || last % 2 !== 0) failShape(op, `a must be [..., 2I] with an even last axis, got ${shapeStr(a.shape)}.`);
  return tf.tidy(() => {
    const [gate, up] = tf.split(a, 2, -1);
    return tf.mul(activate(gate, activation), up);
  });
}
