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

/* Kernels are counted and dispatched per family x format; gemmF32 and the Mamba-2 and MoE kernels
 * after it have a single entry each. */
#define GF_KERNEL_GEMM_F32 (4 * GF_FMT_COUNT)
#define GF_KERNEL_SSM_SCAN (GF_KERNEL_GEMM_F32 + 1)
#define GF_KERNEL_CAUSAL_CONV1D (GF_KERNEL_GEMM_F32 + 2)
#define GF_KERNEL_GATED_RMS_NORM (GF_KERNEL_GEMM_F32 + 3)
#define GF_KERNEL_SWIGLU (GF_KERNEL_GEMM_F32 + 4)
#define GF_KERNEL_MOE_EXPERTS (GF_KERNEL_GEMM_F32 + 5)
#define GF_KERNEL_ATTENTION (GF_KERNEL_GEMM_F32 + 6)
#define GF_KERNEL_SSM_SCAN_GRAD (GF_KERNEL_GEMM_F32 + 7)
#define GF_KERNEL_COUNT (GF_KERNEL_GEMM_F32 + 8)

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

/*
 * Layouts of a q8_0 / q4_0 matrix [rows, cols]. GF_LAYOUT_ROWS: row-major, as GGUF stores it.
 * GF_LAYOUT_INTERLEAVED: the same bytes regrouped per 16 rows (rows 16g..16g+15 keep their place
 * and size): for each block b, the quant bytes as vectors of 64 bytes whose 4-byte lane p holds
 * 4 consecutive quant bytes of row 16g+p (4 vectors for q4_0, 8 for q8_0), then after all blocks
 * the groups' f16 scales, block by block, 16 per block. The last rows % 16 rows stay row-major.
 */
typedef enum { GF_LAYOUT_ROWS = 0, GF_LAYOUT_INTERLEAVED } gf_layout;
#define GF_GROUP_ROWS 16

/* dst receives rows * gf_row_bytes(format, cols) bytes. Equal to ggml's reference quantizers. */
int gf_quantize(gf_format format, const float *src, int64_t rows, int64_t cols, void *dst);
int gf_dequantize(gf_format format, const void *src, int64_t rows, int64_t cols, float *dst);
/* dst[i, :] = row rows[i] of src (src_rows rows in `layout`); every index already checked to be
 * in range. */
int gf_dequantize_rows(gf_format format, gf_layout layout, const void *src, int64_t src_rows,
                       int64_t cols, const int32_t *rows, int64_t n_rows, float *dst);


/* Converts a q8_0 / q4_0 matrix between the layouts in place. */
int gf_interleave(gf_format format, void *bytes, int64_t rows, int64_t cols, bool to_interleaved);

/*
 * y[n, o] (+)= sum_k x[n, k] * W[o, k] with W [out_features, in_features] packed in `layout`
 * (GF_LAYOUT_INTERLEAVED for q8_0 / q4_0 only). q8_0 / q4_0: x is quantized to q8_0 per 32-block
 * and the block dot products are integer.
 */
int gf_matmul(gf_format format, gf_layout layout, const void *w, int64_t out_features,
              int64_t in_features, const float *x, int64_t n_rows, float *y, bool accumulate);

/*
 * For each of `batch` problems: C (+)= op(A) op(B), C [M, N] row-major; A is [M, K] ([K, M] when
 * transpose_a), B is [K, N] ([N, K] when transpose_b); problem i starts at a + i * stride_a, etc.
 * (a stride of 0 broadcasts that operand).
 */
int gf_gemm_f32(const float *a, const float *b, float *c, int64_t m, int64_t n, int64_t k,
                bool transpose_a, bool transpose_b, int64_t batch, int64_t stride_a,
                int64_t stride_b, int64_t stride_c, bool accumulate);

/*
 * Mamba-2 selective scan (ssm.c): S_t = exp(dt A) S_{t-1} + dt x_t (x) B_t, y_t = S_t . C_t + D x_t
 * per head, head h reading group h / (heads / groups), dt = clamp(softplus(dt_raw + dt_bias),
 * dt_min, dt_max), A = -exp(a_log). A decode step is a scan of one token from the previous state.
 */
typedef struct {
  const float *x;             /* [batch, seq_len, heads, head_dim] */
  const float *dt;            /* [batch, seq_len, heads], before dt_bias and softplus */
  const float *a_log;         /* [heads] */
  const float *b, *c;         /* [batch, seq_len, groups, state_size] */
  const float *d;             /* [heads] */
  const float *dt_bias;       /* [heads] */
  const float *initial_state; /* [batch, heads, head_dim, state_size]; NULL: zeros */
  int64_t batch, seq_len, heads, head_dim, groups, state_size; /* groups divides heads */
  double dt_min, dt_max;
  float *y;                   /* [batch, seq_len, heads, head_dim] */
  float *final_state;         /* [batch, heads, head_dim, state_size]; may be initial_state */
} gf_ssm_scan_args;
int gf_ssm_scan(const gf_ssm_scan_args *args);

/*
 * Backward pass of gf_ssm_scan (ssm_grad.c): the gradients of every float input from dy and
 * d_final_state. Every output is overwritten (d_initial_state is filled even without an initial
 * state). No output may overlap an input or another output.
 */
typedef struct {
  const float *x, *dt, *a_log, *b, *c, *d, *dt_bias, *initial_state; /* as gf_ssm_scan_args */
  const float *dy;            /* [batch, seq_len, heads, head_dim] */
  const float *d_final_state; /* [batch, heads, head_dim, state_size] */
  int64_t batch, seq_len, heads, head_dim, groups, state_size;
  double dt_min, dt_max;
  float *dx, *ddt, *da_log, *db, *dc, *dd, *ddt_bias, *d_initial_state;
} gf_ssm_scan_grad_args;
int gf_ssm_scan_grad(const gf_ssm_scan_grad_args *args);

/* Causal depthwise conv over time, channels-last: y_t[c] = act(bias[c] + sum_k w[c, k] u_{t-K+1+k}[c])
 * with u = [conv_state (zeros when NULL), x]; new_state receives the last K - 1 rows of u. */
typedef struct {
  const float *x;          /* [batch, seq_len, channels] */
  const float *weight;     /* [channels, kernel_size] */
  const float *bias;       /* [channels] or NULL */
  const float *conv_state; /* [batch, kernel_size - 1, channels] or NULL */
  int64_t batch, seq_len, channels, kernel_size; /* kernel_size >= 1 */
  bool silu;
  float *y;                /* [batch, seq_len, channels] */
  float *new_state;        /* [batch, kernel_size - 1, channels] */
} gf_causal_conv1d_args;
int gf_causal_conv1d(const gf_causal_conv1d_args *args);

/* Gated RMSNorm, gate before norm: g = y silu(z); each group of group_size channels is scaled by
 * 1 / sqrt(mean(g^2) + eps), then by weight. */
typedef struct {
  const float *y, *z; /* [rows, dim] */
  const float *weight; /* [dim] */
  int64_t rows, dim, group_size; /* group_size divides dim */
  double eps;
  float *out;         /* [rows, dim] */
} gf_gated_rms_norm_args;
int gf_gated_rms_norm(const gf_gated_rms_norm_args *args);

/* SwiGLU on packed halves (act.c): act[r, i] = silu(a[r, i]) * a[r, inter + i] for a [rows, 2 inter],
 * act [rows, inter], silu(g) = g / (1 + exp(-g)). act must not overlap a. */
int gf_swiglu(const float *a, int64_t rows, int64_t inter, float *act);

/*
 * Routed SwiGLU experts over q8_0 / q4_0 expert weights, in one call:
 * y[t] = sum_j weights[t, j] * W2[e]·(silu(W1[e][:I]·x[t]) * W1[e][I:]·x[t]), e = indices[t, j],
 * for input_linear W1 [E, 2I, H] and output_linear W2 [E, H, I] packed row-major. One token
 * (decode) runs the k experts' rows through the threads together, phase by phase; more tokens
 * are grouped by expert, each expert's rows multiplying all its tokens at once. Every index must
 * already be checked to be in [0, E). y [n, H] is overwritten.
 */
typedef struct {
  gf_format input_format, output_format;
  const void *input_linear, *output_linear;
  const float *x;         /* [n, h] */
  const int32_t *indices; /* [n, k] */
  const float *weights;   /* [n, k] */
  int64_t n, h, inter, experts, k;
  float *y; /* [n, h] */
} gf_moe_args;
int gf_moe_experts(const gf_moe_args *args);

/*
 * Softmax attention without the scores matrix (attention.c, attention_*.c): for each query row,
 * out = sum_s softmax_s(scale * q . k_s) v_s over the allowed keys s < key_len, by an online
 * softmax over tiles of keys. Query head j reads KV head j / (q_heads / kv_heads) (grouped-query
 * attention without repeating K / V). Keys and values sit in a cache of `capacity` positions of
 * which the first key_len are filled. Key s is allowed for query t when key_mask[b, s] != 0 (no
 * mask: all) and, when causal, s <= key_len - q_len + t (the queries are the last q_len
 * positions). A query with no allowed key gets zeros.
 */
typedef struct {
  const float *q;        /* [batch, q_len, q_heads, head_dim] */
  const float *k, *v;    /* [batch, capacity, kv_heads, head_dim], or heads_major [batch, kv_heads, capacity, head_dim] */
  const float *key_mask; /* [batch, key_len] or NULL */
  int64_t batch, q_len, q_heads, kv_heads, head_dim, key_len, capacity; /* kv_heads divides q_heads */
  bool causal;           /* then key_len >= q_len */
  bool heads_major;      /* each KV head's positions contiguous: streams from memory at full speed */
  float scale;
  float *out;            /* [batch, q_len, q_heads, head_dim] */
} gf_attention_args;
int gf_attention(const gf_attention_args *args);

/* IEEE half <-> float (round to nearest even), bf16 <-> float, exactly as ggml's references. */
uint16_t gf_fp32_to_fp16(float f);
float gf_fp16_to_fp32(uint16_t h);
uint16_t gf_fp32_to_bf16(float f);
float gf_bf16_to_fp32(uint16_t h);

#ifdef __cplusplus
}
#endif

#endif
