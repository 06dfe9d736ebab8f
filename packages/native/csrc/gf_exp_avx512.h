/* exp over 16 floats for the AVX-512 kernels; include after gf_target.h (it needs the target). */
#ifndef GF_EXP_AVX512_H
#define GF_EXP_AVX512_H

/*
 * exp(x) within about 1 ulp of expf for x in [-86, 89]: x = n ln2 + r with |r| <= ln2 / 2 (ln2 in
 * two parts, the first exact in n * ln2_hi), exp(r) by a degree-6 polynomial (fitted for relative
 * error 4e-9 on that interval), times 2^n. Below -86 x is clamped (silu only adds the result to 1,
 * which it no longer changes); above 88.72 the result overflows to +inf, as expf does. NaN stays
 * NaN (max / min return their second operand when one is NaN).
 */
static inline __m512 exp_avx512(__m512 x) {
  x = _mm512_min_ps(_mm512_set1_ps(89.0f), _mm512_max_ps(_mm512_set1_ps(-86.0f), x));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.442695022e+00f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(6.93145751953125e-01f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.428606765e-06f), r);
  __m512 t = _mm512_set1_ps(1.381457318e-03f);
  t = _mm512_fmadd_ps(t, r, _mm512_set1_ps(8.368703537e-03f));
  t = _mm512_fmadd_ps(t, r, _mm512_set1_ps(4.166838899e-02f));
  t = _mm512_fmadd_ps(t, r, _mm512_set1_ps(1.666652113e-01f));
  t = _mm512_fmadd_ps(t, r, _mm512_set1_ps(4.999999404e-01f));
  const __m512 p = _mm512_add_ps(_mm512_fmadd_ps(t, _mm512_mul_ps(r, r), r), _mm512_set1_ps(1.0f));
  return _mm512_scalef_ps(p, n); /* p * 2^n, +inf past the largest float */
}

#endif
