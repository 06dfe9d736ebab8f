/*
 * Scalar quantizers (ggml's reference rules, bit for bit), dequantizers, half / bf16 conversions
 * and the multi-threaded quantize / dequantize entry points.
 */
#include <math.h>

#include "gf_internal.h"

/* ---- conversions ---- */

uint16_t gf_fp32_to_fp16(float f) {
  uint32_t x;
  memcpy(&x, &f, 4);
  uint32_t sign = (x >> 16) & 0x8000, ax = x & 0x7fffffff;
  if (ax > 0x7f800000) return (uint16_t)(sign | 0x7e00 | ((ax >> 13) & 0x3ff)); /* quiet NaN */
  if (ax >= 0x477ff000) return (uint16_t)(sign | 0x7c00); /* rounds to >= 65536: infinity */
  if (ax >= 0x38800000) {                                 /* normal half */
    uint32_t rounded = ax + 0xfff + ((ax >> 13) & 1);
    return (uint16_t)(sign | ((rounded - 0x38000000) >> 13));
  }
  /* subnormal half: ax * 2^24 rounded to nearest even */
  int exponent = (int)(ax >> 23);
  if (exponent < 102) return (uint16_t)sign; /* below 2^-25: rounds to zero */
  uint32_t mantissa = (ax & 0x7fffff) | 0x800000;
  int shift = 126 - exponent; /* 14..24 */
  uint32_t q = mantissa >> shift, rest = mantissa & ((1u << shift) - 1), half = 1u << (shift - 1);
  if (rest > half || (rest == half && (q & 1))) q++;
  return (uint16_t)(sign | q);
}

float gf_fp16_to_fp32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000) << 16, exponent = (h >> 10) & 0x1f, mantissa = h & 0x3ff;
  uint32_t bits;
  if (exponent == 0x1f) {
    bits = sign | 0x7f800000 | (mantissa << 13);
  } else if (exponent != 0) {
    bits = sign | ((exponent + 112) << 23) | (mantissa << 13);
  } else if (mantissa == 0) {
    bits = sign;
  } else {
    float v = (float)mantissa * (1.0f / 16777216.0f); /* mantissa * 2^-24, exact */
    memcpy(&bits, &v, 4);
    bits |= sign;
  }
  float f;
  memcpy(&f, &bits, 4);
  return f;
}

uint16_t gf_fp32_to_bf16(float f) {
  uint32_t x;
  memcpy(&x, &f, 4);
  if ((x & 0x7fffffff) > 0x7f800000) return (uint16_t)((x >> 16) | 0x40); /* NaN stays NaN */
  return (uint16_t)((x + 0x7fff + ((x >> 16) & 1)) >> 16);
}

float gf_bf16_to_fp32(uint16_t h) {
  uint32_t bits = (uint32_t)h << 16;
  float f;
  memcpy(&f, &bits, 4);
  return f;
}

/* What x86's float -> int conversion the reference compiles to gives: truncation, and 0 in the
 * low byte for NaN or out-of-range values (cvttss2si's 0x80000000). C leaves those undefined. */
static inline int8_t trunc_to_i8(float v) {
  if (!(v > -129.0f && v < 128.0f)) return 0;
  return (int8_t)(int)v;
}

/* ---- q8_0 ---- */

void gf_quantize_block_q8_0(const float *x, uint8_t *out) {
  float amax = 0.0f;
  /* The reference's MAX(amax, v) macro: a NaN element makes amax NaN, the next element replaces
   * it. Keep exactly that fold. */
  for (int j = 0; j < GF_BLOCK; j++) {
    float v = fabsf(x[j]);
    amax = amax > v ? amax : v;
  }
  const float d = amax / 127.0f;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  uint16_t h = gf_fp32_to_fp16(d);
  memcpy(out, &h, 2);
  for (int j = 0; j < GF_BLOCK; j++) out[2 + j] = (uint8_t)trunc_to_i8(roundf(x[j] * id));
}

void gf_quantize_q8_0_scalar(const float *src, void *dst, int64_t n) {
  uint8_t *out = (uint8_t *)dst;
  for (int64_t b = 0; b < n / GF_BLOCK; b++)
    gf_quantize_block_q8_0(src + b * GF_BLOCK, out + b * GF_Q8_0_BLOCK_BYTES);
}

void gf_dequantize_q8_0_scalar(const void *src, float *dst, int64_t n) {
  const uint8_t *in = (const uint8_t *)src;
  for (int64_t b = 0; b < n / GF_BLOCK; b++) {
    const uint8_t *block = in + b * GF_Q8_0_BLOCK_BYTES;
    const float d = gf_fp16_to_fp32(gf_load_u16(block));
    for (int j = 0; j < GF_BLOCK; j++) dst[b * GF_BLOCK + j] = (float)(int8_t)block[2 + j] * d;
  }
}

/* ---- q4_0 ---- */

void gf_quantize_block_q4_0(const float *x, uint8_t *out) {
  float amax = 0.0f, max = 0.0f;
  for (int j = 0; j < GF_BLOCK; j++) {
    const float v = x[j];
    if (amax < fabsf(v)) {
      amax = fabsf(v);
      max = v;
    }
  }
  const float d = max / -8.0f;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  uint16_t h = gf_fp32_to_fp16(d);
  memcpy(out, &h, 2);
  for (int j = 0; j < GF_BLOCK / 2; j++) {
    int lo = trunc_to_i8(x[j] * id + 8.5f), hi = trunc_to_i8(x[j + 16] * id + 8.5f);
    /* The reference stores MIN(15, q) in a uint8_t: negative q (never for finite input) wraps. */
    uint8_t q0 = (uint8_t)GF_MIN(15, lo), q1 = (uint8_t)GF_MIN(15, hi);
    out[2 + j] = (uint8_t)(q0 | (q1 << 4));
  }
}

void gf_quantize_q4_0_scalar(const float *src, void *dst, int64_t n) {
  uint8_t *out = (uint8_t *)dst;
  for (int64_t b = 0; b < n / GF_BLOCK; b++)
    gf_quantize_block_q4_0(src + b * GF_BLOCK, out + b * GF_Q4_0_BLOCK_BYTES);
}

void gf_dequantize_q4_0_scalar(const void *src, float *dst, int64_t n) {
  const uint8_t *in = (const uint8_t *)src;
  for (int64_t b = 0; b < n / GF_BLOCK; b++) {
    const uint8_t *block = in + b * GF_Q4_0_BLOCK_BYTES;
    const float d = gf_fp16_to_fp32(gf_load_u16(block));
    float *y = dst + b * GF_BLOCK;
    for (int j = 0; j < GF_BLOCK / 2; j++) {
      y[j] = (float)((block[2 + j] & 0x0f) - 8) * d;
      y[j + 16] = (float)((block[2 + j] >> 4) - 8) * d;
    }
  }
}

/* ---- bf16 ---- */

void gf_quantize_bf16_scalar(const float *src, void *dst, int64_t n) {
  uint8_t *out = (uint8_t *)dst;
  for (int64_t i = 0; i < n; i++) {
    uint16_t h = gf_fp32_to_bf16(src[i]);
    memcpy(out + 2 * i, &h, 2);
  }
}

void gf_dequantize_bf16_scalar(const void *src, float *dst, int64_t n) {
  const uint8_t *in = (const uint8_t *)src;
  for (int64_t i = 0; i < n; i++) dst[i] = gf_bf16_to_fp32(gf_load_u16(in + 2 * i));
}

/* ---- f32: copies ---- */

static void copy_f32_in(const float *src, void *dst, int64_t n) { memcpy(dst, src, (size_t)n * 4); }
static void copy_f32_out(const void *src, float *dst, int64_t n) { memcpy(dst, src, (size_t)n * 4); }

/* ---- dispatch ---- */

gf_quantize_fn gf_quantize_impl(gf_format format, gf_level level) {
  static const gf_quantize_fn table[GF_FMT_COUNT][GF_LEVEL_COUNT] = {
      [GF_FMT_F32] = {copy_f32_in, NULL, NULL},
#if GF_X86
      [GF_FMT_BF16] = {gf_quantize_bf16_scalar, gf_quantize_bf16_avx2, gf_quantize_bf16_avx512},
      [GF_FMT_Q8_0] = {gf_quantize_q8_0_scalar, gf_quantize_q8_0_avx2, gf_quantize_q8_0_avx512},
      [GF_FMT_Q4_0] = {gf_quantize_q4_0_scalar, gf_quantize_q4_0_avx2, gf_quantize_q4_0_avx512},
#else
      [GF_FMT_BF16] = {gf_quantize_bf16_scalar, NULL, NULL},
      [GF_FMT_Q8_0] = {gf_quantize_q8_0_scalar, NULL, NULL},
      [GF_FMT_Q4_0] = {gf_quantize_q4_0_scalar, NULL, NULL},
#endif
  };
  return table[format][level];
}

gf_dequantize_fn gf_dequantize_impl(gf_format format, gf_level level) {
  static const gf_dequantize_fn table[GF_FMT_COUNT][GF_LEVEL_COUNT] = {
      [GF_FMT_F32] = {copy_f32_out, NULL, NULL},
#if GF_X86
      [GF_FMT_BF16] = {gf_dequantize_bf16_scalar, gf_dequantize_bf16_avx2,
                       gf_dequantize_bf16_avx512},
      [GF_FMT_Q8_0] = {gf_dequantize_q8_0_scalar, gf_dequantize_q8_0_avx2,
                       gf_dequantize_q8_0_avx512},
      [GF_FMT_Q4_0] = {gf_dequantize_q4_0_scalar, gf_dequantize_q4_0_avx2,
                       gf_dequantize_q4_0_avx512},
#else
      [GF_FMT_BF16] = {gf_dequantize_bf16_scalar, NULL, NULL},
      [GF_FMT_Q8_0] = {gf_dequantize_q8_0_scalar, NULL, NULL},
      [GF_FMT_Q4_0] = {gf_dequantize_q4_0_scalar, NULL, NULL},
#endif
  };
  return table[format][level];
}

/* Elements handled per parallel item: whole blocks for the block formats. */
static int64_t unit_of(gf_format format) {
  return format == GF_FMT_Q8_0 || format == GF_FMT_Q4_0 ? GF_BLOCK : 1;
}
/* Below this many elements a call stays on the calling thread. */
#define MIN_ELEMENTS_PER_THREAD (1 << 16)

typedef struct {
  gf_format format;
  const void *src;
  void *dst;
  int64_t unit;
  gf_quantize_fn q;
  gf_dequantize_fn dq;
} convert_ctx;

static void quantize_task(void *p, int64_t begin, int64_t end, int thread) {
  (void)thread;
  const convert_ctx *c = (const convert_ctx *)p;
  size_t unit_bytes = gf_row_bytes(c->format, c->unit);
  c->q((const float *)c->src + begin * c->unit, (uint8_t *)c->dst + begin * unit_bytes,
       (end - begin) * c->unit);
}

static void dequantize_task(void *p, int64_t begin, int64_t end, int thread) {
  (void)thread;
  const convert_ctx *c = (const convert_ctx *)p;
  size_t unit_bytes = gf_row_bytes(c->format, c->unit);
  c->dq((const uint8_t *)c->src + begin * unit_bytes, (float *)c->dst + begin * c->unit,
        (end - begin) * c->unit);
}

int gf_quantize(gf_format format, const float *src, int64_t rows, int64_t cols, void *dst) {
  int kernel = gf_kernel_index(GF_FAMILY_QUANTIZE, format);
  gf_call_lock();
  gf_level level = gf_kernel_level(kernel);
  convert_ctx c = {format, src, dst, unit_of(format), gf_quantize_impl(format, level), NULL};
  int64_t units = rows * cols / c.unit;
  gf_parallel_for(units, 1, MIN_ELEMENTS_PER_THREAD / c.unit, quantize_task, &c);
  gf_count(kernel, level);
  gf_call_unlock();
  return GF_OK;
}

int gf_dequantize(gf_format format, const void *src, int64_t rows, int64_t cols, float *dst) {
  int kernel = gf_kernel_index(GF_FAMILY_DEQUANTIZE, format);
  gf_call_lock();
  gf_level level = gf_kernel_level(kernel);
  convert_ctx c = {format, src, dst, unit_of(format), NULL, gf_dequantize_impl(format, level)};
  int64_t units = rows * cols / c.unit;
  gf_parallel_for(units, 1, MIN_ELEMENTS_PER_THREAD / c.unit, dequantize_task, &c);
  gf_count(kernel, level);
  gf_call_unlock();
  return GF_OK;
}

typedef struct {
  gf_format format;
  const uint8_t *src;
  size_t row_bytes;
  int64_t cols, groups; /* groups: interleaved 16-row groups (0 in row order) */
  const int32_t *rows;
  float *dst;
  gf_dequantize_fn dq;
  uint8_t *tmp[GF_MAX_THREADS];
} gather_ctx;

static void gather_task(void *p, int64_t begin, int64_t end, int thread) {
  const gather_ctx *c = (const gather_ctx *)p;
  for (int64_t i = begin; i < end; i++) {
    const int64_t row = c->rows[i], g = row / GF_GROUP_ROWS;
    const uint8_t *src = c->src + (size_t)row * c->row_bytes;
    if (g < c->groups) { /* back to row order first */
      gf_group_to_rows(c->format, c->src + (size_t)g * GF_GROUP_ROWS * c->row_bytes, c->cols / GF_BLOCK,
                       (int)(row % GF_GROUP_ROWS), c->tmp[thread]);
      src = c->tmp[thread];
    }
    c->dq(src, c->dst + i * c->cols, c->cols);
  }
}

int gf_dequantize_rows(gf_format format, gf_layout layout, const void *src, int64_t src_rows,
                       int64_t cols, const int32_t *rows, int64_t n_rows, float *dst) {
  int kernel = gf_kernel_index(GF_FAMILY_DEQUANTIZE_ROWS, format);
  gf_call_lock();
  gf_level level = gf_kernel_level(kernel);
  gather_ctx c = {format, (const uint8_t *)src, gf_row_bytes(format, cols), cols,
                  layout == GF_LAYOUT_INTERLEAVED ? gf_interleaved_groups(src_rows) : 0,
                  rows, dst, gf_dequantize_impl(format, level), {NULL}};
  int rc = GF_OK;
  for (int t = 0; c.groups > 0 && t < gf_threads() && rc == GF_OK; t++) {
    c.tmp[t] = (uint8_t *)gf_scratch(t, GF_SCRATCH_TMP, c.row_bytes);
    if (!c.tmp[t]) rc = GF_ERR_NOMEM;
  }
  if (rc == GF_OK) {
    gf_parallel_for(n_rows, 1, GF_MAX(1, MIN_ELEMENTS_PER_THREAD / GF_MAX(cols, 1)), gather_task, &c);
    gf_count(kernel, level);
  }
  gf_call_unlock();
  return rc;
}
