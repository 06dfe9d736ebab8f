import * as tf from '@tensorflow/tfjs-core';
import { Module } from '../module/module';
import { Parameter } from '../module/parameter';

/** A lookup table [numEmbeddings, dim]. */
export class Embedding extends Module {
  readonly weight: Parameter;

  constructor(
    readonly numEmbeddings: number,
    readonly dim: number,
  ) {
    super();
    this.weight = new Parameter([numEmbeddings, dim]);
  }

  /** ids [...] (int32) → [..., dim]. Ids outside [0, numEmbeddings) are rejected. */
  forward(ids: tf.Tensor): tf.Tensor {
    if (ids.dtype !== 'int32') throw new TypeError(`Embedding expects int32 ids, got ${ids.dtype}.`);
    const values = ids.dataSync();
    for (let i = 0; i < values.length; i++) {
      if (values[i] < 0 || values[i] >= this.numEmbeddings) {
        throw new RangeError(
          `Token id ${values[i]} is outside the embedding table [0, ${this.numEmbeddings}).`,
        );
      }
    }
    return tf.tidy(() => {
      const rows = tf.gather(this.weight.value, tf.reshape(ids, [-1]));
      return tf.reshape(rows, [...ids.shape, this.dim]);
    });
  }
}
