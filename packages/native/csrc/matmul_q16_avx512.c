/*
 * AVX-512 VNNI q8_0 / q4_0 matmul over interleaved weights (layout: gf.h, interleave.c).
 *
 * Per block of a 16-row group the weights are 4 (q4_0) or 8 (q8_0) vectors whose int32 lane p is
 * 4 quant bytes of row p; vpdpbusd against the activation's matching 4 bytes broadcast leaves row
 * p's integer block sum in lane p. q4_0 nibbles are used as 0..15 and q8_0 weights as w xor 0x80
 * (vpdpbusd multiplies unsigned by signed bytes); each block sum starts from the activation
 * block's bias (-8 or -128 times its sum), which cancels that offset exactly, so the integers are
 * the scalar kernel's. One multiply-add per block applies the 16 rows' scales, and the 16 results
 * are stored as they are.
 */
#include "gf_internal.h"

#if GF_X86
#define GF_TARGET "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c"
#include "gf_target.h"
#include "gf_transpose_avx512.h"

/* Activation block: int8 x[32], float d at 32, int32 bias at 36 (gf_act_chunk_bytes(1)). */
#define ACT_BLOCK_BYTES 40
/* Most activation rows per tile: the unpacked weights of a block serve this many rows. */
#define MAX_TILE_ROWS 8

/* Register m of a block: the 16 bytes at `p` (a block's quants) of rows m, m + 4, m + 8, m + 12,
 * one per 128-bit lane, so that transpose4 leaves dword j of row 4i + m in lane 4i + m of t[j]:
 * the group layout's lane p = row p. */
static inline __m512i rows_quarter(const uint8_t *p, size_t row_bytes, int m) {
  const uint8_t *r = p + (size_t)m * row_bytes;
  __m512i v = _mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)r));
  v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(r + 4 * row_bytes)), 1);
  v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(r + 8 * row_bytes)), 2);
  return _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(r + 12 * row_bytes)), 3);
}

/* The quant vectors (4 for q4_0, 8 for q8_0) of the 16 row-order rows' blocks at `block`, as the
 * group layout holds them: lane p of vector j = dword j of row p's quants. */
static inline __attribute__((always_inline)) void transposed_quants(const uint8_t *block, size_t row_bytes,
                                                                    int vectors, __m512i *v) {
  for (int h = 0; h < vectors / 4; h++) { /* q8_0: the quants' two 16-byte halves */
    const uint8_t *q = block + 2 + 16 * h;
    transpose4(rows_quarter(q, row_bytes, 0), rows_quarter(q, row_bytes, 1), rows_quarter(q, row_bytes, 2),
               rows_quarter(q, row_bytes, 3), v + 4 * h);
  }
}

/* Dword 0 of 16 rows' blocks at `block`: their f16 scales in the low halves. */
static inline __m256i gathered_scales(const uint8_t *block, size_t row_bytes) {
  const __m512i row = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                         _mm512_set1_epi32((int)row_bytes));
  return _mm512_cvtepi32_epi16(_mm512_i32gather_epi32(row, block, 1));
}

/* The 16 rows' quant vectors of block b of group g, unsigned (q4_0 nibbles 0..15, q8_0 w xor
 * 0x80), and their scales: from the interleaved group, or (`rows`) from 16 row-order rows,
 * transposed on the way in. */
static inline __attribute__((always_inline)) __m512 group_block(const gf_qmm_args *a, bool q4, bool rows,
                                                                bool prefetch, int64_t g, int64_t b,
                                                                __m512i w[8]) {
  const int vectors = q4 ? 4 : 8, quant_bytes = vectors * 64;
  const __m512i low = _mm512_set1_epi8(0x0f), flip = _mm512_set1_epi8((char)0x80);
  __m512i v[8];
  __m512 dw;
  if (prefetch) {
    /* The next group's bytes (both layouts keep a group's 16 rows' bytes together), a block's
     * share at a time: 16 short row streams are too many for the hardware prefetchers. */
    const int share = GF_GROUP_ROWS * (q4 ? GF_Q4_0_BLOCK_BYTES : GF_Q8_0_BLOCK_BYTES);
    const uint8_t *ahead = a->w + (size_t)(g + 1) * GF_GROUP_ROWS * a->w_row_bytes + (size_t)b * share;
    for (int k = 0; k < share; k += 64) _mm_prefetch((const char *)(ahead + k), _MM_HINT_T0);
  }
  if (rows) {
    const size_t row_bytes = a->w_row_bytes;
    const uint8_t *block = a->w + (size_t)g * GF_GROUP_ROWS * row_bytes + (size_t)b * (q4 ? GF_Q4_0_BLOCK_BYTES : GF_Q8_0_BLOCK_BYTES);
    transposed_quants(block, row_bytes, vectors, v);
    dw = _mm512_cvtph_ps(gathered_scales(block, row_bytes));
  } else {
    const uint8_t *quants = a->w + (size_t)g * GF_GROUP_ROWS * a->w_row_bytes;
    const uint8_t *q = quants + (size_t)b * quant_bytes;
    for (int j = 0; j < vectors; j++) v[j] = _mm512_loadu_si512(q + 64 * j);
    const uint8_t *scales = quants + (size_t)a->n_blocks * quant_bytes;
    dw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(scales + 32 * b)));
  }
  if (q4) {
    for (int j = 0; j < 4; j++) {
      w[j] = _mm512_and_si512(v[j], low);                           /* elements 4j..4j+3 */
      w[j + 4] = _mm512_and_si512(_mm512_srli_epi16(v[j], 4), low); /* elements 16+4j.. */
    }
  } else {
    for (int j = 0; j < 8; j++) w[j] = _mm512_xor_si512(v[j], flip);
  }
  return dw;
}

/* Group g's 16 outputs for activation rows row0..row0+C-1; the group's first tile prefetches the
 * next group (later tiles find this one in cache). */
static inline __attribute__((always_inline)) void group_tile(const gf_qmm_args *a, bool q4, bool rows,
                                                             int64_t g, int64_t row0, int C) {
  const bool prefetch = row0 == 0;
  const uint8_t *x[MAX_TILE_ROWS];
  __m512 acc[MAX_TILE_ROWS];
  for (int c = 0; c < C; c++) {
    x[c] = a->act + (row0 + c) * a->act_row_bytes;
    acc[c] = _mm512_setzero_ps();
  }
  for (int64_t b = 0; b < a->n_blocks; b++) {
    __m512i w[8];
    const __m512 dw = group_block(a, q4, rows, prefetch, g, b, w);
    for (int c = 0; c < C; c++) {
      const uint8_t *xb = x[c] + b * ACT_BLOCK_BYTES;
      /* Two chains of four: vpdpbusd's latency would otherwise serialise the block. */
      __m512i s0 = _mm512_set1_epi32(gf_load_i32(xb + 36)), s1 = _mm512_setzero_si512();
      for (int j = 0; j < 8; j += 2) {
        s0 = _mm512_dpbusd_epi32(s0, w[j], _mm512_set1_epi32(gf_load_i32(xb + 4 * j)));
        s1 = _mm512_dpbusd_epi32(s1, w[j + 1], _mm512_set1_epi32(gf_load_i32(xb + 4 * j + 4)));
      }
      __m512 scale = _mm512_mul_ps(dw, _mm512_set1_ps(gf_load_f32(xb + 32)));
      acc[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(s0, s1)), scale, acc[c]);
    }
  }
  /* A padded group (row-order weights regrouped on the fly) stores only its real rows. */
  const __mmask16 keep = a->group_rows ? (__mmask16)((1u << a->group_rows) - 1) : (__mmask16)0xffff;
  for (int c = 0; c < C; c++) {
    float *dst = a->y + (row0 + c) * a->out + g * GF_GROUP_ROWS;
    __m512 v = a->accumulate ? _mm512_add_ps(_mm512_maskz_loadu_ps(keep, dst), acc[c]) : acc[c];
    _mm512_mask_storeu_ps(dst, keep, v);
  }
}

/* Tiles of activation rows: up to 6 against interleaved weights (measured best), up to 8 against
 * row-order ones, whose per-block transposes are shared by more rows that way. */
static inline __attribute__((always_inline)) void qmm16(const gf_qmm_args *a, bool q4, bool rows,
                                                        int64_t g_begin, int64_t g_end) {
  const int max_tile = rows ? 8 : 6;
  for (int64_t r0 = 0; r0 < a->n; r0 += a->x_group) {
    const int64_t r_end = GF_MIN(a->n, r0 + a->x_group);
    for (int64_t g = g_begin; g < g_end; g++)
      for (int64_t row = r0; row < r_end; row += max_tile) {
        switch (GF_MIN(max_tile, r_end - row)) {
          case 8: group_tile(a, q4, rows, g, row, 8); break;
          case 7: group_tile(a, q4, rows, g, row, 7); break;
          case 6: group_tile(a, q4, rows, g, row, 6); break;
          case 5: group_tile(a, q4, rows, g, row, 5); break;
          case 4: group_tile(a, q4, rows, g, row, 4); break;
          case 3: group_tile(a, q4, rows, g, row, 3); break;
          case 2: group_tile(a, q4, rows, g, row, 2); break;
          default: group_tile(a, q4, rows, g, row, 1); break;
        }
      }
  }
}

/* gf_rows_to_group by 16-byte loads and in-register transposes (a gather of 16 dwords per vector
 * costs several times more on some cores), for the partial last group of a row-order matrix. */
void gf_rows_to_group_avx512(gf_format format, const uint8_t *rows, int64_t n_blocks, uint8_t *group) {
  const bool q4 = format == GF_FMT_Q4_0;
  const int block_bytes = q4 ? GF_Q4_0_BLOCK_BYTES : GF_Q8_0_BLOCK_BYTES, vectors = q4 ? 4 : 8;
  const size_t row_bytes = (size_t)n_blocks * block_bytes;
  uint8_t *scales = group + (size_t)n_blocks * vectors * 64;
  for (int64_t b = 0; b < n_blocks; b++) {
    const uint8_t *block = rows + (size_t)b * block_bytes;
    __m512i v[8];
    transposed_quants(block, row_bytes, vectors, v);
    for (int j = 0; j < vectors; j++) _mm512_storeu_si512(group + ((size_t)b * vectors + j) * 64, v[j]);
    _mm256_storeu_si256((__m256i *)(scales + (size_t)b * 32), gathered_scales(block, row_bytes));
  }
}

void gf_qmm16_q4_0_avx512(const gf_qmm_args *a, int64_t g_begin, int64_t g_end) {
  qmm16(a, true, false, g_begin, g_end);
}

void gf_qmm16_q8_0_avx512(const gf_qmm_args *a, int64_t g_begin, int64_t g_end) {
  qmm16(a, false, false, g_begin, g_end);
}

void gf_qmm16_rows_q4_0_avx512(const gf_qmm_args *a, int64_t g_begin, int64_t g_end) {
  qmm16(a, true, true, g_begin, g_end);
}

void gf_qmm16_rows_q8_0_avx512(const gf_qmm_args *a, int64_t g_begin, int64_t g_end) {
  qmm16(a, false, true, g_begin, g_end);
}

#include "gf_target_end.h"
#endif
