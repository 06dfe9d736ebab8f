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

const gf_ukernel gf_ukernel_avx2 = {MR, NR, ukernel, gemv_kn};

#include "gf_target_end.h"
#endif
