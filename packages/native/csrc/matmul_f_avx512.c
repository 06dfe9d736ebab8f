/* AVX-512 row-dot kernels for f32 / bf16 weights and a few activation rows (decode): each weight
 * row is streamed once, 4 rows at a time against up to 4 activation rows. */
#include "gf_internal.h"

#if GF_X86
#define GF_TARGET "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c"
#include "gf_target.h"

static inline __m512 load_w(bool bf16, const uint8_t *row, int64_t k, __mmask16 m) {
  if (bf16) {
    __m256i h = _mm256_maskz_loadu_epi16(m, row + 2 * k);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
  }
  return _mm512_maskz_loadu_ps(m, row + 4 * k);
}

static inline __attribute__((always_inline)) void tile(const gf_fmm_args *a, bool bf16, int64_t o0,
                                                       int R, int64_t row0, int C) {
  __m512 acc[4][4];
  for (int r = 0; r < R; r++)
    for (int c = 0; c < C; c++) acc[r][c] = _mm512_setzero_ps();
  const uint8_t *w[4];
  for (int r = 0; r < R; r++) w[r] = a->w + (o0 + r) * a->w_row_bytes;
  for (int64_t k = 0; k < a->in; k += 16) {
    __mmask16 m = a->in - k >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (a->in - k)) - 1);
    __m512 x[4];
    for (int c = 0; c < C; c++) x[c] = _mm512_maskz_loadu_ps(m, a->x + (row0 + c) * a->in + k);
    for (int r = 0; r < R; r++) {
      __m512 wv = load_w(bf16, w[r], k, m);
      for (int c = 0; c < C; c++) acc[r][c] = _mm512_fmadd_ps(wv, x[c], acc[r][c]);
    }
  }
  for (int r = 0; r < R; r++)
    for (int c = 0; c < C; c++) {
      float v = _mm512_reduce_add_ps(acc[r][c]);
      float *dst = a->y + (row0 + c) * a->out + o0 + r;
      *dst = a->accumulate ? *dst + v : v;
    }
}

#define TILE_CASES(BF16)                                \
  switch (R * 4 + C) {                                  \
    case 4 * 4 + 4: tile(a, BF16, o, 4, row, 4); break; \
    case 4 * 4 + 3: tile(a, BF16, o, 4, row, 3); break; \
    case 4 * 4 + 2: tile(a, BF16, o, 4, row, 2); break; \
    case 4 * 4 + 1: tile(a, BF16, o, 4, row, 1); break; \
    case 3 * 4 + 4: tile(a, BF16, o, 3, row, 4); break; \
    case 3 * 4 + 3: tile(a, BF16, o, 3, row, 3); break; \
    case 3 * 4 + 2: tile(a, BF16, o, 3, row, 2); break; \
    case 3 * 4 + 1: tile(a, BF16, o, 3, row, 1); break; \
    case 2 * 4 + 4: tile(a, BF16, o, 2, row, 4); break; \
    case 2 * 4 + 3: tile(a, BF16, o, 2, row, 3); break; \
    case 2 * 4 + 2: tile(a, BF16, o, 2, row, 2); break; \
    case 2 * 4 + 1: tile(a, BF16, o, 2, row, 1); break; \
    case 1 * 4 + 4: tile(a, BF16, o, 1, row, 4); break; \
    case 1 * 4 + 3: tile(a, BF16, o, 1, row, 3); break; \
    case 1 * 4 + 2: tile(a, BF16, o, 1, row, 2); break; \
    default: tile(a, BF16, o, 1, row, 1); break;        \
  }

#define FMM_BODY(BF16)                                  \
  for (int64_t o = row_begin; o < row_end; o += 4) {    \
    int R = (int)GF_MIN(4, row_end - o);                \
    for (int64_t row = 0; row < a->n; row += 4) {       \
      int C = (int)GF_MIN(4, a->n - row);               \
      TILE_CASES(BF16)                                  \
    }                                                   \
  }

void gf_fmm_f32_avx512(const gf_fmm_args *a, int64_t row_begin, int64_t row_end) { FMM_BODY(false) }
void gf_fmm_bf16_avx512(const gf_fmm_args *a, int64_t row_begin, int64_t row_end) { FMM_BODY(true) }

#include "gf_target_end.h"
#endif
