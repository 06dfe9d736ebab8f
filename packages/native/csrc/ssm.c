/*
 * Mamba-2 kernels (the bodies of @graniteflow/ops-mamba's SelectiveScan / SelectiveStateUpdate,
 * CausalConv1d and GatedRmsNorm on the native backend).
 *
 * ssmScan: the plain sequential recurrence S_t = exp(dt A) S_{t-1} + dt x_t (x) B_t,
 * y_t = S_t . C_t + D x_t. Heads are independent, so threads split (sequence, head) pairs; each
 * pair walks its T tokens with the head's P x N state hot in cache while one token's B_t / C_t
 * serve all P state rows. dt, its softplus and exp(dt A) are computed in double once per
 * (token, head), as the JavaScript body does; the state rows are float32 (SIMD over N).
 * causalConv1d and gatedRmsNorm are short streaming loops: scalar C (the compiler vectorizes the
 * channel loops), threads split channels / rows.
 */
#include "gf_internal.h"

/* Fewer state updates (or multiply-adds) than this per thread is not worth waking a worker. */
#define MIN_WORK_PER_THREAD (1 << 15)

static float ssm_step_scalar(float *s, const float *b, const float *c, int64_t n, float decay, float dx) {
  float acc = 0.0f;
  for (int64_t i = 0; i < n; i++) {
    const float v = decay * s[i] + dx * b[i];
    s[i] = v;
    acc += v * c[i];
  }
  return acc;
}

static gf_ssm_step_fn ssm_step_impl(gf_level level) {
#if GF_X86
  if (level == GF_LEVEL_AVX512) return gf_ssm_step_avx512;
  if (level == GF_LEVEL_AVX2) return gf_ssm_step_avx2;
#else
  (void)level;
#endif
  return ssm_step_scalar;
}

/* PyTorch's softplus (v itself above 20), then the clamp, as discretizeDt in ops-mamba. */
static double discretize_dt(double raw, double lo, double hi) {
  const double s = raw > 20 ? raw : log1p(exp(raw));
  return s < lo ? lo : s > hi ? hi : s;
}

typedef struct {
  const gf_ssm_scan_args *a;
  gf_ssm_step_fn step;
} scan_ctx;

static void scan_task(void *ctx, int64_t begin, int64_t end, int thread) {
  (void)thread;
  const scan_ctx *sc = (const scan_ctx *)ctx;
  const gf_ssm_scan_args *a = sc->a;
  const int64_t T = a->seq_len, H = a->heads, P = a->head_dim, G = a->groups, N = a->state_size;
  const int64_t per_group = H / G, PN = P * N;
  for (int64_t u = begin; u < end; u++) {
    const int64_t b = u / H, h = u % H, g = h / per_group;
    const double A = -exp((double)a->a_log[h]);
    const float Dh = a->d[h];
    const double bias = a->dt_bias[h];
    float *s = a->final_state + u * PN;
    if (a->initial_state == NULL)
      memset(s, 0, (size_t)PN * sizeof(float));
    else if (a->initial_state + u * PN != s)
      memcpy(s, a->initial_state + u * PN, (size_t)PN * sizeof(float));
    for (int64_t t = 0; t < T; t++) {
      const int64_t bt = b * T + t;
      const double dt = discretize_dt((double)a->dt[bt * H + h] + bias, a->dt_min, a->dt_max);
      const float decay = (float)exp(dt * A);
      const float *bv = a->b + (bt * G + g) * N, *cv = a->c + (bt * G + g) * N;
      const float *x = a->x + (bt * H + h) * P;
      float *y = a->y + (bt * H + h) * P;
      for (int64_t p = 0; p < P; p++) {
        const float xv = x[p];
        y[p] = sc->step(s + p * N, bv, cv, N, decay, (float)(dt * xv)) + Dh * xv;
      }
    }
  }
}

int gf_ssm_scan(const gf_ssm_scan_args *a) {
  gf_call_lock();
  gf_level level = gf_kernel_level(GF_KERNEL_SSM_SCAN);
  scan_ctx ctx = {a, ssm_step_impl(level)};
  const int64_t work = GF_MAX(1, a->seq_len * a->head_dim * a->state_size);
  gf_parallel_for(a->batch * a->heads, 1, GF_MAX(1, MIN_WORK_PER_THREAD / work), scan_task, &ctx);
  gf_count(GF_KERNEL_SSM_SCAN, level);
  gf_call_unlock();
  return GF_OK;
}

/* ---- causal depthwise conv ---- */

typedef struct {
  const gf_causal_conv1d_args *a;
  const float *wt; /* [K, C]: taps outermost so the channel loops are contiguous */
} conv_ctx;

static void conv_task(void *ctx, int64_t c0, int64_t c1, int thread) {
  (void)thread;
  const conv_ctx *cc = (const conv_ctx *)ctx;
  const gf_causal_conv1d_args *a = cc->a;
  const int64_t T = a->seq_len, C = a->channels, K = a->kernel_size, S = K - 1;
  for (int64_t b = 0; b < a->batch; b++) {
    const float *x = a->x + b * T * C;
    const float *state = a->conv_state ? a->conv_state + b * S * C : NULL;
    /* Row r of u = [state or zeros, x]; NULL for the zeros. */
#define U_ROW(r) ((r) < S ? (state ? state + (r) * C : NULL) : x + ((r) - S) * C)
    for (int64_t t = 0; t < T; t++) {
      float *y = a->y + (b * T + t) * C;
      for (int64_t c = c0; c < c1; c++) y[c] = a->bias ? a->bias[c] : 0.0f;
      for (int64_t k = 0; k < K; k++) {
        const float *u = U_ROW(t + k);
        if (u == NULL) continue;
        const float *w = cc->wt + k * C;
        for (int64_t c = c0; c < c1; c++) y[c] += w[c] * u[c];
      }
      if (a->silu)
        for (int64_t c = c0; c < c1; c++) y[c] = y[c] / (1.0f + expf(-y[c]));
    }
    float *ns = a->new_state + b * S * C;
    for (int64_t i = 0; i < S; i++) {
      const float *u = U_ROW(T + i);
      for (int64_t c = c0; c < c1; c++) ns[i * C + c] = u ? u[c] : 0.0f;
    }
#undef U_ROW
  }
}

int gf_causal_conv1d(const gf_causal_conv1d_args *a) {
  gf_call_lock();
  const int64_t C = a->channels, K = a->kernel_size;
  float *wt = (float *)gf_scratch(0, GF_SCRATCH_TMP, (size_t)(K * C) * sizeof(float));
  if (wt == NULL) {
    gf_call_unlock();
    return GF_ERR_NOMEM;
  }
  for (int64_t c = 0; c < C; c++)
    for (int64_t k = 0; k < K; k++) wt[k * C + c] = a->weight[c * K + k];
  conv_ctx ctx = {a, wt};
  const int64_t work = GF_MAX(1, a->batch * (a->seq_len + 1) * K);
  gf_parallel_for(C, 16, GF_MAX(1, MIN_WORK_PER_THREAD / work), conv_task, &ctx);
  gf_count(GF_KERNEL_CAUSAL_CONV1D, GF_LEVEL_SCALAR);
  gf_call_unlock();
  return GF_OK;
}

/* ---- gated RMSNorm (gate before norm) ---- */

typedef struct {
  const gf_gated_rms_norm_args *a;
} norm_ctx;

static void norm_task(void *ctx, int64_t begin, int64_t end, int thread) {
  (void)thread;
  const gf_gated_rms_norm_args *a = ((const norm_ctx *)ctx)->a;
  const int64_t gs = a->group_size, groups = a->dim / gs;
  for (int64_t u = begin; u < end; u++) {
    const int64_t i0 = u * gs, w0 = (u % groups) * gs;
    const float *y = a->y + i0, *z = a->z + i0;
    float *o = a->out + i0;
    double sum_sq = 0;
    for (int64_t i = 0; i < gs; i++) {
      const float g = y[i] * (z[i] / (1.0f + expf(-z[i])));
      o[i] = g;
      sum_sq += (double)g * g;
    }
    const float inv = (float)(1.0 / sqrt(sum_sq / (double)gs + a->eps));
    for (int64_t i = 0; i < gs; i++) o[i] *= inv * a->weight[w0 + i];
  }
}

int gf_gated_rms_norm(const gf_gated_rms_norm_args *a) {
  gf_call_lock();
  norm_ctx ctx = {a};
  const int64_t units = a->group_size > 0 ? a->rows * (a->dim / a->group_size) : 0;
  gf_parallel_for(units, 1, GF_MAX(1, MIN_WORK_PER_THREAD / GF_MAX(1, a->group_size * 8)), norm_task, &ctx);
  gf_count(GF_KERNEL_GATED_RMS_NORM, GF_LEVEL_SCALAR);
  gf_call_unlock();
  return GF_OK;
}
