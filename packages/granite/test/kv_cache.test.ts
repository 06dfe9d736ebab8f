import * as tf from '@tensorflow/tfjs-core';
import { describeBackends, expectNoTensorLeak } from '@graniteflow/core/testing';
import { KVCache } from '../src';

/** Rows [B, T, nKV, hd] whose every element encodes (sequence, position, head, dim), so misplaced copies show. */
function rows(batch: number, from: number, time: number, kvHeads: number, hd: number, sign = 1): tf.Tensor4D {
  const values = new Float32Array(batch * time * kvHeads * hd);
  let i = 0;
  for (let b = 0; b < batch; b++)
    for (let t = 0; t < time; t++)
      for (let h = 0; h < kvHeads; h++) for (let d = 0; d < hd; d++) values[i++] = sign * (b * 1e6 + (from + t) * 1e3 + h * 10 + d);
  return tf.tensor4d(values, [batch, time, kvHeads, hd]);
}

/** The filled positions of a storage tensor [B, nKV, capacity, hd], as [B, length, nKV, hd] nested arrays. */
function filled(storage: tf.Tensor4D, length: number): number[][][][] {
  const [batch, kvHeads, , hd] = storage.shape;
  return tf.tidy(
    () => tf.transpose(tf.slice(storage, [0, 0, 0, 0], [batch, kvHeads, length, hd]), [0, 2, 1, 3]).arraySync() as number[][][][],
  );
}

describeBackends('KVCache', (backend) => {
  it('appends in place while the capacity lasts and doubles it when it does not', () => {
    const cache = new KVCache();
    const prompt = [rows(2, 0, 5, 3, 4), rows(2, 0, 5, 3, 4, -1)];
    cache.append(prompt[0], prompt[1]);
    expect([cache.length, cache.capacity]).toEqual([5, 64]);
    const storage = cache.keys;
    for (let t = 5; t < 64; t++) {
      const step = [rows(2, t, 1, 3, 4), rows(2, t, 1, 3, 4, -1)];
      const got = cache.append(step[0], step[1]);
      // Same storage every step: nothing of what is cached was copied.
      expect(got.keys).toBe(storage);
      expect(got.length).toBe(t + 1);
      tf.dispose(step);
    }
    expect(filled(cache.keys!, 64)).toEqual(rows(2, 0, 64, 3, 4).arraySync());
    const last = [rows(2, 64, 3, 3, 4), rows(2, 64, 3, 3, 4, -1)];
    cache.append(last[0], last[1]);
    expect([cache.length, cache.capacity]).toEqual([67, 128]);
    expect(cache.keys).not.toBe(storage);
    expect(storage!.isDisposed).toBe(true);
    expect(filled(cache.keys!, 67)).toEqual(rows(2, 0, 67, 3, 4).arraySync());
    expect(filled(cache.values!, 67)).toEqual(rows(2, 0, 67, 3, 4, -1).arraySync());
    // Reported bytes are the storage held: keys and values, 128 positions of 3 heads of 4.
    expect(cache.byteSize).toBe(4 * 2 * 2 * 128 * 3 * 4);
    cache.dispose();
    tf.dispose([...prompt, ...last]);
  });

  it('grows at once to a prompt longer than twice its capacity', () => {
    const cache = new KVCache();
    const a = rows(1, 0, 300, 2, 8);
    cache.append(a, a);
    expect([cache.length, cache.capacity]).toEqual([300, 300]);
    expect(filled(cache.values!, 300)).toEqual(a.arraySync());
    cache.dispose();
    a.dispose();
  });

  it('allocates a planned length once, and grows past it by doubling', () => {
    const cache = new KVCache(100);
    const a = rows(1, 0, 60, 2, 8);
    cache.append(a, a);
    const storage = cache.keys;
    expect(cache.capacity).toBe(100);
    const b = rows(1, 60, 40, 2, 8);
    cache.append(b, b);
    expect([cache.length, cache.capacity, cache.keys === storage]).toEqual([100, 100, true]);
    const c = rows(1, 100, 1, 2, 8);
    cache.append(c, c);
    expect([cache.length, cache.capacity]).toEqual([101, 200]);
    expect(filled(cache.keys!, 101)).toEqual(rows(1, 0, 101, 2, 8).arraySync());
    tf.dispose([a, b, c]);
    cache.dispose();
  });

  it('clones into storage of its own: appending to one leaves the other as it was', () => {
    const cache = new KVCache();
    const a = rows(1, 0, 4, 2, 8);
    cache.append(a, a);
    const copy = cache.clone();
    const b = rows(1, 4, 1, 2, 8, -1);
    cache.append(b, b);
    const c = rows(1, 4, 1, 2, 8);
    copy.append(c, c);
    expect(filled(copy.keys!, 5)).toEqual(rows(1, 0, 5, 2, 8).arraySync());
    expect(filled(cache.keys!, 5)[0][4]).toEqual(b.arraySync()[0][0]);
    tf.dispose([a, b, c]);
    cache.dispose();
    copy.dispose();
  });

  it('names the shapes it cannot append', () => {
    const cache = new KVCache();
    const a = rows(1, 0, 2, 2, 8);
    cache.append(a, a);
    const wrongHeads = rows(1, 0, 1, 3, 8);
    expect(() => cache.append(wrongHeads, wrongHeads)).toThrow(
      'KVCache.append: the cache holds keys of 1 sequences × 2 heads × 8, got [1,1,3,8] ([B, T, nKV, hd]).',
    );
    expect(() => cache.append(a, rows(1, 0, 3, 2, 8))).toThrow(
      'KVCache.append: keys [1,2,2,8] and values [1,3,2,8] must have the same shape.',
    );
    tf.dispose([a, wrongHeads]);
    cache.dispose();
  });

  it(`does not leak on ${backend}`, async () => {
    const a = rows(1, 0, 70, 2, 8);
    await expectNoTensorLeak(() => {
      const cache = new KVCache();
      cache.append(a, a);
      cache.append(a, a);
      cache.clone().dispose();
      cache.dispose();
    });
    a.dispose();
  });
});
