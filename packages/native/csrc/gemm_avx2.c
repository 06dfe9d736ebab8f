/* AVX2 gemm micro-kernel (6 x 16 register tile: 12 ymm accumulators) and the one-row [K, N]
 * streaming kernel. */
#include "gf_internal.h"

#if GF_X86
#define GF_TARGET "avx2,fma,f16c"
#include "gf_target.h"

#define MR 6
#define NR 16

static void ukernel(int64_t kc, const float *ap, const float *bp, float *c, int64_t ldc,
                    bool load_c) {
  __m256 c0[MR], c1[MR];
  for (int i = 0; i < MR; i++) c0[i] = c1[i] = _mm256_setzero_ps();
  for (int64_t k = 0; k < kc; k++, ap += MR, bp += NR) {
    const __m256 b0 = _mm256_load_ps(bp), b1 = _mm256_load_ps(bp + 8);
    for (int i = 0; i < MR; i++) {
      const __m256 a = _mm256_broadcast_ss(ap + i);
      c0[i] = _mm256_fmadd_ps(a, b0, c0[i]);
      c1[i] = _mm256_fmadd_ps(a, b1, c1[i]);
    }
  }
  for (int i = 0; i < MR; i++) {
    float *row = c + i * ldc;
    if (load_c) {
      c0[i] = _mm256_add_ps(c0[i], _mm256_loadu_ps(row));
      c1[i] = _mm256_add_ps(c1[i], _mm256_loadu_ps(row + 8));
    }
    _mm256_storeu_ps(row, c0[i]);
    _mm256_storeu_ps(row + 8, c1[i]);
  }
}

/* 64 columns per pass (8 accumulators); the last partial pass goes column by column. */
static void gemv_kn(const float *a, const float *b, int64_t k, int64_t ldb, float *y, int64_t n,
                    bool accumulate) {
  int64_t j0 = 0;
  for (; j0 + 64 <= n; j0 += 64) {
    __m256 acc[8];
    for (int t = 0; t < 8; t++) acc[t] = _mm256_setzero_ps();
    for (int64_t kk = 0; kk < k; kk++) {
      const __m256 av = _mm256_broadcast_ss(a + kk);
      const float *row = b + kk * ldb + j0;
      for (int t = 0; t < 8; t++) acc[t] = _mm256_fmadd_ps(av, _mm256_loadu_ps(row + 8 * t), acc[t]);
    }
    for (int t = 0; t < 8; t++) {
      if (accumulate) acc[t] = _mm256_add_ps(acc[t], _mm256_loadu_ps(y + j0 + 8 * t));
      _mm256_storeu_ps(y + j0 + 8 * t, acc[t]);
    }
  }
  for (; j0 < n; j0++) {
    float sum = 0.0f;
    for (int64_t kk = 0; kk < k; kk++) sum += a[kk] * b[kk * ldb + j0];
    y[j0] = accumulate ? y[j0] + sum : sum;
  }
}

static inline __m256 load_row(const uint8_t *row, bool bf16, int64_t k) {
  if (bf16)
    return _mm256_castsi256_ps(
        _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(row + 2 * k))), 16));
  return _mm256_loadu_ps((const float *)(row + 4 * k));
}

/* r[i] = 8 k-values of row i  ->  r[k] = row values 0..7 at k. */
static inline void transpose8(__m256 r[8]) {
  __m256 t[8], u[8];
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int g = 0; g < 2; g++) { /* u[4g + q] lane L: rows 4g..4g+3 at k = 4L + q */
    u[4 * g + 0] = _mm256_shuffle_ps(t[4 * g], t[4 * g + 2], 0x44);
    u[4 * g + 1] = _mm256_shuffle_ps(t[4 * g], t[4 * g + 2], 0xee);
    u[4 * g + 2] = _mm256_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0x44);
    u[4 * g + 3] = _mm256_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0xee);
  }
  for (int q = 0; q < 4; q++) {
    r[q] = _mm256_permute2f128_ps(u[q], u[4 + q], 0x20);
    r[4 + q] = _mm256_permute2f128_ps(u[q], u[4 + q], 0x31);
  }
}

static void pack_rows(const uint8_t *b, size_t row_bytes, bool bf16, int64_t k0, int64_t kc,
                      int64_t n0, int64_t nc, float *bp) {
  const int64_t body = kc / 8 * 8;
  for (int64_t j0 = 0; j0 < nc; j0 += NR, bp += kc * NR) {
    for (int h = 0; h < 2; h++) {
      for (int64_t kb = 0; kb < body; kb += 8) {
        __m256 r[8];
        for (int i = 0; i < 8; i++) {
          int64_t row = j0 + 8 * h + i;
          r[i] = row < nc ? load_row(b + (size_t)(n0 + row) * row_bytes, bf16, k0 + kb) : _mm256_setzero_ps();
        }
        transpose8(r);
        for (int k = 0; k < 8; k++) _mm256_store_ps(bp + (kb + k) * NR + 8 * h, r[k]);
      }
      for (int i = 0; i < 8; i++) { /* the k tail, one value at a time */
        int64_t row = j0 + 8 * h + i;
        const uint8_t *src = b + (size_t)(n0 + row) * row_bytes;
        for (int64_t k = body; k < kc; k++)
          bp[k * NR + 8 * h + i] = row >= nc ? 0.0f
                                   : bf16   ? gf_bf16_to_fp32(gf_load_u16(src + 2 * (k0 + k)))
                                            : gf_load_f32(src + 4 * (k0 + k));
      }
    }
  }
}

const gf_ukernel gf_ukernel_avx2 = {MR, NR, ukernel, gemv_kn, pack_rows};

#include "gf_target_end.h"
#endif
