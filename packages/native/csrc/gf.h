/*
 * graniteflow native kernels: the C interface shared by the Node-API binding (addon.c) and the
 * sanitizer harness (test/native_test.c).
 *
 * Entry points here trust their arguments (sizes consistent with the buffers, cols a multiple of
 * 32 for the block formats); addon.c validates everything that comes from JavaScript first.
 */
#ifndef GF_H
#define GF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { GF_FMT_F32 = 0, GF_FMT_BF16, GF_FMT_Q8_0, GF_FMT_Q4_0, GF_FMT_COUNT } gf_format;
typedef enum { GF_LEVEL_SCALAR = 0, GF_LEVEL_AVX2, GF_LEVEL_AVX512, GF_LEVEL_COUNT } gf_level;
typedef enum {
  GF_FAMILY_QUANTIZE = 0,
  GF_FAMILY_DEQUANTIZE,
  GF_FAMILY_DEQUANTIZE_ROWS,
  GF_FAMILY_MATMUL,
  GF_FAMILY_GEMM_F32,
  GF_FAMILY_COUNT
} gf_family;

/* Kernels are counted and dispatched per family x format; gemmF32 has a single entry. */
#define GF_KERNEL_COUNT (4 * GF_FMT_COUNT + 1)
#define GF_KERNEL_GEMM_F32 (4 * GF_FMT_COUNT)

enum { GF_OK = 0, GF_ERR_NOMEM = 1 };

#define GF_BLOCK 32 /* elements per q8_0 / q4_0 block */
#define GF_Q8_0_BLOCK_BYTES 34
#define GF_Q4_0_BLOCK_BYTES 18

typedef struct {
  bool avx2, fma, f16c;
  bool avx512f, avx512bw, avx512vl, avx512vnni, avx512bf16;
  bool os_avx;    /* XCR0 has SSE and AVX state: the OS saves ymm registers */
  bool os_avx512; /* XCR0 also has opmask and zmm state */
} gf_cpu_features;

const char *gf_format_name(gf_format format);
const char *gf_level_name(gf_level level);
/* -1 when the name is unknown. */
int gf_format_from_name(const char *name);
int gf_level_from_name(const char *name);

/* Bytes of one packed row of `cols` weights (cols a multiple of 32 for the block formats). */
size_t gf_row_bytes(gf_format format, int64_t cols);

const gf_cpu_features *gf_cpu(void);
/* The best level this CPU (and this build) supports. */
gf_level gf_cpu_level(void);
/* Caps every kernel's level (tests force scalar or avx2 on an avx512 machine). */
void gf_set_level_cap(gf_level cap);
gf_level gf_level_cap(void);

int gf_kernel_index(gf_family family, gf_format format);
const char *gf_kernel_name(int kernel);
/* The level that runs: the cap, the CPU and the levels implemented for that kernel. */
gf_level gf_kernel_level(int kernel);
uint64_t gf_counter(int kernel, gf_level level);
void gf_reset_counters(void);

/* Thread pool: n >= 1 threads in all (the calling thread is one of them). */
void gf_set_threads(int n);
int gf_threads(void);

/* dst receives rows * gf_row_bytes(format, cols) bytes. Equal to ggml's reference quantizers. */
int gf_quantize(gf_format format, const float *src, int64_t rows, int64_t cols, void *dst);
int gf_dequantize(gf_format format, const void *src, int64_t rows, int64_t cols, float *dst);
/* dst[i, :] = row rows[i] of src; every index already checked to be in range. */
int gf_dequantize_rows(gf_format format, const void *src, int64_t cols, const int32_t *rows,
                       int64_t n_rows, float *dst);

/*
 * y[n, o] (+)= sum_k x[n, k] * W[o, k] with W [out_features, in_features] packed row-major.
 * q8_0 / q4_0: x is quantized to q8_0 per 32-block and the block dot products are integer.
 */
int gf_matmul(gf_format format, const void *w, int64_t out_features, int64_t in_features,
              const float *x, int64_t n_rows, float *y, bool accumulate);

/*
 * For each of `batch` problems: C (+)= op(A) op(B), C [M, N] row-major; A is [M, K] ([K, M] when
 * transpose_a), B is [K, N] ([N, K] when transpose_b); problem i starts at a + i * stride_a, etc.
 * (a stride of 0 broadcasts that operand).
 */
int gf_gemm_f32(const float *a, const float *b, float *c, int64_t m, int64_t n, int64_t k,
                bool transpose_a, bool transpose_b, int64_t batch, int64_t stride_a,
                int64_t stride_b, int64_t stride_c, bool accumulate);

/* IEEE half <-> float (round to nearest even), bf16 <-> float, exactly as ggml's references. */
uint16_t gf_fp32_to_fp16(float f);
float gf_fp16_to_fp32(uint16_t h);
uint16_t gf_fp32_to_bf16(float f);
float gf_bf16_to_fp32(uint16_t h);

#ifdef __cplusplus
}
#endif

#endif
