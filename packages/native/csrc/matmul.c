/*
 * matmul: y[n, o] (+)= sum_k x[n, k] W[o, k] for W packed as f32, bf16, q8_0 or q4_0.
 *
 * q8_0 / q4_0 (as llama.cpp): each activation row is quantized to q8_0 per 32-block once per
 * call into a reusable scratch, then every (weight block, activation block) pair is an integer
 * dot product scaled by d_w * d_x in float. Threads split the output rows; each thread walks its
 * weight rows in tiles of 4 against activation tiles of up to 4 rows, in groups of activation rows
 * small enough to stay in L2, so a loaded weight block serves many activation rows.
 * f32 / bf16: up to 4 activation rows use a streaming row-dot kernel (decode is memory-bound:
 * each weight row is read once); more rows go through the packed gemm (gemm.c).
 */
#include "gf_internal.h"

/* Activation rows per pass over the weights: keep the packed group within ~1 MiB (L2). */
#define ACT_GROUP_BYTES (1 << 20)
/* Fewer multiply-adds than this per thread is not worth waking a worker. */
#define MIN_MACS_PER_THREAD (1 << 17)
/* Up to this many activation rows the avx512 kernels use the weight-aligned layout. */
#define ALIGNED_MAX_ROWS 2
/* Up to this many activation rows the avx512 q8_0 / q4_0 kernels read row-order weights 16 rows at
 * a time, transposed into the interleaved layout in registers (rows16_matmul); more rows pay for
 * regrouping them once into a scratch (regrouped_matmul). */
#ifndef ROWS16_MAX_ROWS
#define ROWS16_MAX_ROWS 32
#endif
/* Above this many activation rows the f32 / bf16 weights go through the packed gemm. */
#define ROWDOT_MAX_ROWS 4

static int lanes_of(gf_level level) {
  return level == GF_LEVEL_AVX512 ? 16 : level == GF_LEVEL_AVX2 ? 8 : 1;
}

/* The weight-side offset that the bias corrects for (see gf_internal.h): q4_0 nibbles are read
 * as 0..15 (offset 8); on avx512 q8_0 weights are read as unsigned w + 128 (vpdpbusd multiplies
 * unsigned by signed bytes); the avx2 q8_0 kernel uses the sign trick and the scalar kernel plain
 * signed arithmetic, so they need none. */
static int32_t bias_offset(gf_format format, gf_level level) {
  if (level == GF_LEVEL_SCALAR) return 0;
  if (format == GF_FMT_Q4_0) return 8;
  return level == GF_LEVEL_AVX512 ? 128 : 0;
}

/* Repacks one q8_0 row (natural layout) into the lane-chunk layout of gf_internal.h. */
static void pack_activation_row(const uint8_t *q, int64_t n_blocks, int lanes, int32_t offset,
                                uint8_t *dst) {
  int64_t chunks = (n_blocks + lanes - 1) / lanes;
  for (int64_t c = 0; c < chunks; c++) {
    uint8_t *chunk = dst + c * gf_act_chunk_bytes(lanes);
    float *d = (float *)(chunk + 32 * lanes);
    int32_t *bias = (int32_t *)(d + lanes);
    for (int p = 0; p < lanes; p++) {
      int64_t b = c * lanes + gf_lane_block(lanes, p);
      if (b >= n_blocks) {
        d[p] = 0.0f;
        bias[p] = 0;
        for (int j = 0; j < 8; j++) memset(chunk + (j * lanes + p) * 4, 0, 4);
        continue;
      }
      const uint8_t *block = q + b * GF_Q8_0_BLOCK_BYTES;
      d[p] = gf_fp16_to_fp32(gf_load_u16(block));
      int32_t sum = 0;
      for (int e = 0; e < GF_BLOCK; e++) sum += (int8_t)block[2 + e];
      bias[p] = -offset * sum;
      for (int j = 0; j < 8; j++) memcpy(chunk + (j * lanes + p) * 4, block + 2 + 4 * j, 4);
    }
  }
}

/* Repacks one q8_0 row into the weight-aligned layout of gf_internal.h. */
static void pack_activation_row_aligned(gf_format wformat, const uint8_t *q, int64_t n_blocks,
                                        uint8_t *dst) {
  const int block_bytes = wformat == GF_FMT_Q4_0 ? GF_Q4_0_BLOCK_BYTES : GF_Q8_0_BLOCK_BYTES;
  const int span = gf_aligned_vectors(wformat) * 64; /* weight bytes per chunk */
  const bool q4 = wformat == GF_FMT_Q4_0;
  const int32_t offset = q4 ? 8 : 128;
  const size_t chunk_bytes = gf_aligned_chunk_bytes(wformat);
  int64_t chunks = (n_blocks + GF_ALIGNED_BLOCKS - 1) / GF_ALIGNED_BLOCKS;
  for (int64_t c = 0; c < chunks; c++) {
    uint8_t *chunk = dst + c * chunk_bytes;
    int8_t *lo = (int8_t *)chunk, *hi = lo + span; /* hi: q4_0 only */
    int32_t *bias = (int32_t *)(chunk + (q4 ? 2 : 1) * span);
    float *d = (float *)((uint8_t *)bias + 4 * (span / 4));
    memset(chunk, 0, chunk_bytes);
    const int64_t blocks = GF_MIN((int64_t)GF_ALIGNED_BLOCKS, n_blocks - c * GF_ALIGNED_BLOCKS);
    for (int b = 0; b < blocks; b++) {
      const int8_t *x = (const int8_t *)(q + (c * GF_ALIGNED_BLOCKS + b) * GF_Q8_0_BLOCK_BYTES + 2);
      const int base = b * block_bytes + 2; /* the block's first quant byte in the weight row */
      for (int t = 0; t < (q4 ? 16 : 32); t++) {
        lo[base + t] = x[t];
        if (q4) hi[base + t] = x[t + 16];
        bias[(base + t) / 4] -= offset * (x[t] + (q4 ? x[t + 16] : 0));
      }
    }
    for (int b = 0; b < GF_ALIGNED_BLOCKS; b++) {
      int64_t block = c * GF_ALIGNED_BLOCKS + b;
      d[b] = block < n_blocks ? gf_fp16_to_fp32(gf_load_u16(q + block * GF_Q8_0_BLOCK_BYTES)) : 0.0f;
    }
  }
}

typedef struct {
  const float *x;
  int64_t in, n_blocks;
  gf_format wformat;
  bool aligned;
  int lanes;
  int32_t offset;
  gf_quantize_fn quantize;
  uint8_t *act;
  size_t act_row_bytes;
  uint8_t *tmp[GF_MAX_THREADS];
} act_ctx;

static void pack_activations_task(void *p, int64_t begin, int64_t end, int thread) {
  const act_ctx *c = (const act_ctx *)p;
  for (int64_t row = begin; row < end; row++) {
    c->quantize(c->x + row * c->in, c->tmp[thread], c->in);
    if (c->aligned)
      pack_activation_row_aligned(c->wformat, c->tmp[thread], c->n_blocks, c->act + row * c->act_row_bytes);
    else
      pack_activation_row(c->tmp[thread], c->n_blocks, c->lanes, c->offset,
                          c->act + row * c->act_row_bytes);
  }
}

typedef struct {
  gf_qmm_args args;
  gf_qmm_fn fn;
  uint8_t *work[GF_MAX_THREADS];
} qmm_ctx;

static void qmm_task(void *p, int64_t begin, int64_t end, int thread) {
  const qmm_ctx *c = (const qmm_ctx *)p;
  c->fn(&c->args, begin, end, c->work[thread]);
}

static gf_qmm_fn qmm_impl(gf_format format, gf_level level) {
#if GF_X86
  if (level == GF_LEVEL_AVX512) return format == GF_FMT_Q4_0 ? gf_qmm_q4_0_avx512 : gf_qmm_q8_0_avx512;
  if (level == GF_LEVEL_AVX2) return format == GF_FMT_Q4_0 ? gf_qmm_q4_0_avx2 : gf_qmm_q8_0_avx2;
#endif
  (void)level;
  return format == GF_FMT_Q4_0 ? gf_qmm_q4_0_scalar : gf_qmm_q8_0_scalar;
}

static int64_t min_rows_per_thread(int64_t in, int64_t n) {
  int64_t macs_per_row = GF_MAX(1, in * n);
  return GF_MAX(1, MIN_MACS_PER_THREAD / macs_per_row);
}

/*
 * Quantizes and packs the n activation rows into the layout the kernels read (scratch): the
 * weight-aligned layout (`aligned`, avx512 decode), or chunks of `lanes` blocks (lanes = 1: one
 * block per 40 bytes, what the interleaved-group kernels read).
 */
static int pack_activations(gf_format format, gf_level level, int lanes, bool aligned, const float *x,
                            int64_t n, int64_t in, act_ctx *a) {
  const int64_t n_blocks = in / GF_BLOCK;
  const int64_t chunks = (n_blocks + lanes - 1) / lanes;
  const int64_t aligned_chunks = (n_blocks + GF_ALIGNED_BLOCKS - 1) / GF_ALIGNED_BLOCKS;
  act_ctx init = {x, in, n_blocks, format, aligned, lanes, bias_offset(format, level),
                  gf_quantize_impl(GF_FMT_Q8_0, level), NULL,
                  aligned ? (size_t)aligned_chunks * gf_aligned_chunk_bytes(format)
                          : (size_t)chunks * gf_act_chunk_bytes(lanes),
                  {NULL}};
  *a = init;
  a->act = (uint8_t *)gf_scratch(0, GF_SCRATCH_ACT, (size_t)n * a->act_row_bytes);
  if (!a->act) return GF_ERR_NOMEM;
  for (int t = 0; t < gf_threads(); t++) {
    a->tmp[t] = (uint8_t *)gf_scratch(t, GF_SCRATCH_TMP, gf_row_bytes(GF_FMT_Q8_0, a->in));
    if (!a->tmp[t]) return GF_ERR_NOMEM;
  }
  gf_parallel_for(n, 1, GF_MAX(1, (1 << 16) / GF_MAX(a->in, 1)), pack_activations_task, a);
  return GF_OK;
}

#if GF_X86
static int rows16_matmul(gf_format format, const void *w, int64_t out, int64_t in, const float *x,
                         int64_t n, float *y, bool accumulate);
static int regrouped_matmul(gf_format format, gf_level level, const void *w, int64_t out, int64_t in,
                            const float *x, int64_t n, float *y, bool accumulate);
#endif

static int quantized_matmul(gf_format format, gf_level level, const void *w, int64_t out,
                            int64_t in, const float *x, int64_t n, float *y, bool accumulate) {
#if GF_X86
  if (level == GF_LEVEL_AVX512 && n > ROWS16_MAX_ROWS) return regrouped_matmul(format, level, w, out, in, x, n, y, accumulate);
  if (level == GF_LEVEL_AVX512 && out >= GF_GROUP_ROWS) return rows16_matmul(format, w, out, in, x, n, y, accumulate);
#endif
  const int lanes = lanes_of(level);
  const int64_t n_blocks = in / GF_BLOCK;
  /* Decode-sized calls on avx512 use the weight-aligned layout (no weight shuffles). */
  const bool aligned = level == GF_LEVEL_AVX512 && n <= ALIGNED_MAX_ROWS;
  act_ctx a;
  int rc = pack_activations(format, level, lanes, aligned, x, n, in, &a);
  if (rc != GF_OK) return rc;
  const int threads = gf_threads();

  int64_t group = ACT_GROUP_BYTES / (int64_t)a.act_row_bytes;
  group = GF_MAX(4, group / 4 * 4);
  qmm_ctx c = {{(const uint8_t *)w, gf_row_bytes(format, in), out, in, n_blocks, a.act,
                a.act_row_bytes, n, group, y, accumulate, aligned, 0},
               qmm_impl(format, level),
               {NULL}};
  for (int t = 0; t < threads; t++) {
    c.work[t] = (uint8_t *)gf_scratch(t, GF_SCRATCH_B, gf_qmm_work_bytes(lanes, n_blocks));
    if (!c.work[t]) return GF_ERR_NOMEM;
  }
  gf_parallel_for(out, 4, min_rows_per_thread(in, n), qmm_task, &c);
  return GF_OK;
}

/* The interleaved-group kernel of a level (avx512, else the scalar oracle). */
static gf_qmm16_fn group_kernel(gf_format format, gf_level level) {
  const bool q4 = format == GF_FMT_Q4_0;
#if GF_X86
  if (level == GF_LEVEL_AVX512) return q4 ? gf_qmm16_q4_0_avx512 : gf_qmm16_q8_0_avx512;
#endif
  (void)level;
  return q4 ? gf_qmm16_q4_0_scalar : gf_qmm16_q8_0_scalar;
}

/* Row-order weights, several activation rows, avx512: each whole group of 16 weight rows is
 * transposed into the group layout in registers, block by block, by the rows group kernel, and
 * multiplied by up to 8 activation rows per pass; the last, partial group (zero-padded in a
 * per-thread scratch, so nothing past the matrix is read) is regrouped and run by the group
 * kernel, which stores only its real rows. */
#if GF_X86
typedef struct {
  gf_qmm_args args[GF_MAX_MATRICES]; /* count matrices of one shape */
  int64_t count, groups, whole;      /* per matrix: groups, whole groups */
  gf_format format;
  gf_qmm16_fn rows_fn, group_fn;
  uint8_t *scratch[GF_MAX_THREADS]; /* the padded rows, then their regrouped copy */
} rows16_ctx;

/* The partial last group of matrix a (valid rows of 16), through the thread's scratch. */
static void rows16_partial_group(const rows16_ctx *c, const gf_qmm_args *a, int thread) {
  const size_t row_bytes = a->w_row_bytes, group_bytes = GF_GROUP_ROWS * row_bytes;
  const int valid = (int)(a->out - c->whole * GF_GROUP_ROWS);
  uint8_t *padded = c->scratch[thread], *group = padded + group_bytes;
  memset(padded, 0, group_bytes); /* zero rows: zero scales, zero products */
  memcpy(padded, a->w + (size_t)c->whole * group_bytes, (size_t)valid * row_bytes);
  gf_rows_to_group_avx512(c->format, padded, a->n_blocks, group);
  gf_qmm_args part = *a;
  part.w = group;
  part.y = a->y + c->whole * GF_GROUP_ROWS;
  part.group_rows = valid;
  c->group_fn(&part, 0, 1);
}

/* Units [begin, end) of all matrices' groups, matrix after matrix. */
static void rows16_task(void *p, int64_t begin, int64_t end, int thread) {
  const rows16_ctx *c = (const rows16_ctx *)p;
  for (int64_t u = begin; u < end;) {
    const int64_t j = u / c->groups, first = u % c->groups, last = GF_MIN(c->groups, first + (end - u));
    const gf_qmm_args *a = &c->args[j];
    if (first < c->whole) c->rows_fn(a, first, GF_MIN(last, c->whole));
    if (last > c->whole) rows16_partial_group(c, a, thread);
    u += last - first;
  }
}

/* Runs c (its args, count, format set) over every group of every matrix. */
static int rows16_run(rows16_ctx *c, int64_t n) {
  const gf_qmm_args *a = &c->args[0];
  const bool q4 = c->format == GF_FMT_Q4_0;
  c->rows_fn = q4 ? gf_qmm16_rows_q4_0_avx512 : gf_qmm16_rows_q8_0_avx512;
  c->group_fn = group_kernel(c->format, GF_LEVEL_AVX512);
  c->groups = (a->out + GF_GROUP_ROWS - 1) / GF_GROUP_ROWS;
  c->whole = a->out / GF_GROUP_ROWS;
  for (int t = 0; t < gf_threads(); t++) {
    c->scratch[t] = NULL;
    if (c->groups == c->whole) continue;
    c->scratch[t] = (uint8_t *)gf_scratch(t, GF_SCRATCH_B, 2 * GF_GROUP_ROWS * a->w_row_bytes);
    if (!c->scratch[t]) return GF_ERR_NOMEM;
  }
  gf_parallel_for(c->count * c->groups, 1, GF_MAX(1, min_rows_per_thread(a->in, n) / GF_GROUP_ROWS), rows16_task, c);
  return GF_OK;
}

/* Row-order weights, many activation rows (prefill), avx512: each group of 16 weight rows is
 * regrouped into the interleaved layout in a per-thread scratch (the last, partial group
 * zero-padded) and run by the group kernel against every activation row, so the regrouping is
 * paid once for all of them. */

/* Groups regrouped at a time: their activation rows are streamed once per batch of this many. */
#define REGROUP_BATCH 8

typedef struct {
  gf_qmm_args args;
  gf_format format;
  gf_qmm16_fn fn;
  uint8_t *scratch[GF_MAX_THREADS]; /* REGROUP_BATCH groups */
} regroup_ctx;

static void regroup_task(void *p, int64_t begin, int64_t end, int thread) {
  const regroup_ctx *c = (const regroup_ctx *)p;
  const size_t row_bytes = c->args.w_row_bytes, group_bytes = GF_GROUP_ROWS * row_bytes;
  for (int64_t g0 = begin; g0 < end; g0 += REGROUP_BATCH) {
    const int64_t count = GF_MIN(REGROUP_BATCH, end - g0);
    uint8_t *groups = c->scratch[thread];
    int last_rows = 0; /* the rows of a partial last group */
    for (int64_t i = 0; i < count; i++) {
      const int64_t g = g0 + i;
      const int valid = (int)GF_MIN(GF_GROUP_ROWS, c->args.out - g * GF_GROUP_ROWS);
      const uint8_t *src = c->args.w + (size_t)g * group_bytes;
      uint8_t *dst = groups + (size_t)i * group_bytes;
      if (valid < GF_GROUP_ROWS) { /* zero rows: zero scales, zero products */
        uint8_t *padded = groups + REGROUP_BATCH * group_bytes;
        memset(padded, 0, group_bytes);
        memcpy(padded, src, (size_t)valid * row_bytes);
        src = padded;
        last_rows = valid;
      }
      gf_rows_to_group_avx512(c->format, src, c->args.n_blocks, dst);
    }
    gf_qmm_args a = c->args;
    a.w = groups;
    a.y = c->args.y + g0 * GF_GROUP_ROWS;
    const int64_t whole = last_rows ? count - 1 : count;
    if (whole > 0) c->fn(&a, 0, whole);
    if (last_rows) {
      a.group_rows = last_rows;
      c->fn(&a, whole, count);
    }
  }
}

static int regrouped_matmul(gf_format format, gf_level level, const void *w, int64_t out, int64_t in,
                            const float *x, int64_t n, float *y, bool accumulate) {
  act_ctx a;
  int rc = pack_activations(format, level, 1, false, x, n, in, &a);
  if (rc != GF_OK) return rc;
  const size_t row_bytes = gf_row_bytes(format, in);
  regroup_ctx c = {{(const uint8_t *)w, row_bytes, out, in, a.n_blocks, a.act, a.act_row_bytes, n,
                    GF_MAX(1, ACT_GROUP_BYTES / (int64_t)a.act_row_bytes), y, accumulate, false, 0},
                   format, group_kernel(format, level), {NULL}};
  for (int t = 0; t < gf_threads(); t++) {
    /* the batch of groups, then room for a zero-padded copy of the last rows */
    c.scratch[t] = (uint8_t *)gf_scratch(t, GF_SCRATCH_B, (REGROUP_BATCH + 1) * GF_GROUP_ROWS * row_bytes);
    if (!c.scratch[t]) return GF_ERR_NOMEM;
  }
  int64_t groups = (out + GF_GROUP_ROWS - 1) / GF_GROUP_ROWS;
  gf_parallel_for(groups, 1, GF_MAX(1, min_rows_per_thread(in, n) / GF_GROUP_ROWS), regroup_task, &c);
  return GF_OK;
}

static int rows16_matmul(gf_format format, const void *w, int64_t out, int64_t in, const float *x,
                         int64_t n, float *y, bool accumulate) {
  act_ctx a;
  int rc = pack_activations(format, GF_LEVEL_AVX512, 1, false, x, n, in, &a);
  if (rc != GF_OK) return rc;
  rows16_ctx c;
  gf_qmm_args args = {(const uint8_t *)w, gf_row_bytes(format, in), out, in, a.n_blocks, a.act, a.act_row_bytes, n,
                      GF_MAX(1, ACT_GROUP_BYTES / (int64_t)a.act_row_bytes), y, accumulate, false, 0};
  c.args[0] = args;
  c.count = 1;
  c.format = format;
  return rows16_run(&c, n);
}
#endif

/* Interleaved weights: whole groups of 16 rows by the group kernel, the last rows % 16 rows
 * (row-major) by the scalar row kernel; both read activations in the lanes = 1 layout. */
typedef struct {
  gf_qmm_args args;
  gf_qmm16_fn groups_fn;
  gf_qmm_fn rows_fn;
  int64_t groups;
} qmm16_ctx;

static void qmm16_task(void *p, int64_t begin, int64_t end, int thread) {
  (void)thread;
  const qmm16_ctx *c = (const qmm16_ctx *)p;
  if (begin < c->groups) c->groups_fn(&c->args, begin, GF_MIN(end, c->groups));
  if (end > c->groups) {
    int64_t first = c->groups * GF_GROUP_ROWS;
    c->rows_fn(&c->args, first + GF_MAX(begin - c->groups, 0), first + (end - c->groups), NULL);
  }
}

static int interleaved_matmul(gf_format format, gf_level level, const void *w, int64_t out,
                              int64_t in, const float *x, int64_t n, float *y, bool accumulate) {
  act_ctx a;
  int rc = pack_activations(format, level, 1, false, x, n, in, &a);
  if (rc != GF_OK) return rc;
  int64_t group = GF_MAX(1, ACT_GROUP_BYTES / (int64_t)a.act_row_bytes);
  qmm16_ctx c = {{(const uint8_t *)w, gf_row_bytes(format, in), out, in, a.n_blocks, a.act,
                  a.act_row_bytes, n, group, y, accumulate, false, 0},
                 group_kernel(format, level),
                 format == GF_FMT_Q4_0 ? gf_qmm_q4_0_scalar : gf_qmm_q8_0_scalar,
                 gf_interleaved_groups(out)};
  /* Units: the groups, then one per trailing row-major row. */
  int64_t units = c.groups + (out - c.groups * GF_GROUP_ROWS);
  gf_parallel_for(units, 1, GF_MAX(1, min_rows_per_thread(in, n) / GF_GROUP_ROWS), qmm16_task, &c);
  return GF_OK;
}

/* ---- one activation row against several matrices (MoE decode: the routed experts) ---- */

typedef struct {
  gf_qmm_args args[GF_MAX_MATRICES];
  gf_qmm_fn fn;
  int64_t tiles; /* 4-row tiles per matrix */
  uint8_t *work[GF_MAX_THREADS];
} qmm_matrices_ctx;

/* Tiles [begin, end) of all matrices' tiles, matrix after matrix. */
static void qmm_matrices_task(void *p, int64_t begin, int64_t end, int thread) {
  const qmm_matrices_ctx *c = (const qmm_matrices_ctx *)p;
  for (int64_t t = begin; t < end;) {
    const int64_t j = t / c->tiles, first = t % c->tiles, last = GF_MIN(c->tiles, first + (end - t));
    const gf_qmm_args *a = &c->args[j];
    c->fn(a, first * 4, GF_MIN(a->out, last * 4), c->work[thread]);
    t += last - first;
  }
}

int gf_qmm_matrices_nolock(gf_format format, gf_level level, const uint8_t *const *w, int64_t count,
                           int64_t out, int64_t in, const float *x, bool shared_x, float *y) {
  if (count > GF_MAX_MATRICES) return GF_ERR_NOMEM;
#if GF_X86
  if (level == GF_LEVEL_AVX512 && out >= GF_GROUP_ROWS) { /* as gf_matmul's one-row calls, bit for bit */
    act_ctx a;
    int rc = pack_activations(format, level, 1, false, x, shared_x ? 1 : count, in, &a);
    if (rc != GF_OK) return rc;
    rows16_ctx c;
    for (int64_t j = 0; j < count; j++) {
      gf_qmm_args args = {w[j], gf_row_bytes(format, in), out, in, a.n_blocks,
                          a.act + (shared_x ? 0 : (size_t)j * a.act_row_bytes), a.act_row_bytes, 1, 1,
                          y + j * out, false, false, 0};
      c.args[j] = args;
    }
    c.count = count;
    c.format = format;
    return rows16_run(&c, 1);
  }
#endif
  const int lanes = lanes_of(level);
  const int64_t n_blocks = in / GF_BLOCK;
  const bool aligned = level == GF_LEVEL_AVX512;
  act_ctx a;
  int rc = pack_activations(format, level, lanes, aligned, x, shared_x ? 1 : count, in, &a);
  if (rc != GF_OK) return rc;
  qmm_matrices_ctx c;
  c.fn = qmm_impl(format, level);
  c.tiles = (out + 3) / 4;
  for (int64_t j = 0; j < count; j++) {
    gf_qmm_args args = {w[j], gf_row_bytes(format, in), out, in, n_blocks,
                        a.act + (shared_x ? 0 : (size_t)j * a.act_row_bytes), a.act_row_bytes, 1, 4,
                        y + j * out, false, aligned, 0};
    c.args[j] = args;
  }
  for (int t = 0; t < gf_threads(); t++) {
    c.work[t] = (uint8_t *)gf_scratch(t, GF_SCRATCH_B, gf_qmm_work_bytes(lanes, n_blocks));
    if (!c.work[t]) return GF_ERR_NOMEM;
  }
  gf_parallel_for(count * c.tiles, 1, GF_MAX(1, min_rows_per_thread(in, 1) / 4), qmm_matrices_task, &c);
  return GF_OK;
}

/* ---- scalar oracles ---- */

static inline const uint8_t *act_block(const gf_qmm_args *a, int64_t row, int64_t block) {
  return a->act + row * a->act_row_bytes + block * gf_act_chunk_bytes(1);
}
static inline float act_scale(const uint8_t *block) { return gf_load_f32(block + 32); }

static inline void store(const gf_qmm_args *a, int64_t row, int64_t o, float v) {
  float *dst = a->y + row * a->out + o;
  *dst = a->accumulate ? *dst + v : v;
}

void gf_qmm_q8_0_scalar(const gf_qmm_args *a, int64_t row_begin, int64_t row_end, uint8_t *work) {
  (void)work;
  for (int64_t o = row_begin; o < row_end; o++) {
    const uint8_t *w = a->w + o * a->w_row_bytes;
    for (int64_t row = 0; row < a->n; row++) {
      float sum = 0.0f;
      for (int64_t b = 0; b < a->n_blocks; b++) {
        const uint8_t *wb = w + b * GF_Q8_0_BLOCK_BYTES, *xb = act_block(a, row, b);
        int32_t isum = 0;
        for (int e = 0; e < GF_BLOCK; e++) isum += (int8_t)wb[2 + e] * (int8_t)xb[e];
        sum += (float)isum * (gf_fp16_to_fp32(gf_load_u16(wb)) * act_scale(xb));
      }
      store(a, row, o, sum);
    }
  }
}

void gf_qmm_q4_0_scalar(const gf_qmm_args *a, int64_t row_begin, int64_t row_end, uint8_t *work) {
  (void)work;
  for (int64_t o = row_begin; o < row_end; o++) {
    const uint8_t *w = a->w + o * a->w_row_bytes;
    for (int64_t row = 0; row < a->n; row++) {
      float sum = 0.0f;
      for (int64_t b = 0; b < a->n_blocks; b++) {
        const uint8_t *wb = w + b * GF_Q4_0_BLOCK_BYTES, *xb = act_block(a, row, b);
        int32_t isum = 0;
        for (int e = 0; e < GF_BLOCK / 2; e++) {
          isum += ((wb[2 + e] & 0x0f) - 8) * (int8_t)xb[e];
          isum += ((wb[2 + e] >> 4) - 8) * (int8_t)xb[e + 16];
        }
        sum += (float)isum * (gf_fp16_to_fp32(gf_load_u16(wb)) * act_scale(xb));
      }
      store(a, row, o, sum);
    }
  }
}

void gf_fmm_f32_scalar(const gf_fmm_args *a, int64_t row_begin, int64_t row_end) {
  for (int64_t o = row_begin; o < row_end; o++) {
    const uint8_t *w = a->w + o * a->w_row_bytes;
    for (int64_t row = 0; row < a->n; row++) {
      const float *x = a->x + row * a->in;
      float sum = 0.0f;
      for (int64_t k = 0; k < a->in; k++) sum += gf_load_f32(w + 4 * k) * x[k];
      float *dst = a->y + row * a->out + o;
      *dst = a->accumulate ? *dst + sum : sum;
    }
  }
}

void gf_fmm_bf16_scalar(const gf_fmm_args *a, int64_t row_begin, int64_t row_end) {
  for (int64_t o = row_begin; o < row_end; o++) {
    const uint8_t *w = a->w + o * a->w_row_bytes;
    for (int64_t row = 0; row < a->n; row++) {
      const float *x = a->x + row * a->in;
      float sum = 0.0f;
      for (int64_t k = 0; k < a->in; k++) sum += gf_bf16_to_fp32(gf_load_u16(w + 2 * k)) * x[k];
      float *dst = a->y + row * a->out + o;
      *dst = a->accumulate ? *dst + sum : sum;
    }
  }
}

/* ---- f32 / bf16 ---- */

typedef struct {
  gf_fmm_args args;
  gf_fmm_fn fn;
} fmm_ctx;

static void fmm_task(void *p, int64_t begin, int64_t end, int thread) {
  (void)thread;
  const fmm_ctx *c = (const fmm_ctx *)p;
  c->fn(&c->args, begin, end);
}

static gf_fmm_fn fmm_impl(gf_format format, gf_level level) {
  bool bf16 = format == GF_FMT_BF16;
#if GF_X86
  if (level == GF_LEVEL_AVX512) return bf16 ? gf_fmm_bf16_avx512 : gf_fmm_f32_avx512;
  if (level == GF_LEVEL_AVX2) return bf16 ? gf_fmm_bf16_avx2 : gf_fmm_f32_avx2;
#endif
  (void)level;
  return bf16 ? gf_fmm_bf16_scalar : gf_fmm_f32_scalar;
}

/* Streams the weights once per call for few activation rows. */
int gf_rowdot(gf_format format, gf_level level, const void *w, size_t w_row_bytes, int64_t out,
              int64_t in, const float *x, int64_t n, float *y, bool accumulate) {
  fmm_ctx c = {{(const uint8_t *)w, w_row_bytes, out, in, x, n, y, accumulate},
               fmm_impl(format, level)};
  gf_parallel_for(out, 4, min_rows_per_thread(in, n), fmm_task, &c);
  return GF_OK;
}

int gf_matmul_nolock(gf_format format, gf_layout layout, gf_level level, const void *w, int64_t out,
                     int64_t in, const float *x, int64_t n, float *y, bool accumulate) {
  if (n == 0 || out == 0) return GF_OK; /* nothing to compute */
  if (in == 0) {                         /* empty sums */
    if (!accumulate) memset(y, 0, (size_t)(n * out) * sizeof(float));
    return GF_OK;
  }
  if (layout == GF_LAYOUT_INTERLEAVED) return interleaved_matmul(format, level, w, out, in, x, n, y, accumulate);
  if (format == GF_FMT_Q8_0 || format == GF_FMT_Q4_0) return quantized_matmul(format, level, w, out, in, x, n, y, accumulate);
  if (n <= ROWDOT_MAX_ROWS) return gf_rowdot(format, level, w, gf_row_bytes(format, in), out, in, x, n, y, accumulate);
  /* y = x W^T: A = x [n, in], B^T = W [out, in]. */
  gf_gemm_problem p = {x, w, y, n, out, in, false, true,
                       format == GF_FMT_BF16 ? GF_B_BF16_ROWS : GF_B_F32,
                       gf_row_bytes(format, in), 1, 0, 0, 0, accumulate};
  return gf_gemm_run(&p, level);
}

int gf_matmul(gf_format format, gf_layout layout, const void *w, int64_t out_features,
              int64_t in_features, const float *x, int64_t n_rows, float *y, bool accumulate) {
  int kernel = gf_kernel_index(GF_FAMILY_MATMUL, format);
  gf_call_lock();
  gf_level level = gf_kernel_level(kernel);
  /* Interleaved groups have avx512 and scalar kernels only (weights are interleaved at load
   * where avx512 runs); an avx2 cap runs, and is counted as, scalar. */
  if (layout == GF_LAYOUT_INTERLEAVED && level == GF_LEVEL_AVX2) level = GF_LEVEL_SCALAR;
  int rc = gf_matmul_nolock(format, layout, level, w, out_features, in_features, x, n_rows, y, accumulate);
  if (rc == GF_OK) gf_count(kernel, level);
  gf_call_unlock();
  return rc;
}
