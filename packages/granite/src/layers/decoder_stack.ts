import * as tf from '@tensorflow/tfjs-core';
import type { Embedding, Linear, RMSNorm } from '@graniteflow/core';
import type { HybridCache, LayerCache } from '../cache/hybrid_cache';
import type { ForwardOptions, ForwardOutput } from '../models/causal_lm';
import type { AttentionContext } from './attention';
import { ropeAngles } from './rope';

/** What a decoder layer needs besides its input: shared by every layer of one forward pass. */
export interface LayerContext {
  /** Present when the model has attention layers. */
  attention?: AttentionContext;
  /** [B, T] 1 = real token, 0 = left padding; null when the batch has no padding. */
  paddingMask: tf.Tensor | null;
  /** When given, each MoE layer appends its router logits [B·T, E] here (kept: the caller disposes them). */
  routerLogits?: tf.Tensor[];
}

/** One block of a decoder stack, whatever its mixer. */
export interface DecoderLayer {
  /** x [B, T, H] → [B, T, H]; updates `cache` in place when given. */
  forward(x: tf.Tensor, ctx: LayerContext, cache?: LayerCache): tf.Tensor;
}

/** The modules and scalars of a decoder-only stack: embeddings, layers, final norm, head. */
export interface DecoderStack {
  embedTokens: Embedding;
  layers: readonly DecoderLayer[];
  norm: RMSNorm;
  /** Absent when the head is tied to the embeddings. */
  lmHead?: Linear;
  hiddenSize: number;
  /** The embeddings are multiplied by this (1 for plain models). */
  embeddingMultiplier: number;
  /** Logits are divided by this (1 for plain models). */
  logitsScaling: number;
  /** Some layer attends: build the key mask (and RoPE angles) once per pass. */
  hasAttention: boolean;
  /** Rotary embeddings of the attention layers, when used. */
  rope?: { headDim: number; theta: number };
}

/**
 * The forward pass of a decoder-only model (model guide: The forward pass): embed × multiplier,
 * every layer in turn (continuing from and updating `options.cache`), the final norm, the head
 * and ÷ logits scaling, for the positions `options.logits` asks for. Families differ only in
 * their layers, so each model's `forward` is this with its own stack.
 */
export function runDecoderStack(stack: DecoderStack, inputIds: tf.Tensor2D, options: ForwardOptions = {}): ForwardOutput {
  const { cache, attentionMask } = options;
  const [batch, time] = inputIds.shape;
  if (cache && cache.batchSize !== batch) {
    throw new RangeError(`The cache holds ${cache.batchSize} sequences but the input has ${batch}.`);
  }
  if (cache && cache.layers.length !== stack.layers.length) {
    throw new RangeError(
      `The cache has ${cache.layers.length} layers but the model has ${stack.layers.length}: it belongs to another model.`,
    );
  }
  if (attentionMask && (attentionMask.shape[0] !== batch || attentionMask.shape[1] !== time)) {
    throw new RangeError(`attentionMask must be [${batch}, ${time}] like the input ids, got [${attentionMask.shape}].`);
  }
  const wantHidden = options.hiddenStates ?? false;
  const routerLogits: tf.Tensor2D[] = [];
  const run = () =>
    tf.tidy(() => {
      const mask = attentionMask ? (tf.cast(attentionMask, 'float32') as tf.Tensor2D) : null;
      const ctx: LayerContext = {
        attention: stack.hasAttention ? attentionContext(stack, batch, time, cache, mask) : undefined,
        paddingMask: mask,
        routerLogits: options.routerLogits ? routerLogits : undefined,
      };
      let x = tf.mul(stack.embedTokens.forward(inputIds), stack.embeddingMultiplier) as tf.Tensor3D;
      const hidden: tf.Tensor3D[] = wantHidden ? [x] : [];
      stack.layers.forEach((layer, i) => {
        const next = layer.forward(x, ctx, cache?.layers[i]) as tf.Tensor3D;
        // The tidy would keep every layer's output to its end: 40 of them for one chunk of H-Micro.
        if (!wantHidden) x.dispose();
        x = next;
        if (wantHidden) hidden.push(x);
      });
      cache?.advance(time, mask);
      const out: { logits?: tf.Tensor3D; hidden: tf.Tensor3D[] } = { hidden };
      const which = options.logits ?? 'all';
      if (which !== 'none') {
        const kept = which === 'last' ? tf.slice(x, [0, time - 1, 0], [batch, 1, stack.hiddenSize]) : x;
        const h = stack.norm.forward(kept) as tf.Tensor3D;
        const scores = stack.lmHead ? stack.lmHead.forward(h) : stack.embedTokens.attend(h);
        out.logits = tf.div(scores, stack.logitsScaling) as tf.Tensor3D;
      }
      return out;
    });
  let result: ReturnType<typeof run>;
  try {
    result = run();
  } catch (err) {
    tf.dispose(routerLogits); // kept by the layers, so the tidy does not free them
    throw err;
  }
  return {
    logits: result.logits,
    hiddenStates: wantHidden ? result.hidden : undefined,
    routerLogits: options.routerLogits ? routerLogits : undefined,
  };
}

/** Padding mask of every cached and new key (causality is the attention kernel's), and RoPE angles if used. */
function attentionContext(
  stack: DecoderStack,
  batch: number,
  time: number,
  cache: HybridCache | undefined,
  mask: tf.Tensor2D | null,
): AttentionContext {
  const past = cache?.seqLength ?? 0;
  const pastMask = cache?.mask ?? null;
  const keyMask =
    mask || pastMask
      ? (tf.concat([pastMask ?? tf.ones([batch, past]), mask ?? tf.ones([batch, time])], 1) as tf.Tensor2D) // [B, S]
      : null;
  const ctx: AttentionContext = { keyMask };
  if (stack.rope) {
    // Positions count real tokens only, as HF builds position_ids = cumsum(mask) − 1.
    const base = pastMask ? tf.sum(pastMask, 1, true) : tf.fill([batch, 1], past);
    const offsets = mask ? tf.sub(tf.cumsum(mask, 1), 1) : tf.tile(tf.reshape(tf.range(0, time), [1, time]), [batch, 1]);
    const positions = tf.maximum(tf.add(base, offsets), 0) as tf.Tensor2D;
    ctx.rope = ropeAngles(positions, stack.rope.headDim, stack.rope.theta);
  }
  return ctx;
}
