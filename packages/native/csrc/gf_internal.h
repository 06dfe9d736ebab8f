/* Internal declarations shared by the kernel sources (not part of the binding's interface). */
#ifndef GF_INTERNAL_H
#define GF_INTERNAL_H

#include <math.h>
#include <string.h>

#include "gf.h"

/* GF_PORTABLE builds only the scalar level: what other architectures get (tested on x86 too). */
#if (defined(__x86_64__) || defined(_M_X64)) && !defined(GF_PORTABLE)
#define GF_X86 1
#else
#define GF_X86 0
#endif

#define GF_MIN(a, b) ((a) < (b) ? (a) : (b))
#define GF_MAX(a, b) ((a) > (b) ? (a) : (b))
#define GF_ALIGN 64
#define GF_MAX_THREADS 256

static inline uint16_t gf_load_u16(const void *p) {
  uint16_t v;
  memcpy(&v, p, sizeof v);
  return v;
}
static inline int32_t gf_load_i32(const void *p) {
  int32_t v;
  memcpy(&v, p, sizeof v);
  return v;
}
static inline float gf_load_f32(const void *p) {
  float v;
  memcpy(&v, p, sizeof v);
  return v;
}

/* ---- counters and dispatch (cpu.c) ---- */
void gf_count(int kernel, gf_level level);

/* ---- thread pool (pool.c) ---- */
/* Runs fn over [begin, end) ranges covering [0, n) that start at multiples of `align`; the work is
 * shared by as many threads as each get at least `min_per_thread` items, in several ranges each
 * (claimed in any order). `thread` (0 for the caller) is stable within a range: the index of the
 * scratch to use. */
typedef void (*gf_task_fn)(void *ctx, int64_t begin, int64_t end, int thread);
void gf_parallel_for(int64_t n, int64_t align, int64_t min_per_thread, gf_task_fn fn, void *ctx);
/* Every public entry point holds this lock for its whole call: kernels share scratch buffers. */
void gf_call_lock(void);
void gf_call_unlock(void);

/* ---- scratch (pool.c): grows, never shrinks, 64-byte aligned; NULL when out of memory ---- */
enum { GF_SCRATCH_ACT = 0, GF_SCRATCH_A, GF_SCRATCH_B, GF_SCRATCH_TMP, GF_SCRATCH_MOE, GF_SCRATCH_MOE_SORT,
       GF_SCRATCH_ATTENTION, GF_SCRATCH_SLOTS };
void *gf_scratch(int thread, int slot, size_t bytes);

/* ---- quantize / dequantize over n contiguous elements (n a multiple of 32 for blocks) ---- */
typedef void (*gf_quantize_fn)(const float *src, void *dst, int64_t n);
typedef void (*gf_dequantize_fn)(const void *src, float *dst, int64_t n);

void gf_quantize_q8_0_scalar(const float *src, void *dst, int64_t n);
void gf_quantize_q4_0_scalar(const float *src, void *dst, int64_t n);
void gf_quantize_bf16_scalar(const float *src, void *dst, int64_t n);
void gf_dequantize_q8_0_scalar(const void *src, float *dst, int64_t n);
void gf_dequantize_q4_0_scalar(const void *src, float *dst, int64_t n);
void gf_dequantize_bf16_scalar(const void *src, float *dst, int64_t n);
/* One q8_0 / q4_0 block by the reference rule (the SIMD versions call these for blocks with
 * NaN or infinity, whose reference results depend on the element order). */
void gf_quantize_block_q8_0(const float *x, uint8_t *out);
void gf_quantize_block_q4_0(const float *x, uint8_t *out);

#if GF_X86
void gf_quantize_q8_0_avx2(const float *src, void *dst, int64_t n);
void gf_quantize_q4_0_avx2(const float *src, void *dst, int64_t n);
void gf_quantize_bf16_avx2(const float *src, void *dst, int64_t n);
void gf_dequantize_q8_0_avx2(const void *src, float *dst, int64_t n);
void gf_dequantize_q4_0_avx2(const void *src, float *dst, int64_t n);
void gf_dequantize_bf16_avx2(const void *src, float *dst, int64_t n);
void gf_quantize_q8_0_avx512(const float *src, void *dst, int64_t n);
void gf_quantize_q4_0_avx512(const float *src, void *dst, int64_t n);
void gf_quantize_bf16_avx512(const float *src, void *dst, int64_t n);
void gf_dequantize_q8_0_avx512(const void *src, float *dst, int64_t n);
void gf_dequantize_q4_0_avx512(const void *src, float *dst, int64_t n);
void gf_dequantize_bf16_avx512(const void *src, float *dst, int64_t n);
#endif

/* The per-format, per-level function (NULL where that level is not implemented). */
gf_quantize_fn gf_quantize_impl(gf_format format, gf_level level);
gf_dequantize_fn gf_dequantize_impl(gf_format format, gf_level level);

/* ---- quantized matmul (matmul.c and matmul_q_*.c) ----
 * Activations are quantized to q8_0 and repacked in "chunks" of `lanes` blocks so that one SIMD
 * register holds 4 consecutive bytes of `lanes` different blocks (lane p holds block
 * chunk * lanes + gf_lane_block(lanes, p)):
 *   int8  qs[8][lanes][4]  group j = elements 4j..4j+3 of each lane's block
 *   float d[lanes]         the block scales (0 past the last block)
 *   int32 bias[lanes]      -offset * (sum of the block's qs): the correction for weights read as
 *                          unsigned bytes (q4_0 nibbles: offset 8; q8_0 xor 0x80: offset 128)
 * The lane order is whatever the weight-side transposes produce (see matmul_q_avx512.c). */
typedef struct {
  const uint8_t *w;    /* packed weights */
  size_t w_row_bytes;
  int64_t out, in;     /* out_features, in_features */
  int64_t n_blocks;    /* in / 32 */
  const uint8_t *act;  /* n rows of packed activations */
  size_t act_row_bytes;
  int64_t n;           /* activation rows */
  int64_t x_group;     /* activation rows per pass over a thread's weight rows (cache blocking) */
  float *y;            /* [n, out] */
  bool accumulate;
  bool aligned_layout; /* act is in the weight-aligned layout below (avx512, few rows) */
  int group_rows;      /* interleaved kernels: rows of each group to store (0: all 16) */
} gf_qmm_args;

/* Weight-aligned activation layout (avx512 decode): per chunk of 32 blocks, the activations sit
 * at the byte positions their weights have in the packed row (32 q4_0 blocks = 576 bytes = 9
 * zmm, 32 q8_0 blocks = 1088 bytes = 17 zmm), with zeros under the weights' scale bytes, so a raw
 * 64-byte weight load pairs with a 64-byte activation load and needs no shuffle. A 4-byte lane
 * never holds quants of two blocks (blocks are 18 / 34 bytes: lane starts are even, a block's
 * last quant byte is odd), so each vpdpbusd int32 lane belongs to one block, the block whose byte
 * starts the lane. Per chunk:
 *   q4_0: int8 lo[576] (element t of the block under quant byte t), int8 hi[576] (element t+16),
 *         int32 bias[144] (-8 * the lane's lo + hi sum), float d[32]
 *   q8_0: int8 q[1088], int32 bias[272] (-128 * the lane's sum), float d[32] */
#define GF_ALIGNED_BLOCKS 32
static inline int gf_aligned_vectors(gf_format format) { return format == GF_FMT_Q4_0 ? 9 : 17; }
static inline size_t gf_aligned_chunk_bytes(gf_format format) {
  return format == GF_FMT_Q4_0 ? 3 * 576 + 128 : 2 * 1088 + 128;
}

/* work: the thread's scratch of gf_qmm_work_bytes(lanes, n_blocks) bytes (unpacked weights). */
typedef void (*gf_qmm_fn)(const gf_qmm_args *args, int64_t row_begin, int64_t row_end, uint8_t *work);
/* A weight tile of 4 rows unpacked by the SIMD kernels: per chunk and row, 8 vectors of lanes * 4
 * bytes and lanes float scales. */
static inline size_t gf_qmm_work_bytes(int lanes, int64_t n_blocks) {
  return 4 * (size_t)((n_blocks + lanes - 1) / lanes) * (size_t)lanes * 36;
}

static inline size_t gf_act_chunk_bytes(int lanes) { return (size_t)lanes * (32 + 4 + 4); }
static inline int gf_lane_block(int lanes, int p) {
  /* 4x4 dword transposes inside 128-bit lanes: position p = 4 * i + m holds register m's
   * 128-bit lane i; register m holds blocks (lanes / 4) * m + i. */
  return lanes == 1 ? 0 : (lanes / 4) * (p % 4) + p / 4;
}

void gf_qmm_q8_0_scalar(const gf_qmm_args *args, int64_t row_begin, int64_t row_end,
                        uint8_t *work);
void gf_qmm_q4_0_scalar(const gf_qmm_args *args, int64_t row_begin, int64_t row_end,
                        uint8_t *work);
#if GF_X86
void gf_qmm_q8_0_avx2(const gf_qmm_args *args, int64_t row_begin, int64_t row_end,
                        uint8_t *work);
void gf_qmm_q4_0_avx2(const gf_qmm_args *args, int64_t row_begin, int64_t row_end,
                        uint8_t *work);
void gf_qmm_q8_0_avx512(const gf_qmm_args *args, int64_t row_begin, int64_t row_end,
                        uint8_t *work);
void gf_qmm_q4_0_avx512(const gf_qmm_args *args, int64_t row_begin, int64_t row_end,
                        uint8_t *work);
#endif

/* gf_matmul's body at `level`, for callers already holding the call lock (moe.c); not counted. */
int gf_matmul_nolock(gf_format format, gf_layout layout, gf_level level, const void *w, int64_t out,
                     int64_t in, const float *x, int64_t n, float *y, bool accumulate);
#define GF_MAX_MATRICES 64
/* One activation row against `count` (at most GF_MAX_MATRICES) q8_0 / q4_0 matrices of one shape [out, in] (row order):
 * y[j] = x[j] · W[j]ᵀ, with all count * out rows shared out to the threads in one pass. With
 * shared_x every matrix takes x[0]. y is [count, out]. Holds the call lock's scratch. */
int gf_qmm_matrices_nolock(gf_format format, gf_level level, const uint8_t *const *w, int64_t count,
                           int64_t out, int64_t in, const float *x, bool shared_x, float *y);

/* ---- quantized matmul over interleaved groups (interleave.c, matmul_q16_*.c): groups
 * [g_begin, g_end) of 16 rows; activations in the lanes = 1 layout above ---- */
typedef void (*gf_qmm16_fn)(const gf_qmm_args *args, int64_t g_begin, int64_t g_end);
void gf_qmm16_q8_0_scalar(const gf_qmm_args *args, int64_t g_begin, int64_t g_end);
void gf_qmm16_q4_0_scalar(const gf_qmm_args *args, int64_t g_begin, int64_t g_end);
#if GF_X86
void gf_qmm16_q8_0_avx512(const gf_qmm_args *args, int64_t g_begin, int64_t g_end);
void gf_qmm16_q4_0_avx512(const gf_qmm_args *args, int64_t g_begin, int64_t g_end);
/* The same over whole groups of row-order weights (w_row_bytes apart), regrouped in registers. */
void gf_qmm16_rows_q8_0_avx512(const gf_qmm_args *args, int64_t g_begin, int64_t g_end);
void gf_qmm16_rows_q4_0_avx512(const gf_qmm_args *args, int64_t g_begin, int64_t g_end);
#endif
/* Whole 16-row groups of a matrix of `rows` rows (the rest stay row-major). */
int64_t gf_interleaved_groups(int64_t rows);
/* 16 row-order rows (n_blocks blocks each, back to back) as one interleaved group. */
void gf_rows_to_group(gf_format format, const uint8_t *rows, int64_t n_blocks, uint8_t *group);
#if GF_X86
void gf_rows_to_group_avx512(gf_format format, const uint8_t *rows, int64_t n_blocks, uint8_t *group);
#endif
/* Row p of an interleaved group, back in row order (n_blocks blocks of the format). */
void gf_group_to_rows(gf_format format, const uint8_t *group, int64_t n_blocks, int p, uint8_t *row);

/* ---- float matmul, few activation rows (matmul.c, matmul_f_*.c): W f32 or bf16 rows ---- */
typedef struct {
  const uint8_t *w;
  size_t w_row_bytes;
  int64_t out, in;
  const float *x; /* [n, in] */
  int64_t n;
  float *y;       /* [n, out] */
  bool accumulate;
} gf_fmm_args;
typedef void (*gf_fmm_fn)(const gf_fmm_args *args, int64_t row_begin, int64_t row_end);

void gf_fmm_f32_scalar(const gf_fmm_args *args, int64_t row_begin, int64_t row_end);
void gf_fmm_bf16_scalar(const gf_fmm_args *args, int64_t row_begin, int64_t row_end);
#if GF_X86
void gf_fmm_f32_avx2(const gf_fmm_args *args, int64_t row_begin, int64_t row_end);
void gf_fmm_bf16_avx2(const gf_fmm_args *args, int64_t row_begin, int64_t row_end);
void gf_fmm_f32_avx512(const gf_fmm_args *args, int64_t row_begin, int64_t row_end);
void gf_fmm_bf16_avx512(const gf_fmm_args *args, int64_t row_begin, int64_t row_end);
#endif

/* ---- gemm (gemm.c, gemm_*.c) ----
 * Micro-kernel: c[MR x NR] (+)= ap (kc x MR, k-major) * bp (kc x NR, k-major); c row stride ldc.
 * load_c: add to c instead of overwriting it. */
typedef void (*gf_ukernel_fn)(int64_t kc, const float *ap, const float *bp, float *c, int64_t ldc,
                              bool load_c);
/* y[0..n) (+)= sum_k a[k] * b[k * ldb + 0..n): one activation row times a [K, N] matrix. */
typedef void (*gf_gemv_kn_fn)(const float *a, const float *b, int64_t k, int64_t ldb, float *y,
                              int64_t n, bool accumulate);
/* Packs B^T rows (f32 or bf16, row stride row_bytes) into NR-column panels: bp[p][k][jj] =
 * B^T[n0 + p * NR + jj][k0 + k], zero past `nc` rows. */
typedef void (*gf_pack_rows_fn)(const uint8_t *b, size_t row_bytes, bool bf16, int64_t k0,
                                int64_t kc, int64_t n0, int64_t nc, float *bp);
typedef struct {
  int mr, nr;
  gf_ukernel_fn kernel;
  gf_gemv_kn_fn gemv_kn;
  gf_pack_rows_fn pack_rows; /* NULL: the generic packer */
} gf_ukernel;
extern const gf_ukernel gf_ukernel_scalar;
#if GF_X86
extern const gf_ukernel gf_ukernel_avx2;
extern const gf_ukernel gf_ukernel_avx512;
#endif

/* B operand sources the gemm can pack: plain f32 with strides, or bf16 rows ([N, K], the
 * weights of a bf16 matmul). */
typedef enum { GF_B_F32 = 0, GF_B_BF16_ROWS } gf_b_kind;

/* One gemm problem list (gemm.c); used by gf_gemm_f32 and by gf_matmul for f32 / bf16 weights. */
typedef struct {
  const float *a;
  const void *b;
  float *c;
  int64_t m, n, k;
  bool transpose_a, transpose_b;
  gf_b_kind b_kind;
  size_t b_row_bytes; /* GF_B_BF16_ROWS: bytes per row of B^T */
  int64_t batch, stride_a, stride_b, stride_c;
  bool accumulate;
} gf_gemm_problem;
int gf_gemm_run(const gf_gemm_problem *p, gf_level level);
/* matmul.c: the f32 / bf16 row-dot path (W rows against few activation rows). */
int gf_rowdot(gf_format format, gf_level level, const void *w, size_t w_row_bytes, int64_t out,
              int64_t in, const float *x, int64_t n, float *y, bool accumulate);

/* ---- Mamba-2 selective scan (ssm.c, ssm_*.c) ----
 * One token of one state row: s[i] = decay s[i] + dx b[i]; returns sum_i s[i] c[i]. */
typedef float (*gf_ssm_step_fn)(float *s, const float *b, const float *c, int64_t n, float decay,
                                float dx);
#if GF_X86
float gf_ssm_step_avx2(float *s, const float *b, const float *c, int64_t n, float decay, float dx);
float gf_ssm_step_avx512(float *s, const float *b, const float *c, int64_t n, float decay, float dx);
#endif

/* ---- SwiGLU (act.c, act_*.c): out[i] = gate[i] / (1 + exp(-gate[i])) * up[i] over n elements ---- */
typedef void (*gf_swiglu_fn)(const float *gate, const float *up, float *out, int64_t n);
/* gf_swiglu's body at `level`, for callers already holding the call lock (moe.c). */
void gf_swiglu_nolock(gf_level level, const float *a, int64_t rows, int64_t inter, float *act);
void gf_swiglu_scalar(const float *gate, const float *up, float *out, int64_t n);
#if GF_X86
void gf_swiglu_avx2(const float *gate, const float *up, float *out, int64_t n);
void gf_swiglu_avx512(const float *gate, const float *up, float *out, int64_t n);
#endif

#endif
