/*
 * AVX-512 VNNI q8_0 / q4_0 matmul kernels.
 *
 * 16 weight blocks ("a chunk") of one row are transposed so that dword lane p of register j holds
 * elements 4j..4j+3 of block gf_lane_block(16, p): then 8 vpdpbusd per chunk leave each block's
 * whole integer dot product in its own int32 lane, and one convert + one multiply-add per chunk
 * (not per block) applies the 16 scales. vpdpbusd multiplies unsigned by signed bytes: q4_0
 * nibbles are used as 0..15 and q8_0 weights as w xor 0x80 = w + 128, and the activation chunk's
 * bias lanes (-8 or -128 times the block sum) start each accumulator to cancel that offset
 * exactly. Integer results per block are therefore identical to the scalar kernel's.
 */
#include "gf_internal.h"

#if GF_X86
#define GF_TARGET "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c"
#include "gf_target.h"
#include "gf_transpose_avx512.h"

#define LANES 16
#define CHUNK_ACT_BYTES (LANES * 40)
/* Software prefetch distance of the decode kernel: measured best of 2-16 KiB at H-Micro shapes. */
#define PREFETCH 4096

/* Register m gets the 16 bytes at `offset` of blocks 4m..4m+3. */
static inline __m512i load4(const uint8_t *chunk, size_t block_bytes, int m, size_t offset) {
  const uint8_t *p = chunk + (size_t)(4 * m) * block_bytes + offset;
  __m512i v = _mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)p));
  v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(p + block_bytes)), 1);
  v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(p + 2 * block_bytes)), 2);
  return _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(p + 3 * block_bytes)), 3);
}

/* The 16 block scales in lane order (gathered as dwords: the half plus 2 bytes of the block). */
static inline __m512 load_scales(const uint8_t *chunk, size_t block_bytes) {
  const __m512i idx = _mm512_mullo_epi32(
      _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15),
      _mm512_set1_epi32((int)block_bytes));
  __m512i words = _mm512_i32gather_epi32(idx, chunk, 1);
  return _mm512_cvtph_ps(_mm512_cvtepi32_epi16(words));
}

/* The chunk's bytes, or a zero-padded copy for the row's last, partial chunk (zero scales make
 * the padding contribute nothing; nothing past the row is read). */
static inline const uint8_t *chunk_ptr(const uint8_t *row, int64_t chunk, int64_t n_blocks,
                                       size_t block_bytes, uint8_t *pad) {
  const uint8_t *p = row + (size_t)chunk * LANES * block_bytes;
  int64_t valid = n_blocks - chunk * LANES;
  if (valid >= LANES) return p;
  memset(pad, 0, LANES * block_bytes);
  memcpy(pad, p, (size_t)valid * block_bytes);
  return pad;
}

/* One weight row's chunk, unpacked: w[j] lane p = elements 4j..4j+3 of block gf_lane_block(16, p)
 * as unsigned bytes; d = the 16 scales in the same lane order. */
typedef struct {
  __m512i w[8];
  __m512 d;
} wchunk;

static inline void unpack_q4(const uint8_t *chunk, wchunk *out) {
  __m512i t[4];
  transpose4(load4(chunk, 18, 0, 2), load4(chunk, 18, 1, 2), load4(chunk, 18, 2, 2),
             load4(chunk, 18, 3, 2), t);
  const __m512i low = _mm512_set1_epi8(0x0f);
  for (int j = 0; j < 4; j++) {
    out->w[j] = _mm512_and_si512(t[j], low);                           /* elements 4j..4j+3 */
    out->w[j + 4] = _mm512_and_si512(_mm512_srli_epi16(t[j], 4), low); /* elements 16+4j.. */
  }
  out->d = load_scales(chunk, 18);
}

static inline void unpack_q8(const uint8_t *chunk, wchunk *out) {
  const __m512i flip = _mm512_set1_epi8((char)0x80);
  for (int h = 0; h < 2; h++) {
    __m512i t[4];
    size_t off = 2 + 16 * (size_t)h;
    transpose4(load4(chunk, 34, 0, off), load4(chunk, 34, 1, off), load4(chunk, 34, 2, off),
               load4(chunk, 34, 3, off), t);
    for (int j = 0; j < 4; j++) out->w[4 * h + j] = _mm512_xor_si512(t[j], flip);
  }
  out->d = load_scales(chunk, 34);
}

static inline void unpack(const gf_qmm_args *a, bool q4, int64_t o, int64_t ch, wchunk *out) {
  uint8_t pad[LANES * 34];
  const uint8_t *chunk = chunk_ptr(a->w + o * a->w_row_bytes, ch, a->n_blocks, q4 ? 18 : 34, pad);
  if (q4)
    unpack_q4(chunk, out);
  else
    unpack_q8(chunk, out);
}

/* Output rows o0..o0+R-1 against activation rows row0..row0+C-1. With `unpacked` (chunk-major,
 * R per chunk) the weights were unpacked once for many activation tiles; without, each chunk is
 * unpacked here (decode: one activation tile). */
static inline __attribute__((always_inline)) void tile(const gf_qmm_args *a, bool q4, int64_t o0,
                                                       int R, int64_t row0, int C,
                                                       const wchunk *unpacked) {
  const int64_t chunks = (a->n_blocks + LANES - 1) / LANES;
  wchunk local[4];
  __m512 acc[4][4];
  for (int r = 0; r < R; r++)
    for (int c = 0; c < C; c++) acc[r][c] = _mm512_setzero_ps();
  for (int64_t ch = 0; ch < chunks; ch++) {
    const wchunk *wc = unpacked ? unpacked + ch * R : local;
    if (!unpacked)
      for (int r = 0; r < R; r++) unpack(a, q4, o0 + r, ch, &local[r]);
    const uint8_t *x[4];
    for (int c = 0; c < C; c++) x[c] = a->act + (row0 + c) * a->act_row_bytes + ch * CHUNK_ACT_BYTES;
    for (int r = 0; r < R; r++) {
      __m512i w[8];
      for (int j = 0; j < 8; j++) w[j] = wc[r].w[j];
      const __m512 dw = wc[r].d;
      for (int c = 0; c < C; c++) {
        __m512i s = _mm512_loadu_si512(x[c] + 36 * LANES); /* bias */
        for (int j = 0; j < 8; j++)
          s = _mm512_dpbusd_epi32(s, w[j], _mm512_loadu_si512(x[c] + 64 * j));
        __m512 scale = _mm512_mul_ps(dw, _mm512_loadu_ps((const float *)(x[c] + 32 * LANES)));
        acc[r][c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), scale, acc[r][c]);
      }
    }
  }
  for (int r = 0; r < R; r++)
    for (int c = 0; c < C; c++) {
      float v = _mm512_reduce_add_ps(acc[r][c]);
      float *dst = a->y + (row0 + c) * a->out + o0 + r;
      *dst = a->accumulate ? *dst + v : v;
    }
}

/* Constant R and C so that every tile shape gets its own fully unrolled code. */
#define TILE_CASES(Q4, U)                                 \
  switch (R * 4 + C) {                                    \
    case 4 * 4 + 4: tile(a, Q4, o, 4, row, 4, U); break;  \
    case 4 * 4 + 3: tile(a, Q4, o, 4, row, 3, U); break;  \
    case 4 * 4 + 2: tile(a, Q4, o, 4, row, 2, U); break;  \
    case 4 * 4 + 1: tile(a, Q4, o, 4, row, 1, U); break;  \
    case 3 * 4 + 4: tile(a, Q4, o, 3, row, 4, U); break;  \
    case 3 * 4 + 3: tile(a, Q4, o, 3, row, 3, U); break;  \
    case 3 * 4 + 2: tile(a, Q4, o, 3, row, 2, U); break;  \
    case 3 * 4 + 1: tile(a, Q4, o, 3, row, 1, U); break;  \
    case 2 * 4 + 4: tile(a, Q4, o, 2, row, 4, U); break;  \
    case 2 * 4 + 3: tile(a, Q4, o, 2, row, 3, U); break;  \
    case 2 * 4 + 2: tile(a, Q4, o, 2, row, 2, U); break;  \
    case 2 * 4 + 1: tile(a, Q4, o, 2, row, 1, U); break;  \
    case 1 * 4 + 4: tile(a, Q4, o, 1, row, 4, U); break;  \
    case 1 * 4 + 3: tile(a, Q4, o, 1, row, 3, U); break;  \
    case 1 * 4 + 2: tile(a, Q4, o, 1, row, 2, U); break;  \
    default: tile(a, Q4, o, 1, row, 1, U); break;         \
  }

/* ---- weight-aligned layout (decode: one or two activation rows) ---- */

/* The 32 scales of the chunk at `chunk` as two vectors of 16 (blocks 0..15, 16..31): gathered
 * dwords whose low halves are the blocks' f16 scales. Only the first `valid` blocks are read; the
 * others get scale 0. */
static inline void aligned_scales(const uint8_t *chunk, int block_bytes, int valid, __m512 *lo,
                                  __m512 *hi) {
  const __m512i idx = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                         _mm512_set1_epi32(block_bytes));
  const __m512i zero = _mm512_setzero_si512();
  if (valid >= GF_ALIGNED_BLOCKS) {
    *lo = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_i32gather_epi32(idx, chunk, 1)));
    *hi = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_i32gather_epi32(idx, chunk + 16 * block_bytes, 1)));
    return;
  }
  /* The last gathered dword of a row ends 2 bytes past its last block's scale: still inside the
   * row (the block's quants follow), so a gather never leaves the weights. */
  const __mmask16 mlo = (__mmask16)(valid >= 16 ? 0xffff : (1u << valid) - 1);
  const __mmask16 mhi = (__mmask16)(valid <= 16 ? 0 : (1u << (valid - 16)) - 1);
  *lo = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_mask_i32gather_epi32(zero, mlo, idx, chunk, 1)));
  *hi = _mm512_cvtph_ps(
      _mm512_cvtepi32_epi16(_mm512_mask_i32gather_epi32(zero, mhi, idx, chunk + 16 * block_bytes, 1)));
}

/* Weight vector i of a chunk: its 64 bytes, or for the row's last, partial chunk only the bytes
 * of its `valid` blocks (the rest zero: zero weights and zero activations there add nothing, and
 * nothing past the row is read). */
static inline __m512i aligned_load(const uint8_t *w, int i, int block_bytes, int valid) {
  if (valid >= GF_ALIGNED_BLOCKS) return _mm512_loadu_si512(w + 64 * i);
  int bytes = valid * block_bytes - 64 * i;
  __mmask64 m = bytes >= 64 ? ~(__mmask64)0 : bytes <= 0 ? 0 : (((__mmask64)1 << bytes) - 1);
  return _mm512_maskz_loadu_epi8(m, w + 64 * i);
}

/* One chunk (32 blocks, `valid` of them real) of output rows o0..o0+R-1 against activation rows
 * 0..C-1. block_of[i] lane L = the chunk block whose byte starts lane L of vector i. */
static inline __attribute__((always_inline)) void aligned_chunk(const gf_qmm_args *a, bool q4,
                                                                int64_t o0, int R, int C, int64_t ch,
                                                                int valid, const int32_t (*block_of)[16],
                                                                __m512 acc[4][2]) {
  const int block_bytes = q4 ? 18 : 34, vectors = q4 ? 9 : 17, span = vectors * 64;
  const size_t chunk_bytes = q4 ? 3 * 576 + 128 : 2 * 1088 + 128;
  const __m512i low = _mm512_set1_epi8(0x0f), flip = _mm512_set1_epi8((char)0x80);
  const uint8_t *w[4], *x[2];
  for (int c = 0; c < C; c++) x[c] = a->act + c * a->act_row_bytes + ch * chunk_bytes;
  __m512 s_lo[4][2], s_hi[4][2];
  for (int r = 0; r < R; r++) {
    w[r] = a->w + (o0 + r) * a->w_row_bytes + ch * (int64_t)span;
    __m512 dlo, dhi;
    aligned_scales(w[r], block_bytes, valid, &dlo, &dhi);
    for (int c = 0; c < C; c++) {
      const float *dx = (const float *)(x[c] + (q4 ? 3 : 2) * span);
      s_lo[r][c] = _mm512_mul_ps(dlo, _mm512_loadu_ps(dx));
      s_hi[r][c] = _mm512_mul_ps(dhi, _mm512_loadu_ps(dx + 16));
    }
  }
  const int used = valid >= GF_ALIGNED_BLOCKS ? vectors : (valid * block_bytes + 63) / 64;
  for (int i = 0; i < used; i++) {
    const __m512i blocks = _mm512_load_si512(block_of[i]);
    __m512i xlo[2], xhi[2], bias[2];
    for (int c = 0; c < C; c++) {
      xlo[c] = _mm512_loadu_si512(x[c] + 64 * i);
      if (q4) xhi[c] = _mm512_loadu_si512(x[c] + span + 64 * i);
      bias[c] = _mm512_loadu_si512(x[c] + (q4 ? 2 : 1) * span + 64 * i);
    }
    for (int r = 0; r < R; r++) {
      _mm_prefetch((const char *)(w[r] + 64 * i + PREFETCH), _MM_HINT_T0);
      __m512i v = aligned_load(w[r], i, block_bytes, valid), lo, hi = v;
      if (q4) {
        lo = _mm512_and_si512(v, low);
        hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), low);
      } else {
        lo = _mm512_xor_si512(v, flip);
      }
      for (int c = 0; c < C; c++) {
        __m512i s = _mm512_dpbusd_epi32(bias[c], lo, xlo[c]);
        if (q4) s = _mm512_dpbusd_epi32(s, hi, xhi[c]);
        __m512 scale = _mm512_permutex2var_ps(s_lo[r][c], blocks, s_hi[r][c]);
        acc[r][c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), scale, acc[r][c]);
      }
    }
  }
}

/* Output rows o0..o0+R-1 against activation rows 0..C-1 (C = n <= 2). */
static inline __attribute__((always_inline)) void aligned_tile(const gf_qmm_args *a, bool q4,
                                                               int64_t o0, int R, int C,
                                                               const int32_t (*block_of)[16]) {
  const int64_t full = a->n_blocks / GF_ALIGNED_BLOCKS;
  const int tail = (int)(a->n_blocks % GF_ALIGNED_BLOCKS);
  __m512 acc[4][2];
  for (int r = 0; r < R; r++)
    for (int c = 0; c < C; c++) acc[r][c] = _mm512_setzero_ps();
  for (int64_t ch = 0; ch < full; ch++) {
    aligned_chunk(a, q4, o0, R, C, ch, GF_ALIGNED_BLOCKS, block_of, acc);
  }
  if (tail) aligned_chunk(a, q4, o0, R, C, full, tail, block_of, acc);
  for (int r = 0; r < R; r++)
    for (int c = 0; c < C; c++) {
      float v = _mm512_reduce_add_ps(acc[r][c]);
      float *dst = a->y + c * a->out + o0 + r;
      *dst = a->accumulate ? *dst + v : v;
    }
}

static inline __attribute__((always_inline)) void qmm_aligned(const gf_qmm_args *a, bool q4,
                                                              int64_t row_begin, int64_t row_end) {
  const int block_bytes = q4 ? 18 : 34, vectors = q4 ? 9 : 17;
  int32_t block_of[17][16] __attribute__((aligned(64)));
  for (int i = 0; i < vectors; i++)
    for (int l = 0; l < 16; l++) block_of[i][l] = (64 * i + 4 * l) / block_bytes;
  const int C = (int)a->n;
  for (int64_t o = row_begin; o < row_end; o += 4) {
    int R = (int)GF_MIN(4, row_end - o);
    switch (R * 4 + C) {
      case 4 * 4 + 1: aligned_tile(a, q4, o, 4, 1, block_of); break;
      case 3 * 4 + 1: aligned_tile(a, q4, o, 3, 1, block_of); break;
      case 2 * 4 + 1: aligned_tile(a, q4, o, 2, 1, block_of); break;
      case 1 * 4 + 1: aligned_tile(a, q4, o, 1, 1, block_of); break;
      case 4 * 4 + 2: aligned_tile(a, q4, o, 4, 2, block_of); break;
      case 3 * 4 + 2: aligned_tile(a, q4, o, 3, 2, block_of); break;
      case 2 * 4 + 2: aligned_tile(a, q4, o, 2, 2, block_of); break;
      default: aligned_tile(a, q4, o, 1, 2, block_of); break;
    }
  }
}

static inline __attribute__((always_inline)) void qmm(const gf_qmm_args *a, bool q4,
                                                      int64_t row_begin, int64_t row_end,
                                                      uint8_t *work) {
  if (a->aligned_layout) {
    qmm_aligned(a, q4, row_begin, row_end);
    return;
  }
  const int64_t chunks = (a->n_blocks + LANES - 1) / LANES;
  wchunk *unpacked = (wchunk *)work;
  for (int64_t g = 0; g < a->n; g += a->x_group) {
    int64_t g_end = GF_MIN(a->n, g + a->x_group);
    bool reuse = g_end - g > 4; /* more than one activation tile shares each weight tile */
    for (int64_t o = row_begin; o < row_end; o += 4) {
      int R = (int)GF_MIN(4, row_end - o);
      if (reuse)
        for (int64_t ch = 0; ch < chunks; ch++)
          for (int r = 0; r < R; r++) unpack(a, q4, o + r, ch, &unpacked[ch * R + r]);
      for (int64_t row = g; row < g_end; row += 4) {
        int C = (int)GF_MIN(4, g_end - row);
        if (reuse) {
          TILE_CASES(q4, unpacked)
        } else {
          TILE_CASES(q4, NULL)
        }
      }
    }
  }
}

void gf_qmm_q4_0_avx512(const gf_qmm_args *a, int64_t row_begin, int64_t row_end, uint8_t *work) {
  qmm(a, true, row_begin, row_end, work);
}

void gf_qmm_q8_0_avx512(const gf_qmm_args *a, int64_t row_begin, int64_t row_end, uint8_t *work) {
  qmm(a, false, row_begin, row_end, work);
}

#include "gf_target_end.h"
#endif
