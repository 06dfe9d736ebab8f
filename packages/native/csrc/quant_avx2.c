/* AVX2 quantize / dequantize: bit-identical to the scalar reference rules in quant.c. */
#include "gf_internal.h"

#if GF_X86
#define GF_TARGET "avx2,fma,f16c"
#include "gf_target.h"

static inline __m256 abs256(__m256 v) {
  return _mm256_and_ps(v, _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff)));
}

static inline float hmax256(__m256 v) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_movehdup_ps(m));
  return _mm_cvtss_f32(m);
}

/* The block's magnitudes; false when an element is NaN or infinite (the reference result then
 * depends on element order: the scalar rule handles those blocks). */
static inline bool load_block(const float *x, __m256 v[4], __m256 a[4]) {
  const __m256 inf = _mm256_set1_ps(INFINITY);
  int bad = 0;
  for (int i = 0; i < 4; i++) {
    v[i] = _mm256_loadu_ps(x + 8 * i);
    a[i] = abs256(v[i]);
    bad |= _mm256_movemask_ps(_mm256_cmp_ps(a[i], inf, _CMP_NLT_UQ));
  }
  return bad == 0;
}

static inline __m256i round_away(__m256 q) {
  __m256 t = _mm256_round_ps(q, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
  __m256 up = _mm256_cmp_ps(abs256(_mm256_sub_ps(q, t)), _mm256_set1_ps(0.5f), _CMP_GE_OQ);
  __m256 one = _mm256_or_ps(_mm256_and_ps(q, _mm256_set1_ps(-0.0f)), _mm256_set1_ps(1.0f));
  return _mm256_cvttps_epi32(_mm256_add_ps(t, _mm256_and_ps(up, one)));
}

/* 4 x 8 int32 (each in [-128, 127]) to 32 int8 in element order. */
static inline __m256i pack_i8(__m256i a, __m256i b, __m256i c, __m256i d) {
  __m256i ab = _mm256_packs_epi32(a, b), cd = _mm256_packs_epi32(c, d); /* lane-interleaved */
  __m256i abcd = _mm256_packs_epi16(ab, cd);
  return _mm256_permutevar8x32_epi32(abcd, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

void gf_quantize_q8_0_avx2(const float *src, void *dst, int64_t n) {
  uint8_t *out = (uint8_t *)dst;
  for (int64_t b = 0; b < n / GF_BLOCK; b++) {
    const float *x = src + b * GF_BLOCK;
    uint8_t *block = out + b * GF_Q8_0_BLOCK_BYTES;
    __m256 v[4], a[4];
    if (!load_block(x, v, a)) {
      gf_quantize_block_q8_0(x, block);
      continue;
    }
    const float amax = hmax256(_mm256_max_ps(_mm256_max_ps(a[0], a[1]), _mm256_max_ps(a[2], a[3])));
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    uint16_t h = gf_fp32_to_fp16(d);
    memcpy(block, &h, 2);
    const __m256 vid = _mm256_set1_ps(id);
    __m256i q[4];
    for (int i = 0; i < 4; i++) q[i] = round_away(_mm256_mul_ps(v[i], vid));
    _mm256_storeu_si256((__m256i *)(block + 2), pack_i8(q[0], q[1], q[2], q[3]));
  }
}

void gf_quantize_q4_0_avx2(const float *src, void *dst, int64_t n) {
  uint8_t *out = (uint8_t *)dst;
  for (int64_t b = 0; b < n / GF_BLOCK; b++) {
    const float *x = src + b * GF_BLOCK;
    uint8_t *block = out + b * GF_Q4_0_BLOCK_BYTES;
    __m256 v[4], a[4];
    if (!load_block(x, v, a)) {
      gf_quantize_block_q4_0(x, block);
      continue;
    }
    const float amax = hmax256(_mm256_max_ps(_mm256_max_ps(a[0], a[1]), _mm256_max_ps(a[2], a[3])));
    float max = 0.0f; /* the reference keeps +0 when every element is zero */
    if (amax != 0.0f) {
      const __m256 vmax = _mm256_set1_ps(amax);
      uint32_t hits = 0;
      for (int i = 0; i < 4; i++)
        hits |= (uint32_t)_mm256_movemask_ps(_mm256_cmp_ps(a[i], vmax, _CMP_EQ_OQ)) << (8 * i);
      max = x[__builtin_ctz(hits)]; /* the first element of largest magnitude, with its sign */
    }
    const float d = max / -8.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    uint16_t h = gf_fp32_to_fp16(d);
    memcpy(block, &h, 2);
    const __m256 vid = _mm256_set1_ps(id), half8 = _mm256_set1_ps(8.5f);
    const __m256i fifteen = _mm256_set1_epi32(15);
    __m256i q[4];
    for (int i = 0; i < 4; i++)
      q[i] = _mm256_min_epi32(_mm256_cvttps_epi32(_mm256_add_ps(_mm256_mul_ps(v[i], vid), half8)), fifteen);
    /* byte j = q[j] | q[j + 16] << 4: elements 0..15 are q[0], q[1]; 16..31 are q[2], q[3] */
    __m256i lo = _mm256_or_si256(q[0], _mm256_slli_epi32(q[2], 4));
    __m256i hi = _mm256_or_si256(q[1], _mm256_slli_epi32(q[3], 4));
    __m256i words = _mm256_permute4x64_epi64(_mm256_packus_epi32(lo, hi), 0xd8);
    __m128i bytes = _mm_packus_epi16(_mm256_castsi256_si128(words), _mm256_extracti128_si256(words, 1));
    _mm_storeu_si128((__m128i *)(block + 2), bytes);
  }
}

void gf_quantize_bf16_avx2(const float *src, void *dst, int64_t n) {
  uint8_t *out = (uint8_t *)dst;
  int64_t i = 0;
  const __m256i abs_mask = _mm256_set1_epi32(0x7fffffff), inf = _mm256_set1_epi32(0x7f800000);
  for (; i + 16 <= n; i += 16) {
    __m256i r[2];
    for (int h = 0; h < 2; h++) {
      __m256i x = _mm256_loadu_si256((const __m256i *)(src + i + 8 * h));
      __m256i nan = _mm256_cmpgt_epi32(_mm256_and_si256(x, abs_mask), inf); /* signed compare is
                                                     fine: both sides are non-negative here */
      __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(x, 16), _mm256_set1_epi32(1));
      __m256i rounded = _mm256_srli_epi32(_mm256_add_epi32(_mm256_add_epi32(x, _mm256_set1_epi32(0x7fff)), lsb), 16);
      __m256i quiet = _mm256_or_si256(_mm256_srli_epi32(x, 16), _mm256_set1_epi32(0x40));
      r[h] = _mm256_blendv_epi8(rounded, quiet, nan);
    }
    __m256i words = _mm256_permute4x64_epi64(_mm256_packus_epi32(r[0], r[1]), 0xd8);
    _mm256_storeu_si256((__m256i *)(out + 2 * i), words);
  }
  if (i < n) gf_quantize_bf16_scalar(src + i, out + 2 * i, n - i);
}

void gf_dequantize_q8_0_avx2(const void *src, float *dst, int64_t n) {
  const uint8_t *in = (const uint8_t *)src;
  for (int64_t b = 0; b < n / GF_BLOCK; b++) {
    const uint8_t *block = in + b * GF_Q8_0_BLOCK_BYTES;
    const __m256 d = _mm256_set1_ps(gf_fp16_to_fp32(gf_load_u16(block)));
    for (int i = 0; i < 4; i++) {
      __m256i q = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(block + 2 + 8 * i)));
      _mm256_storeu_ps(dst + b * GF_BLOCK + 8 * i, _mm256_mul_ps(_mm256_cvtepi32_ps(q), d));
    }
  }
}

void gf_dequantize_q4_0_avx2(const void *src, float *dst, int64_t n) {
  const uint8_t *in = (const uint8_t *)src;
  const __m256i eight = _mm256_set1_epi32(8), fifteen = _mm256_set1_epi32(15);
  for (int64_t b = 0; b < n / GF_BLOCK; b++) {
    const uint8_t *block = in + b * GF_Q4_0_BLOCK_BYTES;
    const __m256 d = _mm256_set1_ps(gf_fp16_to_fp32(gf_load_u16(block)));
    for (int i = 0; i < 2; i++) {
      __m256i bytes = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(block + 2 + 8 * i)));
      __m256i lo = _mm256_sub_epi32(_mm256_and_si256(bytes, fifteen), eight);
      __m256i hi = _mm256_sub_epi32(_mm256_srli_epi32(bytes, 4), eight);
      _mm256_storeu_ps(dst + b * GF_BLOCK + 8 * i, _mm256_mul_ps(_mm256_cvtepi32_ps(lo), d));
      _mm256_storeu_ps(dst + b * GF_BLOCK + 16 + 8 * i, _mm256_mul_ps(_mm256_cvtepi32_ps(hi), d));
    }
  }
}

void gf_dequantize_bf16_avx2(const void *src, float *dst, int64_t n) {
  const uint8_t *in = (const uint8_t *)src;
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256i h = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(in + 2 * i)));
    _mm256_storeu_si256((__m256i *)(dst + i), _mm256_slli_epi32(h, 16));
  }
  if (i < n) gf_dequantize_bf16_scalar(in + 2 * i, dst + i, n - i);
}

#include "gf_target_end.h"
#endif
