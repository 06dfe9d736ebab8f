/* AVX-512 SwiGLU: out = gate / (1 + exp(-gate)) * up, 16 lanes, the exp by a polynomial. */
#include "gf_internal.h"

#if GF_X86
#define GF_TARGET "avx512f,avx512bw,avx512vl,avx2,fma"
#include "gf_target.h"

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

static inline __m512 swiglu16(__m512 g, __m512 u) {
  const __m512 e = exp_avx512(_mm512_sub_ps(_mm512_setzero_ps(), g));
  return _mm512_mul_ps(_mm512_div_ps(g, _mm512_add_ps(_mm512_set1_ps(1.0f), e)), u);
}

void gf_swiglu_avx512(const float *gate, const float *up, float *out, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    _mm512_storeu_ps(out + i, swiglu16(_mm512_loadu_ps(gate + i), _mm512_loadu_ps(up + i)));
  if (i < n) {
    const __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
    _mm512_mask_storeu_ps(out + i, m, swiglu16(_mm512_maskz_loadu_ps(m, gate + i), _mm512_maskz_loadu_ps(m, up + i)));
  }
}

#include "gf_target_end.h"
#endif
