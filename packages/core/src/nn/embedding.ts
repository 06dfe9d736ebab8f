import * as tf from '@tensorflow/tfjs-core';
import { Module } from '../module/module';
import { normalInit, type Initializer } from '../module/initializers';
import { Parameter } from '../module/parameter';
import { packedGather } from '../packed/packed_gather';
import { packedMatMul } from '../packed/packed_matmul';

/** Options of {@link Embedding}. */
export interface EmbeddingOptions {
  /**
   * The table also serves as the output projection (a tied LM head): keep it transposed in memory,
   * [dim, numEmbeddings], so {@link Embedding.attend} is a plain matMul (fast on wasm) and the
   * lookup a gather along the columns.
   */
  tiedHead?: boolean;
  /** The padding token's row, initialized to zeros as `nn.Embedding(padding_idx=…)` does (Hugging Face's `pad_token_id`). */
  paddingIdx?: number;
}

/**
 * A lookup table with checkpoint shape [numEmbeddings, dim]. A packed table (`weight.pack(format)`)
 * is looked up by unpacking only the rows asked for, and serves as a packed LM head as it is.
 */
export class Embedding extends Module {
  readonly weight: Parameter;

  constructor(
    readonly numEmbeddings: number,
    readonly dim: number,
    options: EmbeddingOptions = {},
  ) {
    super();
    const pad = options.paddingIdx;
    if (pad !== undefined && (!Number.isInteger(pad) || pad < 0 || pad >= numEmbeddings)) {
      throw new RangeError(`Embedding paddingIdx must be a row of the table [0, ${numEmbeddings}), got ${pad}.`);
    }
    const init: Initializer =
      pad === undefined
        ? normalInit
        : (shape, context) =>
            tf.tidy(() => {
              const rowIsPad = tf.reshape(tf.equal(tf.range(0, numEmbeddings, 1, 'int32'), pad), [numEmbeddings, 1]);
              return tf.where(rowIsPad, tf.zeros(shape), normalInit(shape, context));
            });
    this.weight = new Parameter([numEmbeddings, dim], init, { layout: options.tiedHead ? 'transposed' : 'checkpoint' });
  }

  /** ids [...] (int32) → [..., dim]. Ids outside [0, numEmbeddings) are rejected. */
  forward(ids: tf.Tensor): tf.Tensor {
    if (ids.dtype !== 'int32') throw new TypeError(`Embedding expects int32 ids, got ${ids.dtype}.`);
    const values = ids.dataSync();
    for (let i = 0; i < values.length; i++) {
      if (values[i] < 0 || values[i] >= this.numEmbeddings) {
        throw new RangeError(`Token id ${values[i]} is outside the embedding table [0, ${this.numEmbeddings}).`);
      }
    }
    const packed = this.weight.packed;
    if (packed) return packedGather(packed, ids);
    return tf.tidy(() => {
      const flat = tf.reshape(ids, [-1]);
      const rows =
        this.weight.layout === 'transposed'
          ? tf.transpose(tf.gather(this.weight.value, flat, 1)) // [n, dim] from [dim, n]
          : tf.gather(this.weight.value, flat);
      return tf.reshape(rows, [...ids.shape, this.dim]);
    });
  }

  /** The table as an output projection: h [..., dim] → scores [..., numEmbeddings] = h · Eᵀ. */
  attend(h: tf.Tensor): tf.Tensor {
    const packed = this.weight.packed;
    if (packed) return packedMatMul(h, packed);
    return tf.tidy(() => {
      const flat = tf.reshape(h, [-1, this.dim]);
      const scores =
        this.weight.layout === 'transposed' ? tf.matMul(flat, this.weight.value) : tf.matMul(flat, this.weight.value, false, true);
      return tf.reshape(scores, [...h.shape.slice(0, -1), this.numEmbeddings]);
    });
  }
}
