/*
 * f32 gemm: C (+)= op(A) op(B), batched with strides. Goto-style blocking: for each
 * (problem, MC rows, NC columns) task a thread packs an MC x KC block of A into MR-row panels and
 * a KC x NC block of B into NR-column panels (zero-padded at the edges), then runs the level's
 * MR x NR register-tile micro-kernel over them; KC blocks accumulate into C. Tasks are split
 * statically over the threads. One-row problems (decode) skip packing: a row-dot kernel when B is
 * transposed ([N, K] rows), a streaming axpy kernel otherwise.
 */
#include <stdlib.h>

#include "gf_internal.h"

#define KC 256
#define NC 512
#define MIN_MACS_PER_THREAD (1 << 17)

/* ---- scalar micro-kernels ---- */

static void ukernel_scalar(int64_t kc, const float *ap, const float *bp, float *c, int64_t ldc,
                           bool load_c) {
  float acc[4][4] = {{0}};
  for (int64_t k = 0; k < kc; k++, ap += 4, bp += 4)
    for (int i = 0; i < 4; i++)
      for (int j = 0; j < 4; j++) acc[i][j] += ap[i] * bp[j];
  for (int i = 0; i < 4; i++)
    for (int j = 0; j < 4; j++) c[i * ldc + j] = load_c ? c[i * ldc + j] + acc[i][j] : acc[i][j];
}

static void gemv_kn_scalar(const float *a, const float *b, int64_t k, int64_t ldb, float *y,
                           int64_t n, bool accumulate) {
  for (int64_t j = 0; j < n; j++) {
    float sum = 0.0f;
    for (int64_t kk = 0; kk < k; kk++) sum += a[kk] * b[kk * ldb + j];
    y[j] = accumulate ? y[j] + sum : sum;
  }
}

const gf_ukernel gf_ukernel_scalar = {4, 4, ukernel_scalar, gemv_kn_scalar, NULL};

static const gf_ukernel *ukernel_for(gf_level level) {
#if GF_X86
  if (level == GF_LEVEL_AVX512) return &gf_ukernel_avx512;
  if (level == GF_LEVEL_AVX2) return &gf_ukernel_avx2;
#endif
  (void)level;
  return &gf_ukernel_scalar;
}

/* ---- packing ---- */

static void pack_a(const gf_gemm_problem *p, const float *a, int64_t m0, int64_t mc, int64_t k0,
                   int64_t kc, int mr, float *ap) {
  for (int64_t i0 = 0; i0 < mc; i0 += mr, ap += kc * mr) {
    int valid = (int)GF_MIN((int64_t)mr, mc - i0);
    if (p->transpose_a) { /* A^T [K, M]: the panel's mr values of each k are contiguous */
      for (int64_t k = 0; k < kc; k++) {
        const float *src = a + (k0 + k) * p->m + m0 + i0;
        int ii = 0;
        for (; ii < valid; ii++) ap[k * mr + ii] = src[ii];
        for (; ii < mr; ii++) ap[k * mr + ii] = 0.0f;
      }
      continue;
    }
    for (int ii = 0; ii < mr; ii++) {
      if (ii >= valid) {
        for (int64_t k = 0; k < kc; k++) ap[k * mr + ii] = 0.0f;
        continue;
      }
      const float *row = a + (m0 + i0 + ii) * p->k + k0;
      for (int64_t k = 0; k < kc; k++) ap[k * mr + ii] = row[k];
    }
  }
}

static void pack_rows_generic(const uint8_t *b, size_t row_bytes, bool bf16, int64_t k0, int64_t kc,
                              int64_t n0, int64_t nc, int nr, float *bp) {
  for (int64_t j0 = 0; j0 < nc; j0 += nr, bp += kc * nr)
    for (int jj = 0; jj < nr; jj++) {
      if (j0 + jj >= nc) {
        for (int64_t k = 0; k < kc; k++) bp[k * nr + jj] = 0.0f;
        continue;
      }
      const uint8_t *row = b + (size_t)(n0 + j0 + jj) * row_bytes;
      if (bf16)
        for (int64_t k = 0; k < kc; k++) bp[k * nr + jj] = gf_bf16_to_fp32(gf_load_u16(row + 2 * (k0 + k)));
      else
        for (int64_t k = 0; k < kc; k++) bp[k * nr + jj] = gf_load_f32(row + 4 * (k0 + k));
    }
}

static void pack_b(const gf_gemm_problem *p, const gf_ukernel *uk, const uint8_t *b, int64_t k0,
                   int64_t kc, int64_t n0, int64_t nc, float *bp) {
  const int nr = uk->nr;
  if (p->transpose_b || p->b_kind == GF_B_BF16_ROWS) { /* B^T rows: contiguous in k */
    bool bf16 = p->b_kind == GF_B_BF16_ROWS;
    if (uk->pack_rows)
      uk->pack_rows(b, p->b_row_bytes, bf16, k0, kc, n0, nc, bp);
    else
      pack_rows_generic(b, p->b_row_bytes, bf16, k0, kc, n0, nc, nr, bp);
    return;
  }
  for (int64_t j0 = 0; j0 < nc; j0 += nr, bp += kc * nr) { /* B [K, N]: rows contiguous in n */
    int valid = (int)GF_MIN((int64_t)nr, nc - j0);
    for (int64_t k = 0; k < kc; k++) {
      memcpy(bp + k * nr, b + (size_t)(k0 + k) * p->b_row_bytes + 4 * (size_t)(n0 + j0), (size_t)valid * 4);
      for (int jj = valid; jj < nr; jj++) bp[k * nr + jj] = 0.0f;
    }
  }
}

/* ---- tasks ----
 * A task is one problem's NC-column block over a group of its MC-row blocks: B's block is packed
 * once per KC step and serves every row block of the group. Problems with few column blocks are
 * split into several row groups so that every thread gets work. */

typedef struct {
  const gf_gemm_problem *p;
  const gf_ukernel *uk;
  int64_t mc_max, m_blocks, n_blocks, m_groups, blocks_per_group;
  float *a_pack[GF_MAX_THREADS], *b_pack[GF_MAX_THREADS];
} gemm_ctx;

static void compute_block(const gemm_ctx *g, float *c, int64_t m0, int64_t mc, int64_t n0,
                          int64_t nc, int64_t kc, bool load_c, const float *ap, const float *bp) {
  const gf_gemm_problem *p = g->p;
  const int mr = g->uk->mr, nr = g->uk->nr;
  for (int64_t jr = 0; jr < nc; jr += nr) {
    for (int64_t ir = 0; ir < mc; ir += mr) {
      float *ct = c + (m0 + ir) * p->n + n0 + jr;
      const float *apanel = ap + (ir / mr) * kc * mr, *bpanel = bp + (jr / nr) * kc * nr;
      int64_t rows = GF_MIN((int64_t)mr, mc - ir), cols = GF_MIN((int64_t)nr, nc - jr);
      if (rows == mr && cols == nr) {
        g->uk->kernel(kc, apanel, bpanel, ct, p->n, load_c);
        continue;
      }
      float tmp[16 * 32] __attribute__((aligned(64))); /* MR x NR <= 16 x 32 for every level */
      for (int64_t i = 0; i < mr; i++)
        for (int64_t j = 0; j < nr; j++)
          tmp[i * nr + j] = load_c && i < rows && j < cols ? ct[i * p->n + j] : 0.0f;
      g->uk->kernel(kc, apanel, bpanel, tmp, nr, load_c);
      for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < cols; j++) ct[i * p->n + j] = tmp[i * nr + j];
    }
  }
}

static void run_task(const gemm_ctx *g, int64_t task, float *ap, float *bp) {
  const gf_gemm_problem *p = g->p;
  int64_t per_problem = g->n_blocks * g->m_groups;
  int64_t bi = task / per_problem, rest = task % per_problem;
  int64_t n0 = (rest / g->m_groups) * NC, group = rest % g->m_groups;
  int64_t nc = GF_MIN((int64_t)NC, p->n - n0);
  int64_t mb_begin = group * g->blocks_per_group, mb_end = GF_MIN(g->m_blocks, mb_begin + g->blocks_per_group);
  const float *a = p->a + bi * p->stride_a;
  const uint8_t *b = (const uint8_t *)p->b + (size_t)(bi * p->stride_b) * (p->b_kind == GF_B_BF16_ROWS ? 2 : 4);
  float *c = p->c + bi * p->stride_c;
  for (int64_t k0 = 0; k0 < p->k; k0 += KC) {
    int64_t kc = GF_MIN((int64_t)KC, p->k - k0);
    bool load_c = p->accumulate || k0 > 0;
    pack_b(p, g->uk, b, k0, kc, n0, nc, bp);
    for (int64_t mb = mb_begin; mb < mb_end; mb++) {
      int64_t m0 = mb * g->mc_max, mc = GF_MIN(g->mc_max, p->m - m0);
      pack_a(p, a, m0, mc, k0, kc, g->uk->mr, ap);
      compute_block(g, c, m0, mc, n0, nc, kc, load_c, ap, bp);
    }
  }
}

static void gemm_task(void *ctx, int64_t begin, int64_t end, int thread) {
  const gemm_ctx *g = (const gemm_ctx *)ctx;
  for (int64_t t = begin; t < end; t++) run_task(g, t, g->a_pack[thread], g->b_pack[thread]);
}

/* One-row problems: no packing. */
typedef struct {
  const gf_gemm_problem *p;
  const gf_ukernel *uk;
} gemv_ctx;

static void gemv_kn_task(void *ctx, int64_t begin, int64_t end, int thread) {
  (void)thread;
  const gemv_ctx *g = (const gemv_ctx *)ctx;
  const gf_gemm_problem *p = g->p;
  for (int64_t bi = 0; bi < p->batch; bi++) {
    const float *b = (const float *)p->b + bi * p->stride_b;
    g->uk->gemv_kn(p->a + bi * p->stride_a, b + begin, p->k, p->n, p->c + bi * p->stride_c + begin,
                   end - begin, p->accumulate);
  }
}

int gf_gemm_run(const gf_gemm_problem *p, gf_level level) {
  if (p->m == 0 || p->n == 0 || p->batch == 0) return GF_OK;
  const gf_ukernel *uk = ukernel_for(level);
  if (p->k == 0) {
    for (int64_t bi = 0; bi < p->batch; bi++)
      if (!p->accumulate) memset(p->c + bi * p->stride_c, 0, (size_t)(p->m * p->n) * sizeof(float));
    return GF_OK;
  }
  if (p->m == 1 && p->b_kind == GF_B_F32) {
    /* op(A) of one row is contiguous either way ([1, K] or [K, 1]). */
    if (p->transpose_b) {
      for (int64_t bi = 0; bi < p->batch; bi++) {
        int rc = gf_rowdot(GF_FMT_F32, level, (const float *)p->b + bi * p->stride_b, p->b_row_bytes,
                           p->n, p->k, p->a + bi * p->stride_a, 1, p->c + bi * p->stride_c,
                           p->accumulate);
        if (rc != GF_OK) return rc;
      }
      return GF_OK;
    }
    gemv_ctx g = {p, uk};
    int64_t min_cols = GF_MAX(64, MIN_MACS_PER_THREAD / GF_MAX(1, p->k * p->batch));
    gf_parallel_for(p->n, 64, min_cols, gemv_kn_task, &g);
    return GF_OK;
  }

  gemm_ctx g = {p, uk, 0, 0, 0, 0, 0, {NULL}, {NULL}};
  int threads = gf_threads();
  g.mc_max = (128 / uk->mr) * uk->mr;
  g.m_blocks = (p->m + g.mc_max - 1) / g.mc_max;
  g.n_blocks = (p->n + NC - 1) / NC;
  /* Enough tasks for 2 per thread, splitting row blocks into groups only when needed. */
  int64_t wanted_groups = (2 * threads + p->batch * g.n_blocks - 1) / (p->batch * g.n_blocks);
  g.m_groups = GF_MAX(1, GF_MIN(g.m_blocks, wanted_groups));
  g.blocks_per_group = (g.m_blocks + g.m_groups - 1) / g.m_groups;
  g.m_groups = (g.m_blocks + g.blocks_per_group - 1) / g.blocks_per_group;
  int64_t tasks = p->batch * g.n_blocks * g.m_groups;
  for (int t = 0; t < threads; t++) {
    g.a_pack[t] = (float *)gf_scratch(t, GF_SCRATCH_A, (size_t)g.mc_max * KC * sizeof(float));
    g.b_pack[t] = (float *)gf_scratch(t, GF_SCRATCH_B, (size_t)KC * NC * sizeof(float));
    if (!g.a_pack[t] || !g.b_pack[t]) return GF_ERR_NOMEM;
  }
  int64_t macs_per_task = GF_MAX(1, (p->m * p->n * p->k) / GF_MAX(1, g.m_groups * g.n_blocks));
  gf_parallel_for(tasks, 1, GF_MAX(1, MIN_MACS_PER_THREAD / macs_per_task), gemm_task, &g);
  return GF_OK;
}

int gf_gemm_f32(const float *a, const float *b, float *c, int64_t m, int64_t n, int64_t k,
                bool transpose_a, bool transpose_b, int64_t batch, int64_t stride_a,
                int64_t stride_b, int64_t stride_c, bool accumulate) {
  gf_call_lock();
  gf_level level = gf_kernel_level(GF_KERNEL_GEMM_F32);
  gf_gemm_problem p = {a, b, c, m, n, k, transpose_a, transpose_b, GF_B_F32,
                       (size_t)(transpose_b ? k : n) * sizeof(float), batch, stride_a, stride_b,
                       stride_c, accumulate};
  int rc = gf_gemm_run(&p, level);
  if (rc == GF_OK) gf_count(GF_KERNEL_GEMM_F32, level);
  gf_call_unlock();
  return rc;
}
