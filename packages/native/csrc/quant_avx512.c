/* AVX-512 quantize / dequantize: bit-identical to the scalar reference rules in quant.c. */
#include "gf_internal.h"

#if GF_X86
#define GF_TARGET "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c"
#include "gf_target.h"

static inline __m512 abs512(__m512 v) {
  return _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(v), _mm512_set1_epi32(0x7fffffff)));
}

/* NaN or infinity in either half: the reference result then depends on element order. */
static inline bool non_finite(__m512 a0, __m512 a1) {
  const __m512 inf = _mm512_set1_ps(INFINITY);
  return (_mm512_cmp_ps_mask(a0, inf, _CMP_NLT_UQ) | _mm512_cmp_ps_mask(a1, inf, _CMP_NLT_UQ)) != 0;
}

/* roundf: half away from zero (the fractional part q - trunc(q) is exact). */
static inline __m512i round_away(__m512 q) {
  __m512 t = _mm512_roundscale_ps(q, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
  __mmask16 up = _mm512_cmp_ps_mask(abs512(_mm512_sub_ps(q, t)), _mm512_set1_ps(0.5f), _CMP_GE_OQ);
  __m512 one = _mm512_castsi512_ps(_mm512_or_si512(
      _mm512_and_si512(_mm512_castps_si512(q), _mm512_set1_epi32((int)0x80000000)),
      _mm512_castps_si512(_mm512_set1_ps(1.0f))));
  return _mm512_cvttps_epi32(_mm512_mask_add_ps(t, up, t, one));
}

void gf_quantize_q8_0_avx512(const float *src, void *dst, int64_t n) {
  uint8_t *out = (uint8_t *)dst;
  for (int64_t b = 0; b < n / GF_BLOCK; b++) {
    const float *x = src + b * GF_BLOCK;
    uint8_t *block = out + b * GF_Q8_0_BLOCK_BYTES;
    __m512 v0 = _mm512_loadu_ps(x), v1 = _mm512_loadu_ps(x + 16);
    __m512 a0 = abs512(v0), a1 = abs512(v1);
    if (non_finite(a0, a1)) {
      gf_quantize_block_q8_0(x, block);
      continue;
    }
    const float amax = _mm512_reduce_max_ps(_mm512_max_ps(a0, a1));
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    uint16_t h = gf_fp32_to_fp16(d);
    memcpy(block, &h, 2);
    const __m512 vid = _mm512_set1_ps(id);
    _mm_storeu_si128((__m128i *)(block + 2), _mm512_cvtsepi32_epi8(round_away(_mm512_mul_ps(v0, vid))));
    _mm_storeu_si128((__m128i *)(block + 18), _mm512_cvtsepi32_epi8(round_away(_mm512_mul_ps(v1, vid))));
  }
}

void gf_quantize_q4_0_avx512(const float *src, void *dst, int64_t n) {
  uint8_t *out = (uint8_t *)dst;
  for (int64_t b = 0; b < n / GF_BLOCK; b++) {
    const float *x = src + b * GF_BLOCK;
    uint8_t *block = out + b * GF_Q4_0_BLOCK_BYTES;
    __m512 v0 = _mm512_loadu_ps(x), v1 = _mm512_loadu_ps(x + 16);
    __m512 a0 = abs512(v0), a1 = abs512(v1);
    if (non_finite(a0, a1)) {
      gf_quantize_block_q4_0(x, block);
      continue;
    }
    const float amax = _mm512_reduce_max_ps(_mm512_max_ps(a0, a1));
    float max = 0.0f; /* the reference keeps +0 when every element is zero */
    if (amax != 0.0f) {
      __m512 vmax = _mm512_set1_ps(amax);
      uint32_t hits = (uint32_t)_mm512_cmp_ps_mask(a0, vmax, _CMP_EQ_OQ) |
                      ((uint32_t)_mm512_cmp_ps_mask(a1, vmax, _CMP_EQ_OQ) << 16);
      max = x[__builtin_ctz(hits)]; /* the first element of largest magnitude, with its sign */
    }
    const float d = max / -8.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    uint16_t h = gf_fp32_to_fp16(d);
    memcpy(block, &h, 2);
    const __m512 vid = _mm512_set1_ps(id), half8 = _mm512_set1_ps(8.5f);
    const __m512i fifteen = _mm512_set1_epi32(15);
    __m512i q0 = _mm512_min_epi32(_mm512_cvttps_epi32(_mm512_add_ps(_mm512_mul_ps(v0, vid), half8)), fifteen);
    __m512i q1 = _mm512_min_epi32(_mm512_cvttps_epi32(_mm512_add_ps(_mm512_mul_ps(v1, vid), half8)), fifteen);
    __m512i packed = _mm512_or_si512(q0, _mm512_slli_epi32(q1, 4));
    _mm_storeu_si128((__m128i *)(block + 2), _mm512_cvtepi32_epi8(packed));
  }
}

void gf_quantize_bf16_avx512(const float *src, void *dst, int64_t n) {
  uint8_t *out = (uint8_t *)dst;
  int64_t i = 0;
  const __m512i abs_mask = _mm512_set1_epi32(0x7fffffff), inf = _mm512_set1_epi32(0x7f800000);
  for (; i + 16 <= n; i += 16) {
    __m512i x = _mm512_loadu_si512(src + i);
    __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(x, abs_mask), inf);
    __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(x, 16), _mm512_set1_epi32(1));
    __m512i r = _mm512_srli_epi32(_mm512_add_epi32(_mm512_add_epi32(x, _mm512_set1_epi32(0x7fff)), lsb), 16);
    r = _mm512_mask_mov_epi32(r, nan, _mm512_or_si512(_mm512_srli_epi32(x, 16), _mm512_set1_epi32(0x40)));
    _mm256_storeu_si256((__m256i *)(out + 2 * i), _mm512_cvtepi32_epi16(r));
  }
  if (i < n) gf_quantize_bf16_scalar(src + i, out + 2 * i, n - i);
}

void gf_dequantize_q8_0_avx512(const void *src, float *dst, int64_t n) {
  const uint8_t *in = (const uint8_t *)src;
  for (int64_t b = 0; b < n / GF_BLOCK; b++) {
    const uint8_t *block = in + b * GF_Q8_0_BLOCK_BYTES;
    const __m512 d = _mm512_set1_ps(gf_fp16_to_fp32(gf_load_u16(block)));
    __m512i q0 = _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(block + 2)));
    __m512i q1 = _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(block + 18)));
    _mm512_storeu_ps(dst + b * GF_BLOCK, _mm512_mul_ps(_mm512_cvtepi32_ps(q0), d));
    _mm512_storeu_ps(dst + b * GF_BLOCK + 16, _mm512_mul_ps(_mm512_cvtepi32_ps(q1), d));
  }
}

void gf_dequantize_q4_0_avx512(const void *src, float *dst, int64_t n) {
  const uint8_t *in = (const uint8_t *)src;
  const __m512i eight = _mm512_set1_epi32(8);
  for (int64_t b = 0; b < n / GF_BLOCK; b++) {
    const uint8_t *block = in + b * GF_Q4_0_BLOCK_BYTES;
    const __m512 d = _mm512_set1_ps(gf_fp16_to_fp32(gf_load_u16(block)));
    __m512i bytes = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(block + 2)));
    __m512i lo = _mm512_sub_epi32(_mm512_and_si512(bytes, _mm512_set1_epi32(15)), eight);
    __m512i hi = _mm512_sub_epi32(_mm512_srli_epi32(bytes, 4), eight);
    _mm512_storeu_ps(dst + b * GF_BLOCK, _mm512_mul_ps(_mm512_cvtepi32_ps(lo), d));
    _mm512_storeu_ps(dst + b * GF_BLOCK + 16, _mm512_mul_ps(_mm512_cvtepi32_ps(hi), d));
  }
}

void gf_dequantize_bf16_avx512(const void *src, float *dst, int64_t n) {
  const uint8_t *in = (const uint8_t *)src;
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    __m512i h = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(in + 2 * i)));
    _mm512_storeu_si512(dst + i, _mm512_slli_epi32(h, 16));
  }
  if (i < n) gf_dequantize_bf16_scalar(in + 2 * i, dst + i, n - i);
}

#include "gf_target_end.h"
#endif
