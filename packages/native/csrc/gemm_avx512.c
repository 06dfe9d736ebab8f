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

const gf_ukernel gf_ukernel_avx512 = {MR, NR, ukernel, gemv_kn};

#include "gf_target_end.h"
#endif
