/*
 * AVX-512 attention unit: tiles of 16 keys. With more than 4 query rows (prefill), each tile's
 * keys are gathered transposed (kt[d][j] = k_j[d]) so that 4 rows' 16 scores build up in 4
 * registers by one multiply-add per head dimension each, with no horizontal sums. With at most 4
 * rows (a decode step: the query heads of one KV head) the gathers would cost more than they
 * save, and each key is read as it lies, one dot product per row. The tile's softmax step runs
 * over the score registers; the values are accumulated into 4 rows of running outputs, 16
 * dimensions at a time.
 */
#include "attention_internal.h"

#if GF_X86
#define GF_TARGET "avx512f,avx512bw,avx512vl,avx2,fma"
#include "gf_target.h"

#include "gf_exp_avx512.h"

#define ROWS 4
#define PREFETCH_TILES 4

void gf_attention_unit_avx512(const gf_attention_args *a, int64_t b, int64_t kvh, int64_t t0, int64_t t1,
                              float *work) {
  const int64_t hd = a->head_dim, rep = a->q_heads / a->kv_heads, nq = t1 - t0, rows = rep * nq;
  const int64_t padded = (rows + ROWS - 1) / ROWS * ROWS;
  /* work: m, l, alpha [padded], acc [padded, hd], probs [padded, 16], kt [hd, 16] */
  const gf_attention_unit u = gf_attention_unit_begin(a, b, kvh, t1, work, padded, padded);
  const int64_t pos_stride = u.pos_stride, s_end = u.s_end;
  const float *keys = u.keys, *values = u.values, *mask = u.mask;
  float *m = u.m, *l = u.l, *alpha = u.l + padded, *acc = u.acc;
  float *probs = acc + padded * hd, *kt = probs + padded * GF_ATTN_TILE;
  const __m512i lane_offsets = _mm512_mullo_epi32(
      _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0), _mm512_set1_epi32((int)pos_stride));
  const __mmask16 tail = hd % 16 ? (__mmask16)((1u << (hd % 16)) - 1) : 0xFFFF;
  const __m512 scale = _mm512_set1_ps(a->scale);
  const bool by_dots = padded <= ROWS;
  /* Padded rows repeat the last real row; their results are never stored. */
  const float *qrow[ROWS];
  int64_t last[ROWS];

  for (int64_t s0 = 0; s0 < s_end; s0 += GF_ATTN_TILE) {
    const int64_t n = GF_MIN((int64_t)GF_ATTN_TILE, s_end - s0);
    __mmask16 valid = n == GF_ATTN_TILE ? 0xFFFF : (__mmask16)((1u << n) - 1);
    if (mask) {
      const __m512 mk = _mm512_maskz_loadu_ps(valid, mask + s0);
      valid = _mm512_mask_cmp_ps_mask(valid, mk, _mm512_setzero_ps(), _CMP_NEQ_UQ);
    }
    if (valid == 0) continue;
    const float *tile_k = keys + s0 * pos_stride, *tile_v = values + s0 * pos_stride;
    /* Positions-major, one KV head's rows lie a whole position apart (kv_heads * head_dim
     * floats), a few to a page: too sparse for the hardware prefetchers, so the tile PREFETCH_TILES on
     * is asked for (heads-major rows are contiguous and need no help). */
    if (!a->heads_major && s0 + PREFETCH_TILES * GF_ATTN_TILE < s_end) {
      const int64_t ahead = GF_MIN((int64_t)GF_ATTN_TILE, s_end - s0 - PREFETCH_TILES * GF_ATTN_TILE);
      for (int64_t j = 0; j < ahead; j++) {
        const char *kp = (const char *)(tile_k + (PREFETCH_TILES * GF_ATTN_TILE + j) * pos_stride);
        const char *vp = (const char *)(tile_v + (PREFETCH_TILES * GF_ATTN_TILE + j) * pos_stride);
        for (int64_t off = 0; off < hd * 4; off += 64) {
          _mm_prefetch(kp + off, _MM_HINT_T0);
          _mm_prefetch(vp + off, _MM_HINT_T0);
        }
      }
    }
    if (!by_dots)
      for (int64_t d = 0; d < hd; d++)
        _mm512_storeu_ps(kt + d * GF_ATTN_TILE,
                         _mm512_mask_i32gather_ps(_mm512_setzero_ps(), valid, lane_offsets, tile_k + d, 4));

    for (int64_t i0 = 0; i0 < padded; i0 += ROWS) {
      gf_attention_rows(a, &u, b, kvh, t0, nq, rows, i0, ROWS, qrow, last);
      __m512 s[ROWS];
      if (by_dots) {
        float dots[ROWS][GF_ATTN_TILE] = {{0}};
        for (int64_t j = 0; j < n; j++) {
          if (!((valid >> j) & 1)) continue;
          const float *kj = tile_k + j * pos_stride;
          __m512 dot[ROWS];
          for (int r = 0; r < ROWS; r++) dot[r] = _mm512_setzero_ps();
          for (int64_t c = 0; c < hd; c += 16) {
            const __mmask16 cm = c + 16 <= hd ? 0xFFFF : tail;
            const __m512 kc = _mm512_maskz_loadu_ps(cm, kj + c);
            for (int r = 0; r < ROWS; r++) dot[r] = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(cm, qrow[r] + c), kc, dot[r]);
          }
          for (int r = 0; r < ROWS; r++) dots[r][j] = _mm512_reduce_add_ps(dot[r]);
        }
        for (int r = 0; r < ROWS; r++) s[r] = _mm512_loadu_ps(dots[r]);
      } else {
        for (int r = 0; r < ROWS; r++) s[r] = _mm512_setzero_ps();
        for (int64_t d = 0; d < hd; d++) {
          const __m512 kd = _mm512_loadu_ps(kt + d * GF_ATTN_TILE);
          for (int r = 0; r < ROWS; r++) s[r] = _mm512_fmadd_ps(_mm512_set1_ps(qrow[r][d]), kd, s[r]);
        }
      }
      for (int r = 0; r < ROWS; r++) {
        const int64_t i = i0 + r;
        const __mmask16 lanes = valid & (__mmask16)gf_attention_causal_bits(last[r], s0, GF_ATTN_TILE);
        if (lanes == 0) {
          alpha[i] = 1.0f;
          _mm512_storeu_ps(probs + i * GF_ATTN_TILE, _mm512_setzero_ps());
          continue;
        }
        const __m512 sc = _mm512_mul_ps(s[r], scale);
        const float m_new = GF_MAX(m[i], _mm512_mask_reduce_max_ps(lanes, sc));
        const __m512 p = _mm512_maskz_mov_ps(lanes, exp_avx512(_mm512_sub_ps(sc, _mm512_set1_ps(m_new))));
        alpha[i] = expf(m[i] - m_new); /* 0 while m is -inf */
        l[i] = l[i] * alpha[i] + _mm512_reduce_add_ps(p);
        m[i] = m_new;
        _mm512_storeu_ps(probs + i * GF_ATTN_TILE, p);
      }
      for (int64_t c = 0; c < hd; c += 16) {
        const __mmask16 cm = c + 16 <= hd ? 0xFFFF : tail;
        __m512 o[ROWS];
        for (int r = 0; r < ROWS; r++)
          o[r] = _mm512_mul_ps(_mm512_maskz_loadu_ps(cm, acc + (i0 + r) * hd + c), _mm512_set1_ps(alpha[i0 + r]));
        for (int64_t j = 0; j < n; j++) {
          const __m512 vj = _mm512_maskz_loadu_ps(cm, tile_v + j * pos_stride + c);
          for (int r = 0; r < ROWS; r++)
            o[r] = _mm512_fmadd_ps(_mm512_set1_ps(probs[(i0 + r) * GF_ATTN_TILE + j]), vj, o[r]);
        }
        for (int r = 0; r < ROWS; r++) _mm512_mask_storeu_ps(acc + (i0 + r) * hd + c, cm, o[r]);
      }
    }
  }
  gf_attention_store_rows(a, b, kvh, t0, t1, l, acc, hd);
}

#include "gf_target_end.h"
#endif
