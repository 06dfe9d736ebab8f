/* AVX2 SwiGLU: out = gate / (1 + exp(-gate)) * up, 8 lanes, the exp by a polynomial. */
#include "gf_internal.h"

#if GF_X86
#define GF_TARGET "avx2,fma"
#include "gf_target.h"

/*
 * exp(x) within about 1 ulp of expf for x in [-86, 89], as exp_avx512 in act_avx512.c (the same
 * reduction and polynomial, so the two levels agree bit for bit). Without vscalefps, 2^n is built
 * from exponent bits as 2^(n - 1) and the product doubled once more: n = 128 (x up to 88.72)
 * has no exponent field of its own, and the doubling overflows to +inf where exp does.
 */
static inline __m256 exp_avx2(__m256 x) {
  x = _mm256_min_ps(_mm256_set1_ps(89.0f), _mm256_max_ps(_mm256_set1_ps(-86.0f), x));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.442695022e+00f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(6.93145751953125e-01f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(1.428606765e-06f), r);
  __m256 t = _mm256_set1_ps(1.381457318e-03f);
  t = _mm256_fmadd_ps(t, r, _mm256_set1_ps(8.368703537e-03f));
  t = _mm256_fmadd_ps(t, r, _mm256_set1_ps(4.166838899e-02f));
  t = _mm256_fmadd_ps(t, r, _mm256_set1_ps(1.666652113e-01f));
  t = _mm256_fmadd_ps(t, r, _mm256_set1_ps(4.999999404e-01f));
  const __m256 p = _mm256_add_ps(_mm256_fmadd_ps(t, _mm256_mul_ps(r, r), r), _mm256_set1_ps(1.0f));
  /* n in [-124, 128]: n - 1 + 127 is a normal exponent field. */
  const __m256i field = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(126)), 23);
  return _mm256_mul_ps(_mm256_mul_ps(p, _mm256_castsi256_ps(field)), _mm256_set1_ps(2.0f));
}

static inline __m256 swiglu8(__m256 g, __m256 u) {
  const __m256 e = exp_avx2(_mm256_sub_ps(_mm256_setzero_ps(), g));
  return _mm256_mul_ps(_mm256_div_ps(g, _mm256_add_ps(_mm256_set1_ps(1.0f), e)), u);
}

void gf_swiglu_avx2(const float *gate, const float *up, float *out, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(out + i, swiglu8(_mm256_loadu_ps(gate + i), _mm256_loadu_ps(up + i)));
  if (i < n) {
    /* Lanes below the count: masked loads do not touch the memory past the end. */
    const __m256i m = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(n - i)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    _mm256_maskstore_ps(out + i, m, swiglu8(_mm256_maskload_ps(gate + i, m), _mm256_maskload_ps(up + i, m)));
  }
}

#include "gf_target_end.h"
#endif
