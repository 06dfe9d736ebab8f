/*
 * AVX2 attention unit: the AVX-512 unit's method on 8-lane registers, with tiles of 8 keys. With
 * more than 4 query rows the tile's keys are gathered transposed (kt[d][j] = k_j[d]) and 4 rows'
 * 8 scores build up in 4 registers; a decode step's at most 4 rows read each key as it lies. Lane
 * masks are vectors (no mask registers): masked lanes are zeroed after the exp.
 */
#include "attention_internal.h"

#if GF_X86
#define GF_TARGET "avx2,fma"
#include "gf_target.h"

#include "gf_exp_avx2.h"

#define ROWS 4
#define LANES 8
#define PREFETCH_TILES 2

static inline float hsum8(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

static inline float hmax8(__m256 v) {
  __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_max_ps(s, _mm_movehl_ps(s, s));
  s = _mm_max_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

/* All-ones in lane j where bit j of `bits` is set. */
static inline __m256 lanes_of(unsigned bits) {
  const __m256i bit = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
  return _mm256_castsi256_ps(_mm256_cmpeq_epi32(_mm256_and_si256(_mm256_set1_epi32((int)bits), bit), bit));
}

/* Lanes below `count` (of 8), for masked loads of a head dim's last partial chunk. */
static inline __m256i first_lanes(int64_t count) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)count), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

void gf_attention_unit_avx2(const gf_attention_args *a, int64_t b, int64_t kvh, int64_t t0, int64_t t1,
                            float *work) {
  const int64_t hd = a->head_dim, rep = a->q_heads / a->kv_heads, nq = t1 - t0, rows = rep * nq;
  const int64_t padded = (rows + ROWS - 1) / ROWS * ROWS;
  /* work: m, l, alpha [padded], acc [padded, hd], probs [padded, 16], kt [hd, 16] (8 of 16 used) */
  const gf_attention_unit u = gf_attention_unit_begin(a, b, kvh, t1, work, padded, padded);
  const int64_t pos_stride = u.pos_stride, s_end = u.s_end;
  const float *keys = u.keys, *values = u.values, *mask = u.mask;
  float *m = u.m, *l = u.l, *alpha = u.l + padded, *acc = u.acc;
  float *probs = acc + padded * hd, *kt = probs + padded * GF_ATTN_TILE;
  const __m256i lane_offsets = _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32((int)pos_stride));
  const __m256 scale = _mm256_set1_ps(a->scale);
  const bool by_dots = padded <= ROWS;
  const float *qrow[ROWS];
  int64_t last[ROWS];

  for (int64_t s0 = 0; s0 < s_end; s0 += LANES) {
    const int64_t n = GF_MIN((int64_t)LANES, s_end - s0);
    unsigned valid = (1u << n) - 1;
    if (mask)
      for (int64_t j = 0; j < n; j++)
        if (mask[s0 + j] == 0.0f) valid &= ~(1u << j);
    if (valid == 0) continue;
    const float *tile_k = keys + s0 * pos_stride, *tile_v = values + s0 * pos_stride;
    /* Positions-major, one KV head's rows lie a whole position apart (kv_heads * head_dim
     * floats), a few to a page: too sparse for the hardware prefetchers, so the tile PREFETCH_TILES on
     * is asked for (heads-major rows are contiguous and need no help). */
    if (!a->heads_major && s0 + PREFETCH_TILES * LANES < s_end) {
      const int64_t ahead = GF_MIN((int64_t)LANES, s_end - s0 - PREFETCH_TILES * LANES);
      for (int64_t j = 0; j < ahead; j++) {
        const char *kp = (const char *)(tile_k + (PREFETCH_TILES * LANES + j) * pos_stride);
        const char *vp = (const char *)(tile_v + (PREFETCH_TILES * LANES + j) * pos_stride);
        for (int64_t off = 0; off < hd * 4; off += 64) {
          _mm_prefetch(kp + off, _MM_HINT_T0);
          _mm_prefetch(vp + off, _MM_HINT_T0);
        }
      }
    }
    if (!by_dots) {
      const __m256 gather_lanes = lanes_of(valid);
      for (int64_t d = 0; d < hd; d++)
        _mm256_storeu_ps(kt + d * LANES, _mm256_mask_i32gather_ps(_mm256_setzero_ps(), tile_k + d, lane_offsets, gather_lanes, 4));
    }

    for (int64_t i0 = 0; i0 < padded; i0 += ROWS) {
      gf_attention_rows(a, &u, b, kvh, t0, nq, rows, i0, ROWS, qrow, last);
      __m256 s[ROWS];
      if (by_dots) {
        float dots[ROWS][LANES] = {{0}};
        for (int64_t j = 0; j < n; j++) {
          if (!((valid >> j) & 1)) continue;
          const float *kj = tile_k + j * pos_stride;
          __m256 dot[ROWS];
          for (int r = 0; r < ROWS; r++) dot[r] = _mm256_setzero_ps();
          for (int64_t c = 0; c < hd; c += LANES) {
            const __m256i cm = first_lanes(hd - c);
            const __m256 kc = _mm256_maskload_ps(kj + c, cm);
            for (int r = 0; r < ROWS; r++) dot[r] = _mm256_fmadd_ps(_mm256_maskload_ps(qrow[r] + c, cm), kc, dot[r]);
          }
          for (int r = 0; r < ROWS; r++) dots[r][j] = hsum8(dot[r]);
        }
        for (int r = 0; r < ROWS; r++) s[r] = _mm256_loadu_ps(dots[r]);
      } else {
        for (int r = 0; r < ROWS; r++) s[r] = _mm256_setzero_ps();
        for (int64_t d = 0; d < hd; d++) {
          const __m256 kd = _mm256_loadu_ps(kt + d * LANES);
          for (int r = 0; r < ROWS; r++) s[r] = _mm256_fmadd_ps(_mm256_set1_ps(qrow[r][d]), kd, s[r]);
        }
      }
      for (int r = 0; r < ROWS; r++) {
        const int64_t i = i0 + r;
        const unsigned bits = valid & gf_attention_causal_bits(last[r], s0, LANES);
        if (bits == 0) {
          alpha[i] = 1.0f;
          _mm256_storeu_ps(probs + i * GF_ATTN_TILE, _mm256_setzero_ps());
          continue;
        }
        const __m256 lanes = lanes_of(bits);
        const __m256 sc = _mm256_mul_ps(s[r], scale);
        const float m_new = GF_MAX(m[i], hmax8(_mm256_blendv_ps(_mm256_set1_ps(-INFINITY), sc, lanes)));
        const __m256 p = _mm256_and_ps(lanes, exp_avx2(_mm256_sub_ps(sc, _mm256_set1_ps(m_new))));
        alpha[i] = expf(m[i] - m_new); /* 0 while m is -inf */
        l[i] = l[i] * alpha[i] + hsum8(p);
        m[i] = m_new;
        _mm256_storeu_ps(probs + i * GF_ATTN_TILE, p);
      }
      for (int64_t c = 0; c < hd; c += LANES) {
        const __m256i cm = first_lanes(hd - c);
        __m256 o[ROWS];
        for (int r = 0; r < ROWS; r++)
          o[r] = _mm256_mul_ps(_mm256_maskload_ps(acc + (i0 + r) * hd + c, cm), _mm256_set1_ps(alpha[i0 + r]));
        for (int64_t j = 0; j < n; j++) {
          const __m256 vj = _mm256_maskload_ps(tile_v + j * pos_stride + c, cm);
          for (int r = 0; r < ROWS; r++)
            o[r] = _mm256_fmadd_ps(_mm256_set1_ps(probs[(i0 + r) * GF_ATTN_TILE + j]), vj, o[r]);
        }
        for (int r = 0; r < ROWS; r++) _mm256_maskstore_ps(acc + (i0 + r) * hd + c, cm, o[r]);
      }
    }
  }
  gf_attention_store_rows(a, b, kvh, t0, t1, l, acc, hd);
}

#include "gf_target_end.h"
#endif
