/*
 * AVX2 q8_0 / q4_0 matmul kernels: the layout of matmul_q_avx512.c with 8-block chunks, and
 * vpmaddubsw (unsigned x signed bytes to int16 pairs) + vpmaddwd for the dot products.
 * q4_0: nibbles 0..15 times activations (|x| <= 127) give pairs of at most 3810, so the 8 pair
 * sums of a chunk add up in int16 without overflow (30480) before one widening; the bias lanes
 * cancel the offset 8. q8_0: the sign trick (|w| times x with w's sign) keeps pairs within
 * 2 * 128 * 127, so every product widens at once. Integer results per block equal the scalar's.
 */
#include "gf_internal.h"

#if GF_X86
#define GF_TARGET "avx2,fma,f16c"
#include "gf_target.h"

#define LANES 8
#define CHUNK_ACT_BYTES (LANES * 40)
#define ROWS 4    /* weight rows per tile */
#define COLS 2    /* activation rows per tile */
#define PREFETCH 4096 /* bytes ahead in each weight row stream */

static inline void transpose4(__m256i a0, __m256i a1, __m256i a2, __m256i a3, __m256i t[4]) {
  __m256i t0 = _mm256_unpacklo_epi32(a0, a1), t1 = _mm256_unpackhi_epi32(a0, a1);
  __m256i t2 = _mm256_unpacklo_epi32(a2, a3), t3 = _mm256_unpackhi_epi32(a2, a3);
  t[0] = _mm256_unpacklo_epi64(t0, t2);
  t[1] = _mm256_unpackhi_epi64(t0, t2);
  t[2] = _mm256_unpacklo_epi64(t1, t3);
  t[3] = _mm256_unpackhi_epi64(t1, t3);
}

/* Register m gets the 16 bytes at `offset` of blocks 2m and 2m + 1. */
static inline __m256i load2(const uint8_t *chunk, size_t block_bytes, int m, size_t offset) {
  const uint8_t *p = chunk + (size_t)(2 * m) * block_bytes + offset;
  __m256i v = _mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)p));
  return _mm256_inserti128_si256(v, _mm_loadu_si128((const __m128i *)(p + block_bytes)), 1);
}

/* The 8 block scales in lane order (lane p = 4i + m holds block 2m + i). */
static inline __m256 load_scales(const uint8_t *chunk, size_t block_bytes) {
  static const int order[LANES] = {0, 2, 4, 6, 1, 3, 5, 7};
  uint16_t h[LANES];
  for (int p = 0; p < LANES; p++) h[p] = gf_load_u16(chunk + (size_t)order[p] * block_bytes);
  return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)h));
}

static inline const uint8_t *chunk_ptr(const uint8_t *row, int64_t chunk, int64_t n_blocks,
                                       size_t block_bytes, uint8_t *pad) {
  const uint8_t *p = row + (size_t)chunk * LANES * block_bytes;
  int64_t valid = n_blocks - chunk * LANES;
  if (valid >= LANES) return p;
  memset(pad, 0, LANES * block_bytes);
  memcpy(pad, p, (size_t)valid * block_bytes);
  return pad;
}

/* One weight row's chunk, unpacked: w[j] lane p = elements 4j..4j+3 of block gf_lane_block(8, p)
 * (q4_0: nibbles as unsigned bytes; q8_0: signed bytes); d = the 8 scales in lane order. */
typedef struct {
  __m256i w[8];
  __m256 d;
} wchunk;

static inline void unpack_q4(const uint8_t *chunk, wchunk *out) {
  __m256i t[4];
  transpose4(load2(chunk, 18, 0, 2), load2(chunk, 18, 1, 2), load2(chunk, 18, 2, 2),
             load2(chunk, 18, 3, 2), t);
  const __m256i low = _mm256_set1_epi8(0x0f);
  for (int j = 0; j < 4; j++) {
    out->w[j] = _mm256_and_si256(t[j], low);
    out->w[j + 4] = _mm256_and_si256(_mm256_srli_epi16(t[j], 4), low);
  }
  out->d = load_scales(chunk, 18);
}

static inline void unpack_q8(const uint8_t *chunk, wchunk *out) {
  for (int h = 0; h < 2; h++) {
    __m256i t[4];
    size_t off = 2 + 16 * (size_t)h;
    transpose4(load2(chunk, 34, 0, off), load2(chunk, 34, 1, off), load2(chunk, 34, 2, off),
               load2(chunk, 34, 3, off), t);
    for (int j = 0; j < 4; j++) out->w[4 * h + j] = t[j];
  }
  out->d = load_scales(chunk, 34);
}

static inline void unpack(const gf_qmm_args *a, bool q4, int64_t o, int64_t ch, wchunk *out) {
  uint8_t pad[LANES * 34];
  const uint8_t *row_chunk = a->w + o * a->w_row_bytes + (size_t)ch * LANES * (q4 ? 18 : 34);
  for (int line = 0; line < (q4 ? 3 : 5); line++) /* 144 / 272 bytes per chunk */
    _mm_prefetch((const char *)(row_chunk + PREFETCH + 64 * line), _MM_HINT_T0);
  const uint8_t *chunk = chunk_ptr(a->w + o * a->w_row_bytes, ch, a->n_blocks, q4 ? 18 : 34, pad);
  if (q4)
    unpack_q4(chunk, out);
  else
    unpack_q8(chunk, out);
}

/* The chunk's 8 integer block dot products (one per lane) of one weight row and one activation
 * row. */
static inline __m256i dot_chunk(bool q4, const wchunk *wc, const uint8_t *x) {
  const __m256i ones = _mm256_set1_epi16(1);
  if (q4) {
    __m256i s16 = _mm256_maddubs_epi16(wc->w[0], _mm256_loadu_si256((const __m256i *)x));
    for (int j = 1; j < 8; j++)
      s16 = _mm256_add_epi16(
          s16, _mm256_maddubs_epi16(wc->w[j], _mm256_loadu_si256((const __m256i *)(x + 32 * j))));
    return _mm256_add_epi32(_mm256_madd_epi16(s16, ones),
                            _mm256_loadu_si256((const __m256i *)(x + 36 * LANES)));
  }
  __m256i s = _mm256_setzero_si256();
  for (int j = 0; j < 8; j++) {
    __m256i w = wc->w[j];
    __m256i xs = _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)(x + 32 * j)), w);
    s = _mm256_add_epi32(
        s, _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_sign_epi8(w, w), xs), ones));
  }
  return s;
}

/* Output rows o0..o0+R-1 against activation rows row0..row0+C-1; see matmul_q_avx512.c. */
static inline __attribute__((always_inline)) void tile(const gf_qmm_args *a, bool q4, int64_t o0,
                                                       int R, int64_t row0, int C,
                                                       const wchunk *unpacked) {
  const int64_t chunks = (a->n_blocks + LANES - 1) / LANES;
  wchunk local[ROWS];
  __m256 acc[ROWS][COLS];
  for (int r = 0; r < R; r++)
    for (int c = 0; c < C; c++) acc[r][c] = _mm256_setzero_ps();
  for (int64_t ch = 0; ch < chunks; ch++) {
    const wchunk *wc = unpacked ? unpacked + ch * R : local;
    if (!unpacked)
      for (int r = 0; r < R; r++) unpack(a, q4, o0 + r, ch, &local[r]);
    for (int c = 0; c < C; c++) {
      const uint8_t *x = a->act + (row0 + c) * a->act_row_bytes + ch * CHUNK_ACT_BYTES;
      const __m256 dx = _mm256_loadu_ps((const float *)(x + 32 * LANES));
      for (int r = 0; r < R; r++) {
        __m256i s = dot_chunk(q4, &wc[r], x);
        acc[r][c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_mul_ps(wc[r].d, dx), acc[r][c]);
      }
    }
  }
  for (int r = 0; r < R; r++)
    for (int c = 0; c < C; c++) {
      __m128 v = _mm_add_ps(_mm256_castps256_ps128(acc[r][c]), _mm256_extractf128_ps(acc[r][c], 1));
      v = _mm_add_ps(v, _mm_movehl_ps(v, v));
      v = _mm_add_ss(v, _mm_movehdup_ps(v));
      float sum = _mm_cvtss_f32(v);
      float *dst = a->y + (row0 + c) * a->out + o0 + r;
      *dst = a->accumulate ? *dst + sum : sum;
    }
}

#define TILE_CASES(Q4, U)                                \
  switch (R * 4 + C) {                                   \
    case 4 * 4 + 2: tile(a, Q4, o, 4, row, 2, U); break; \
    case 4 * 4 + 1: tile(a, Q4, o, 4, row, 1, U); break; \
    case 3 * 4 + 2: tile(a, Q4, o, 3, row, 2, U); break; \
    case 3 * 4 + 1: tile(a, Q4, o, 3, row, 1, U); break; \
    case 2 * 4 + 2: tile(a, Q4, o, 2, row, 2, U); break; \
    case 2 * 4 + 1: tile(a, Q4, o, 2, row, 1, U); break; \
    case 1 * 4 + 2: tile(a, Q4, o, 1, row, 2, U); break; \
    default: tile(a, Q4, o, 1, row, 1, U); break;        \
  }

static inline __attribute__((always_inline)) void qmm(const gf_qmm_args *a, bool q4,
                                                      int64_t row_begin, int64_t row_end,
                                                      uint8_t *work) {
  const int64_t chunks = (a->n_blocks + LANES - 1) / LANES;
  wchunk *unpacked = (wchunk *)work;
  for (int64_t g = 0; g < a->n; g += a->x_group) {
    int64_t g_end = GF_MIN(a->n, g + a->x_group);
    bool reuse = g_end - g > COLS;
    for (int64_t o = row_begin; o < row_end; o += ROWS) {
      int R = (int)GF_MIN(ROWS, row_end - o);
      if (reuse)
        for (int64_t ch = 0; ch < chunks; ch++)
          for (int r = 0; r < R; r++) unpack(a, q4, o + r, ch, &unpacked[ch * R + r]);
      for (int64_t row = g; row < g_end; row += COLS) {
        int C = (int)GF_MIN(COLS, g_end - row);
        if (reuse) {
          TILE_CASES(q4, unpacked)
        } else {
          TILE_CASES(q4, NULL)
        }
      }
    }
  }
}

void gf_qmm_q4_0_avx2(const gf_qmm_args *a, int64_t row_begin, int64_t row_end, uint8_t *work) {
  qmm(a, true, row_begin, row_end, work);
}

void gf_qmm_q8_0_avx2(const gf_qmm_args *a, int64_t row_begin, int64_t row_end, uint8_t *work) {
  qmm(a, false, row_begin, row_end, work);
}

#include "gf_target_end.h"
#endif
