/* AVX2 SwiGLU: out = gate / (1 + exp(-gate)) * up, 8 lanes, the exp by a polynomial. */
#include "gf_internal.h"

#if GF_X86
#define GF_TARGET "avx2,fma"
#include "gf_target.h"

#include "gf_exp_avx2.h"

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
