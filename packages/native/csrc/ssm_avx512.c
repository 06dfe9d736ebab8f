/* AVX-512 step of one selective-scan state row: s = decay s + dx b, returns s . c (16 lanes over N). */
#include "gf_internal.h"

#if GF_X86
#define GF_TARGET "avx512f,avx512bw,avx512vl,avx2,fma"
#include "gf_target.h"

float gf_ssm_step_avx512(float *s, const float *b, const float *c, int64_t n, float decay, float dx) {
  const __m512 vd = _mm512_set1_ps(decay), vx = _mm512_set1_ps(dx);
  __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m512 v0 = _mm512_fmadd_ps(vd, _mm512_loadu_ps(s + i), _mm512_mul_ps(vx, _mm512_loadu_ps(b + i)));
    const __m512 v1 = _mm512_fmadd_ps(vd, _mm512_loadu_ps(s + i + 16), _mm512_mul_ps(vx, _mm512_loadu_ps(b + i + 16)));
    _mm512_storeu_ps(s + i, v0);
    _mm512_storeu_ps(s + i + 16, v1);
    acc0 = _mm512_fmadd_ps(v0, _mm512_loadu_ps(c + i), acc0);
    acc1 = _mm512_fmadd_ps(v1, _mm512_loadu_ps(c + i + 16), acc1);
  }
  if (i < n) { /* the tail, under a mask */
    const int64_t left = n - i;
    const __mmask16 m0 = left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1);
    const __mmask16 m1 = left > 16 ? (__mmask16)((1u << (left - 16)) - 1) : 0;
    const __m512 v0 = _mm512_fmadd_ps(vd, _mm512_maskz_loadu_ps(m0, s + i), _mm512_mul_ps(vx, _mm512_maskz_loadu_ps(m0, b + i)));
    _mm512_mask_storeu_ps(s + i, m0, v0);
    acc0 = _mm512_fmadd_ps(v0, _mm512_maskz_loadu_ps(m0, c + i), acc0);
    if (m1) {
      const __m512 v1 = _mm512_fmadd_ps(vd, _mm512_maskz_loadu_ps(m1, s + i + 16), _mm512_mul_ps(vx, _mm512_maskz_loadu_ps(m1, b + i + 16)));
      _mm512_mask_storeu_ps(s + i + 16, m1, v1);
      acc1 = _mm512_fmadd_ps(v1, _mm512_maskz_loadu_ps(m1, c + i + 16), acc1);
    }
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
}

#include "gf_target_end.h"
#endif
