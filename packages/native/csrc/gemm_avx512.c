/* AVX-512 gemm micro-kernel (8 x 32 register tile: 16 zmm accumulators, A broadcast from the
 * packed panel, two B vectors per k) and the one-row [K, N] streaming kernel. */
#include "gf_internal.h"

#if GF_X86
#define GF_TARGET "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c"
#include "gf_target.h"

#define MR 8
#define NR 32

static void ukernel(int64_t kc, const float *ap, const float *bp, float *c, int64_t ldc,
                    bool load_c) {
  __m512 c0[MR], c1[MR];
  for (int i = 0; i < MR; i++) c0[i] = c1[i] = _mm512_setzero_ps();
  for (int64_t k = 0; k < kc; k++, ap += MR, bp += NR) {
    const __m512 b0 = _mm512_load_ps(bp), b1 = _mm512_load_ps(bp + 16);
    for (int i = 0; i < MR; i++) {
      const __m512 a = _mm512_set1_ps(ap[i]);
      c0[i] = _mm512_fmadd_ps(a, b0, c0[i]);
      c1[i] = _mm512_fmadd_ps(a, b1, c1[i]);
    }
  }
  for (int i = 0; i < MR; i++) {
    float *row = c + i * ldc;
    if (load_c) {
      c0[i] = _mm512_add_ps(c0[i], _mm512_loadu_ps(row));
      c1[i] = _mm512_add_ps(c1[i], _mm512_loadu_ps(row + 16));
    }
    _mm512_storeu_ps(row, c0[i]);
    _mm512_storeu_ps(row + 16, c1[i]);
  }
}

/* 128 columns per pass (8 accumulators), masked at the end of the range. */
static void gemv_kn(const float *a, const float *b, int64_t k, int64_t ldb, float *y, int64_t n,
                    bool accumulate) {
  for (int64_t j0 = 0; j0 < n; j0 += 128) {
    __mmask16 m[8];
    for (int t = 0; t < 8; t++) {
      int64_t left = n - j0 - 16 * t;
      m[t] = left >= 16 ? (__mmask16)0xffff : left <= 0 ? 0 : (__mmask16)((1u << left) - 1);
    }
    __m512 acc[8];
    for (int t = 0; t < 8; t++) acc[t] = _mm512_setzero_ps();
    for (int64_t kk = 0; kk < k; kk++) {
      const __m512 av = _mm512_set1_ps(a[kk]);
      const float *row = b + kk * ldb + j0;
      for (int t = 0; t < 8; t++)
        acc[t] = _mm512_fmadd_ps(av, _mm512_maskz_loadu_ps(m[t], row + 16 * t), acc[t]);
    }
    for (int t = 0; t < 8; t++) {
      if (accumulate) acc[t] = _mm512_add_ps(acc[t], _mm512_maskz_loadu_ps(m[t], y + j0 + 16 * t));
      _mm512_mask_storeu_ps(y + j0 + 16 * t, m[t], acc[t]);
    }
  }
}

/* 16 floats of one B^T row (masked to `m`), widened from bf16 when needed; zeros past nc. */
static inline __m512 load_row(const uint8_t *row, bool bf16, int64_t k, __mmask16 m) {
  if (bf16)
    return _mm512_castsi512_ps(
        _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, row + 2 * k)), 16));
  return _mm512_maskz_loadu_ps(m, row + 4 * k);
}

/* r[i] = 16 k-values of row i  ->  r[k] = row values 0..15 at k. */
static inline void transpose16(__m512 r[16]) {
  __m512 t[16], u[16];
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int g = 0; g < 4; g++) { /* u[4g + q] lane L: rows 4g..4g+3 at k = 4L + q */
    u[4 * g + 0] = _mm512_shuffle_ps(t[4 * g], t[4 * g + 2], 0x44);
    u[4 * g + 1] = _mm512_shuffle_ps(t[4 * g], t[4 * g + 2], 0xee);
    u[4 * g + 2] = _mm512_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0x44);
    u[4 * g + 3] = _mm512_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0xee);
  }
  for (int q = 0; q < 4; q++) {
    __m512 v = _mm512_shuffle_f32x4(u[q], u[4 + q], 0x88), w = _mm512_shuffle_f32x4(u[q], u[4 + q], 0xdd);
    __m512 v2 = _mm512_shuffle_f32x4(u[8 + q], u[12 + q], 0x88), w2 = _mm512_shuffle_f32x4(u[8 + q], u[12 + q], 0xdd);
    r[q] = _mm512_shuffle_f32x4(v, v2, 0x88);
    r[8 + q] = _mm512_shuffle_f32x4(v, v2, 0xdd);
    r[4 + q] = _mm512_shuffle_f32x4(w, w2, 0x88);
    r[12 + q] = _mm512_shuffle_f32x4(w, w2, 0xdd);
  }
}

static void pack_rows(const uint8_t *b, size_t row_bytes, bool bf16, int64_t k0, int64_t kc,
                      int64_t n0, int64_t nc, float *bp) {
  for (int64_t j0 = 0; j0 < nc; j0 += NR, bp += kc * NR) {
    for (int h = 0; h < 2; h++) {
      for (int64_t kb = 0; kb < kc; kb += 16) {
        int64_t left = kc - kb;
        __mmask16 m = left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1);
        __m512 r[16];
        for (int i = 0; i < 16; i++) {
          int64_t row = j0 + 16 * h + i;
          r[i] = row < nc ? load_row(b + (size_t)(n0 + row) * row_bytes, bf16, k0 + kb, m) : _mm512_setzero_ps();
        }
        transpose16(r);
        for (int64_t k = 0; k < GF_MIN(16, left); k++) _mm512_store_ps(bp + (kb + k) * NR + 16 * h, r[k]);
      }
    }
  }
}

const gf_ukernel gf_ukernel_avx512 = {MR, NR, ukernel, gemv_kn, pack_rows};

#include "gf_target_end.h"
#endif
