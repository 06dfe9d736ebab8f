/*
 * The interleaved layout of q8_0 / q4_0 weights (see gf.h): converting in place between it and row
 * order, reading rows back, and the scalar matmul over it (the oracle of the SIMD kernels).
 *
 * Why: in row order one 64-byte load holds parts of 2-4 blocks of one row, so a kernel spends
 * shuffles or per-lane scale permutes on every vector. Interleaved, vector j of a block holds the
 * same 4 quant bytes of 16 rows, so each int32 lane of vpdpbusd is one row, the activation is a
 * broadcast, the 16 rows' scales are one 32-byte load and the results need no reduction.
 */
#include "gf_internal.h"

int64_t gf_interleaved_groups(int64_t rows) { return rows / GF_GROUP_ROWS; }

/* Byte j of quant vector v of block b for row p of a group, in a group of `n_blocks` blocks. */
static inline size_t quant_offset(size_t quant_bytes, int64_t b, int p, int t) {
  return (size_t)b * quant_bytes * GF_GROUP_ROWS + (size_t)(t / 4) * 64 + (size_t)p * 4 + (size_t)(t % 4);
}

void gf_group_to_rows(gf_format format, const uint8_t *group, int64_t n_blocks, int p, uint8_t *row) {
  const size_t block_bytes = format == GF_FMT_Q4_0 ? GF_Q4_0_BLOCK_BYTES : GF_Q8_0_BLOCK_BYTES;
  const size_t quant_bytes = block_bytes - 2;
  const uint8_t *scales = group + (size_t)n_blocks * quant_bytes * GF_GROUP_ROWS;
  for (int64_t b = 0; b < n_blocks; b++) {
    uint8_t *dst = row + (size_t)b * block_bytes;
    memcpy(dst, scales + ((size_t)b * GF_GROUP_ROWS + (size_t)p) * 2, 2);
    for (int t = 0; t < (int)quant_bytes; t++) dst[2 + t] = group[quant_offset(quant_bytes, b, p, t)];
  }
}

void gf_rows_to_group(gf_format format, const uint8_t *rows, int64_t n_blocks, uint8_t *group) {
  const size_t block_bytes = format == GF_FMT_Q4_0 ? GF_Q4_0_BLOCK_BYTES : GF_Q8_0_BLOCK_BYTES;
  const size_t quant_bytes = block_bytes - 2, row_bytes = (size_t)n_blocks * block_bytes;
  uint8_t *scales = group + (size_t)n_blocks * quant_bytes * GF_GROUP_ROWS;
  for (int p = 0; p < GF_GROUP_ROWS; p++)
    for (int64_t b = 0; b < n_blocks; b++) {
      const uint8_t *src = rows + (size_t)p * row_bytes + (size_t)b * block_bytes;
      memcpy(scales + ((size_t)b * GF_GROUP_ROWS + (size_t)p) * 2, src, 2);
      for (int t = 0; t < (int)quant_bytes; t++) group[quant_offset(quant_bytes, b, p, t)] = src[2 + t];
    }
}

typedef void (*rows_to_group_fn)(gf_format format, const uint8_t *rows, int64_t n_blocks, uint8_t *group);

typedef struct {
  gf_format format;
  uint8_t *bytes;
  int64_t n_blocks;
  size_t group_bytes;
  bool to_interleaved;
  rows_to_group_fn to_group;
  uint8_t *tmp[GF_MAX_THREADS];
} interleave_ctx;

static void interleave_task(void *p, int64_t begin, int64_t end, int thread) {
  const interleave_ctx *c = (const interleave_ctx *)p;
  uint8_t *tmp = c->tmp[thread];
  const size_t row_bytes = c->group_bytes / GF_GROUP_ROWS;
  for (int64_t g = begin; g < end; g++) {
    uint8_t *group = c->bytes + (size_t)g * c->group_bytes;
    memcpy(tmp, group, c->group_bytes);
    if (c->to_interleaved)
      c->to_group(c->format, tmp, c->n_blocks, group);
    else
      for (int r = 0; r < GF_GROUP_ROWS; r++) gf_group_to_rows(c->format, tmp, c->n_blocks, r, group + r * row_bytes);
  }
}

int gf_interleave(gf_format format, void *bytes, int64_t rows, int64_t cols, bool to_interleaved) {
  gf_call_lock();
  interleave_ctx c = {format, (uint8_t *)bytes, cols / GF_BLOCK,
                      GF_GROUP_ROWS * gf_row_bytes(format, cols), to_interleaved, gf_rows_to_group, {NULL}};
#if GF_X86
  /* Interleaving at load is for the avx512 matmul: its gather regrouping, byte loop elsewhere. */
  if (gf_kernel_level(gf_kernel_index(GF_FAMILY_MATMUL, format)) == GF_LEVEL_AVX512) c.to_group = gf_rows_to_group_avx512;
#endif
  int rc = GF_OK;
  for (int t = 0; t < gf_threads() && rc == GF_OK; t++) {
    c.tmp[t] = (uint8_t *)gf_scratch(t, GF_SCRATCH_TMP, c.group_bytes);
    if (!c.tmp[t]) rc = GF_ERR_NOMEM;
  }
  if (rc == GF_OK) gf_parallel_for(gf_interleaved_groups(rows), 1, 16, interleave_task, &c);
  gf_call_unlock();
  return rc;
}

/* ---- scalar matmul over interleaved groups: the same integers and float order as the row-order
 * scalar kernel, so results are identical to it ---- */

static inline const uint8_t *act_block(const gf_qmm_args *a, int64_t row, int64_t block) {
  return a->act + row * a->act_row_bytes + block * gf_act_chunk_bytes(1);
}

static inline void group_scalar(const gf_qmm_args *a, bool q4, int64_t g_begin, int64_t g_end) {
  const size_t quant_bytes = q4 ? 16 : 32;
  const size_t group_bytes = GF_GROUP_ROWS * a->w_row_bytes;
  for (int64_t g = g_begin; g < g_end; g++) {
    const uint8_t *group = a->w + (size_t)g * group_bytes;
    const uint8_t *scales = group + (size_t)a->n_blocks * quant_bytes * GF_GROUP_ROWS;
    for (int p = 0; p < GF_GROUP_ROWS; p++)
      for (int64_t row = 0; row < a->n; row++) {
        float sum = 0.0f;
        for (int64_t b = 0; b < a->n_blocks; b++) {
          const int8_t *x = (const int8_t *)act_block(a, row, b);
          int32_t isum = 0;
          for (int t = 0; t < (int)quant_bytes; t++) {
            uint8_t q = group[quant_offset(quant_bytes, b, p, t)];
            if (q4)
              isum += ((q & 0x0f) - 8) * x[t] + ((q >> 4) - 8) * x[t + 16];
            else
              isum += (int8_t)q * x[t];
          }
          float dw = gf_fp16_to_fp32(gf_load_u16(scales + ((size_t)b * GF_GROUP_ROWS + (size_t)p) * 2));
          sum += (float)isum * (dw * gf_load_f32(x + 32));
        }
        float *dst = a->y + row * a->out + g * GF_GROUP_ROWS + p;
        *dst = a->accumulate ? *dst + sum : sum;
      }
  }
}

void gf_qmm16_q8_0_scalar(const gf_qmm_args *a, int64_t g_begin, int64_t g_end) {
  group_scalar(a, false, g_begin, g_end);
}

void gf_qmm16_q4_0_scalar(const gf_qmm_args *a, int64_t g_begin, int64_t g_end) {
  group_scalar(a, true, g_begin, g_end);
}
