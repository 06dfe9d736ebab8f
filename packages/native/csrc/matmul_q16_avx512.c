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

/* Activation block: int8 x[32], float d at 32, int32 bias at 36 (gf_act_chunk_bytes(1)). */
#define ACT_BLOCK_BYTES 40
/* Activation rows per tile: the unpacked weights of a block serve this many rows. */
#define MAX_TILE_ROWS 6

/* Group g's 16 outputs for activation rows row0..row0+C-1. */
static inline __attribute__((always_inline)) void group_tile(const gf_qmm_args *a, bool q4,
                                                             int64_t g, int64_t row0, int C) {
  const int vectors = q4 ? 4 : 8, quant_bytes = vectors * 64;
  const int64_t n_blocks = a->n_blocks;
  const uint8_t *quants = a->w + (size_t)g * GF_GROUP_ROWS * a->w_row_bytes;
  const uint8_t *scales = quants + (size_t)n_blocks * quant_bytes;
  const __m512i low = _mm512_set1_epi8(0x0f), flip = _mm512_set1_epi8((char)0x80);
  const uint8_t *x[MAX_TILE_ROWS];
  __m512 acc[MAX_TILE_ROWS];
  for (int c = 0; c < C; c++) {
    x[c] = a->act + (row0 + c) * a->act_row_bytes;
    acc[c] = _mm512_setzero_ps();
  }
  for (int64_t b = 0; b < n_blocks; b++) {
    const uint8_t *q = quants + (size_t)b * quant_bytes;
    _mm_prefetch((const char *)(q + 2048), _MM_HINT_T0);
    _mm_prefetch((const char *)(q + 2048 + 64 * (vectors / 2)), _MM_HINT_T0);
    __m512i w[8];
    if (q4) {
      for (int j = 0; j < 4; j++) {
        __m512i v = _mm512_loadu_si512(q + 64 * j);
        w[j] = _mm512_and_si512(v, low);                           /* elements 4j..4j+3 */
        w[j + 4] = _mm512_and_si512(_mm512_srli_epi16(v, 4), low); /* elements 16+4j.. */
      }
    } else {
      for (int j = 0; j < 8; j++) w[j] = _mm512_xor_si512(_mm512_loadu_si512(q + 64 * j), flip);
    }
    const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(scales + 32 * b)));
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

static inline __attribute__((always_inline)) void qmm16(const gf_qmm_args *a, bool q4,
                                                        int64_t g_begin, int64_t g_end) {
  for (int64_t r0 = 0; r0 < a->n; r0 += a->x_group) {
    const int64_t r_end = GF_MIN(a->n, r0 + a->x_group);
    for (int64_t g = g_begin; g < g_end; g++)
      for (int64_t row = r0; row < r_end; row += MAX_TILE_ROWS) {
        switch (GF_MIN(MAX_TILE_ROWS, r_end - row)) {
          case 6: group_tile(a, q4, g, row, 6); break;
          case 5: group_tile(a, q4, g, row, 5); break;
          case 4: group_tile(a, q4, g, row, 4); break;
          case 3: group_tile(a, q4, g, row, 3); break;
          case 2: group_tile(a, q4, g, row, 2); break;
          default: group_tile(a, q4, g, row, 1); break;
        }
      }
  }
}

/* gf_rows_to_group with one dword gather per output vector (16 rows' 4 bytes) and one per block's
 * 16 scales: the regrouping of row-order weights for prefill at memory speed, not byte by byte. */
void gf_rows_to_group_avx512(gf_format format, const uint8_t *rows, int64_t n_blocks, uint8_t *group) {
  const bool q4 = format == GF_FMT_Q4_0;
  const int block_bytes = q4 ? GF_Q4_0_BLOCK_BYTES : GF_Q8_0_BLOCK_BYTES, vectors = q4 ? 4 : 8;
  const int row_bytes = (int)(n_blocks * block_bytes);
  const __m512i row = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                         _mm512_set1_epi32(row_bytes));
  uint8_t *scales = group + (size_t)n_blocks * vectors * 64;
  for (int64_t b = 0; b < n_blocks; b++) {
    const uint8_t *block = rows + (size_t)b * block_bytes;
    for (int j = 0; j < vectors; j++)
      _mm512_storeu_si512(group + ((size_t)b * vectors + j) * 64, _mm512_i32gather_epi32(row, block + 2 + 4 * j, 1));
    /* dword 0 of each row's block: its f16 scale in the low half */
    _mm256_storeu_si256((__m256i *)(scales + (size_t)b * 32), _mm512_cvtepi32_epi16(_mm512_i32gather_epi32(row, block, 1)));
  }
}

void gf_qmm16_q4_0_avx512(const gf_qmm_args *a, int64_t g_begin, int64_t g_end) {
  qmm16(a, true, g_begin, g_end);
}

void gf_qmm16_q8_0_avx512(const gf_qmm_args *a, int64_t g_begin, int64_t g_end) {
  qmm16(a, false, g_begin, g_end);
}

#include "gf_target_end.h"
#endif
