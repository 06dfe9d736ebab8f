/*
 * Softmax attention by an online softmax over tiles of keys (flash-attention style): the scores
 * of a tile live in registers or a small per-thread buffer, never as a [q_len, key_len] matrix.
 *
 * Work is split into units of (sequence, KV head, block of queries); a unit's rows are the
 * q_heads / kv_heads query heads that read that KV head times its queries, so each key and value
 * loaded serves all of them (grouped-query attention without repeating K / V). Per row the unit
 * keeps the running maximum m, the running sum l of exp(score - m) and the running output, and
 * rescales them by exp(m_old - m_new) when a tile raises the maximum.
 *
 * The scalar unit below is the oracle the SIMD ones are tested against: one key at a time,
 * expf, float accumulation in key order.
 */
#include "gf_internal.h"

#include "attention_internal.h"

/* Fewer multiply-adds than this per thread is not worth waking a worker. */
#define MIN_MACS_PER_THREAD (1 << 16)

size_t gf_attention_work_floats(int64_t rows, int64_t head_dim) {
  const int64_t padded_rows = (rows + 3) / 4 * 4;
  /* m, l, alpha, output accumulators, a tile's probabilities, a transposed key tile */
  return (size_t)(3 * padded_rows + padded_rows * head_dim + padded_rows * GF_ATTN_TILE +
                  head_dim * GF_ATTN_TILE);
}

void gf_attention_unit_scalar(const gf_attention_args *a, int64_t b, int64_t kvh, int64_t t0, int64_t t1,
                              float *work) {
  const int64_t hd = a->head_dim, rep = a->q_heads / a->kv_heads, nq = t1 - t0, rows = rep * nq;
  const gf_attention_unit u = gf_attention_unit_begin(a, b, kvh, t1, work, rows, 0);
  const int64_t pos_stride = u.pos_stride, past = u.past, s_end = u.s_end;
  const float *keys = u.keys, *values = u.values, *mask = u.mask;
  float *m = u.m, *l = u.l, *acc = u.acc;
  for (int64_t s = 0; s < s_end; s++) {
    if (mask && mask[s] == 0.0f) continue;
    const float *ks = keys + s * pos_stride, *vs = values + s * pos_stride;
    for (int64_t i = 0; i < rows; i++) {
      const int64_t r = i / nq, t = t0 + i % nq;
      if (a->causal && s > past + t) continue;
      const float *qi = a->q + ((b * a->q_len + t) * a->q_heads + kvh * rep + r) * hd;
      float dot = 0.0f;
      for (int64_t d = 0; d < hd; d++) dot += qi[d] * ks[d];
      const float score = dot * a->scale;
      float *o = acc + i * hd;
      if (score > m[i]) {
        const float alpha = expf(m[i] - score); /* 0 for the first key: m is -inf */
        l[i] *= alpha;
        for (int64_t d = 0; d < hd; d++) o[d] *= alpha;
        m[i] = score;
      }
      const float p = expf(score - m[i]);
      l[i] += p;
      for (int64_t d = 0; d < hd; d++) o[d] += p * vs[d];
    }
  }
  gf_attention_store_rows(a, b, kvh, t0, t1, l, acc, hd);
}

void gf_attention_store_rows(const gf_attention_args *a, int64_t b, int64_t kvh, int64_t t0, int64_t t1,
                             const float *l, const float *acc, int64_t acc_stride) {
  const int64_t hd = a->head_dim, rep = a->q_heads / a->kv_heads, nq = t1 - t0;
  for (int64_t i = 0; i < rep * nq; i++) {
    const int64_t r = i / nq, t = t0 + i % nq;
    float *out = a->out + ((b * a->q_len + t) * a->q_heads + kvh * rep + r) * hd;
    const float inv = l[i] > 0.0f ? 1.0f / l[i] : 0.0f;
    for (int64_t d = 0; d < hd; d++) out[d] = acc[i * acc_stride + d] * inv;
  }
}

typedef struct {
  const gf_attention_args *a;
  gf_attention_unit_fn unit;
  int64_t q_blocks, q_block;
  float *work[GF_MAX_THREADS];
} attention_ctx;

static void attention_task(void *ctx, int64_t begin, int64_t end, int thread) {
  const attention_ctx *c = (const attention_ctx *)ctx;
  const gf_attention_args *a = c->a;
  for (int64_t u = begin; u < end; u++) {
    const int64_t qb = u % c->q_blocks, bh = u / c->q_blocks;
    const int64_t t0 = qb * c->q_block, t1 = GF_MIN(a->q_len, t0 + c->q_block);
    c->unit(a, bh / a->kv_heads, bh % a->kv_heads, t0, t1, c->work[thread]);
  }
}

int gf_attention(const gf_attention_args *a) {
  gf_call_lock();
  const gf_level level = gf_kernel_level(GF_KERNEL_ATTENTION);
  attention_ctx c;
  c.a = a;
  c.unit = gf_attention_unit_scalar;
#if GF_X86
  if (level == GF_LEVEL_AVX512) c.unit = gf_attention_unit_avx512;
  if (level == GF_LEVEL_AVX2) c.unit = gf_attention_unit_avx2;
#endif
  const int64_t rep = a->kv_heads > 0 ? a->q_heads / a->kv_heads : 0;
  /* Rows of a unit: rep query heads times up to 16 queries (64 for H-Micro's rep of 4), so a key
   * tile read from memory serves many rows while the units stay many enough to share out. */
  c.q_block = GF_MAX(1, GF_MIN(a->q_len, (int64_t)64 / GF_MAX(1, rep)));
  c.q_block = GF_MIN(c.q_block, (int64_t)16);
  c.q_blocks = (a->q_len + c.q_block - 1) / c.q_block;
  const int64_t units = a->batch * a->kv_heads * c.q_blocks;
  const size_t work_bytes = gf_attention_work_floats(rep * c.q_block, a->head_dim) * sizeof(float);
  for (int t = 0; t < gf_threads(); t++) {
    c.work[t] = (float *)gf_scratch(t, GF_SCRATCH_ATTENTION, work_bytes);
    if (c.work[t] == NULL) {
      gf_call_unlock();
      return GF_ERR_NOMEM;
    }
  }
  const int64_t macs_per_unit = GF_MAX(1, 2 * rep * c.q_block * a->key_len * a->head_dim);
  gf_parallel_for(units, 1, GF_MAX(1, MIN_MACS_PER_THREAD / macs_per_unit), attention_task, &c);
  gf_count(GF_KERNEL_ATTENTION, level);
  gf_call_unlock();
  return GF_OK;
}
