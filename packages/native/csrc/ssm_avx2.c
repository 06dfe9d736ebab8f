/* AVX2 step of one selective-scan state row: s = decay s + dx b, returns s . c (8 lanes over N). */
#include "gf_internal.h"

#if GF_X86
#define GF_TARGET "avx2,fma"
#include "gf_target.h"

float gf_ssm_step_avx2(float *s, const float *b, const float *c, int64_t n, float decay, float dx) {
  const __m256 vd = _mm256_set1_ps(decay), vx = _mm256_set1_ps(dx);
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256 v0 = _mm256_fmadd_ps(vd, _mm256_loadu_ps(s + i), _mm256_mul_ps(vx, _mm256_loadu_ps(b + i)));
    const __m256 v1 = _mm256_fmadd_ps(vd, _mm256_loadu_ps(s + i + 8), _mm256_mul_ps(vx, _mm256_loadu_ps(b + i + 8)));
    _mm256_storeu_ps(s + i, v0);
    _mm256_storeu_ps(s + i + 8, v1);
    acc0 = _mm256_fmadd_ps(v0, _mm256_loadu_ps(c + i), acc0);
    acc1 = _mm256_fmadd_ps(v1, _mm256_loadu_ps(c + i + 8), acc1);
  }
  const __m256 acc = _mm256_add_ps(acc0, acc1);
  __m128 h = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
  h = _mm_add_ps(h, _mm_movehl_ps(h, h));
  h = _mm_add_ss(h, _mm_movehdup_ps(h));
  float sum = _mm_cvtss_f32(h);
  for (; i < n; i++) {
    const float v = decay * s[i] + dx * b[i];
    s[i] = v;
    sum += v * c[i];
  }
  return sum;
}

#include "gf_target_end.h"
#endif
