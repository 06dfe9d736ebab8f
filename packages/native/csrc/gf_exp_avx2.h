/* exp over 8 floats for the AVX2 kernels; include after gf_target.h (it needs the target). */
#ifndef GF_EXP_AVX2_H
#define GF_EXP_AVX2_H

/*
 * exp(x) within about 1 ulp of expf for x in [-86, 89], as exp_avx512 in gf_exp_avx512.h (the same
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

#endif
