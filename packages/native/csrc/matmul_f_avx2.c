/* AVX2 row-dot kernels for f32 / bf16 weights and a few activation rows (decode): each weight
 * row is streamed once, 4 rows at a time against up to 2 activation rows. */
#include "gf_internal.h"

#if GF_X86
#define GF_TARGET "avx2,fma,f16c"
#include "gf_target.h"

static inline __m256 load_w(bool bf16, const uint8_t *row, int64_t k) {
  if (bf16) {
    __m256i h = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(row + 2 * k)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(h, 16));
  }
  return _mm256_loadu_ps((const float *)(row + 4 * k));
}

static inline float load_w1(bool bf16, const uint8_t *row, int64_t k) {
  return bf16 ? gf_bf16_to_fp32(gf_load_u16(row + 2 * k)) : gf_load_f32(row + 4 * k);
}

static inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

static inline __attribute__((always_inline)) void tile(const gf_fmm_args *a, bool bf16, int64_t o0,
                                                       int R, int64_t row0, int C) {
  __m256 acc[4][2];
  for (int r = 0; r < R; r++)
    for (int c = 0; c < C; c++) acc[r][c] = _mm256_setzero_ps();
  const uint8_t *w[4];
  for (int r = 0; r < R; r++) w[r] = a->w + (o0 + r) * a->w_row_bytes;
  const int64_t body = a->in / 8 * 8;
  for (int64_t k = 0; k < body; k += 8) {
    __m256 x[2];
    for (int c = 0; c < C; c++) x[c] = _mm256_loadu_ps(a->x + (row0 + c) * a->in + k);
    for (int r = 0; r < R; r++) {
      __m256 wv = load_w(bf16, w[r], k);
      for (int c = 0; c < C; c++) acc[r][c] = _mm256_fmadd_ps(wv, x[c], acc[r][c]);
    }
  }
  for (int r = 0; r < R; r++)
    for (int c = 0; c < C; c++) {
      float v = hsum(acc[r][c]);
      const float *x = a->x + (row0 + c) * a->in;
      for (int64_t k = body; k < a->in; k++) v += load_w1(bf16, w[r], k) * x[k];
      float *dst = a->y + (row0 + c) * a->out + o0 + r;
      *dst = a->accumulate ? *dst + v : v;
    }
}

#define TILE_CASES(BF16)                                \
  switch (R * 4 + C) {                                  \
    case 4 * 4 + 2: tile(a, BF16, o, 4, row, 2); break; \
    case 4 * 4 + 1: tile(a, BF16, o, 4, row, 1); break; \
    case 3 * 4 + 2: tile(a, BF16, o, 3, row, 2); break; \
    case 3 * 4 + 1: tile(a, BF16, o, 3, row, 1); break; \
    case 2 * 4 + 2: tile(a, BF16, o, 2, row, 2); break; \
    case 2 * 4 + 1: tile(a, BF16, o, 2, row, 1); break; \
    case 1 * 4 + 2: tile(a, BF16, o, 1, row, 2); break; \
    default: tile(a, BF16, o, 1, row, 1); break;        \
  }

#define FMM_BODY(BF16)                                  \
  for (int64_t o = row_begin; o < row_end; o += 4) {    \
    int R = (int)GF_MIN(4, row_end - o);                \
    for (int64_t row = 0; row < a->n; row += 2) {       \
      int C = (int)GF_MIN(2, a->n - row);               \
      TILE_CASES(BF16)                                  \
    }                                                   \
  }

void gf_fmm_f32_avx2(const gf_fmm_args *a, int64_t row_begin, int64_t row_end) { FMM_BODY(false) }
void gf_fmm_bf16_avx2(const gf_fmm_args *a, int64_t row_begin, int64_t row_end) { FMM_BODY(true) }

#include "gf_target_end.h"
#endif
