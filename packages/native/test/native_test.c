/*
 * Sanitizer harness: links the kernel sources directly and checks every SIMD level this CPU has
 * against the scalar level on random inputs (bit-exact where the integer / conversion paths
 * promise it, within float summation-order error elsewhere), against float64 references, and
 * with 1 vs 2 threads. Buffers are malloc'ed at their exact sizes so that AddressSanitizer
 * catches any read or write past them. Run by `npm run test:native-asan`.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../csrc/gf.h"

#define GF_MIN_I(a, b) ((a) < (b) ? (a) : (b))

static int passed, failed;
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t next_u64(void) {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return rng_state;
}
static float uniform(void) { return (float)((next_u64() >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f; }

static void check(int ok, const char *what) {
  if (ok) {
    passed++;
  } else {
    failed++;
    printf("FAIL: %s\n", what);
  }
}

/* Random values with a per-32-block magnitude, plus blocks that exercise the rules' corners. */
static void fill(float *x, int64_t n, int specials) {
  for (int64_t b = 0; b < (n + 31) / 32; b++) {
    float scale = powf(10.0f, (float)((int)(next_u64() % 9) - 4));
    int kind = specials ? (int)(next_u64() % 13) : 99;
    for (int64_t j = b * 32; j < GF_MIN_I(n, b * 32 + 32); j++) {
      float v = uniform() * scale;
      switch (kind) {
        case 0: v = 0.0f; break;                         /* all zero: q4_0 d = -0 */
        case 1: v = (j % 2) ? -0.0f : 0.0f; break;
        case 2: v = (j % 7 == 3) ? -scale : v * 0.5f; break; /* ties for the largest magnitude */
        case 3: v = (j % 5 == 0) ? scale : ((j % 5 == 1) ? -scale : v); break;
        case 4: v = roundf(v * 4) / 4; break;            /* values on rounding boundaries */
        case 5: v = (j == b * 32 + 7) ? NAN : v; break;
        case 6: v = (j == b * 32 + 31) ? NAN : v; break; /* NaN last: q8_0's amax becomes NaN */
        case 7: v = (j == b * 32 + 3) ? -INFINITY : v; break;
        case 8: v = v * 1e-30f; break;                   /* subnormal half scales */
        case 9: v = v * 7e4f; break;                     /* scales overflowing half */
        case 10: v = (j == b * 32) ? 127.0f : (float)(j - b * 32) - 16.5f; break; /* d = 1: .5 ties */
        default: break;
      }
      x[j] = v;
    }
  }
}

static const gf_format formats[] = {GF_FMT_F32, GF_FMT_BF16, GF_FMT_Q8_0, GF_FMT_Q4_0};

static void test_quantize(gf_level level) {
  const int64_t shapes[][2] = {{1, 32}, {3, 96}, {7, 64}, {2, 2048}, {130, 160}};
  for (size_t f = 0; f < 4; f++)
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
      gf_format fmt = formats[f];
      int64_t rows = shapes[s][0], cols = shapes[s][1];
      size_t bytes = (size_t)rows * gf_row_bytes(fmt, cols);
      float *x = malloc(sizeof(float) * rows * cols);
      uint8_t *ref = malloc(bytes), *got = malloc(bytes);
      float *back_ref = malloc(sizeof(float) * rows * cols), *back = malloc(sizeof(float) * rows * cols);
      fill(x, rows * cols, 1);
      gf_set_level_cap(GF_LEVEL_SCALAR);
      gf_quantize(fmt, x, rows, cols, ref);
      gf_dequantize(fmt, ref, rows, cols, back_ref);
      gf_set_level_cap(level);
      int kernel = gf_kernel_index(GF_FAMILY_QUANTIZE, fmt);
      uint64_t before = gf_counter(kernel, gf_kernel_level(kernel));
      gf_quantize(fmt, x, rows, cols, got);
      gf_dequantize(fmt, ref, rows, cols, back);
      char what[160];
      snprintf(what, sizeof what, "quantize %s %lldx%lld at %s equals scalar", gf_format_name(fmt),
               (long long)rows, (long long)cols, gf_level_name(level));
      check(memcmp(ref, got, bytes) == 0, what);
      snprintf(what, sizeof what, "dequantize %s %lldx%lld at %s equals scalar", gf_format_name(fmt),
               (long long)rows, (long long)cols, gf_level_name(level));
      check(memcmp(back_ref, back, sizeof(float) * rows * cols) == 0, what);
      snprintf(what, sizeof what, "quantize %s counted at %s", gf_format_name(fmt), gf_level_name(gf_kernel_level(kernel)));
      check(gf_counter(kernel, gf_kernel_level(kernel)) == before + 1, what);
      /* gather rows 0, last, 0 again */
      int32_t idx[3] = {0, (int32_t)(rows - 1), 0};
      float *g = malloc(sizeof(float) * 3 * cols);
      gf_dequantize_rows(fmt, GF_LAYOUT_ROWS, ref, rows, cols, idx, 3, g);
      int ok = 1;
      for (int i = 0; i < 3; i++) ok &= memcmp(g + i * cols, back_ref + idx[i] * cols, sizeof(float) * cols) == 0;
      snprintf(what, sizeof what, "dequantizeRows %s at %s", gf_format_name(fmt), gf_level_name(level));
      check(ok, what);
      free(g);
      free(x), free(ref), free(got), free(back_ref), free(back);
    }
}

/* Sum over k of |w_k x_k| in float64: the scale of the summation-order error of one output. */
static void matmul_case(gf_format fmt, gf_level level, int64_t out, int64_t in, int64_t n, int accumulate) {
  size_t wbytes = (size_t)out * gf_row_bytes(fmt, in);
  float *wf = malloc(sizeof(float) * out * in + 4), *x = malloc(sizeof(float) * n * in + 4);
  uint8_t *w = malloc(wbytes + 1);
  float *y0 = malloc(sizeof(float) * n * out + 4), *yref = malloc(sizeof(float) * n * out + 4),
        *ygot = malloc(sizeof(float) * n * out + 4), *wd = malloc(sizeof(float) * out * in + 4);
  fill(wf, out * in, 0);
  fill(x, n * in, 0);
  for (int64_t i = 0; i < n * out; i++) y0[i] = uniform();
  gf_set_level_cap(GF_LEVEL_SCALAR);
  gf_quantize(fmt, wf, out, in, w);
  gf_dequantize(fmt, w, out, in, wd);
  memcpy(yref, y0, sizeof(float) * n * out);
  gf_matmul(fmt, GF_LAYOUT_ROWS, w, out, in, x, n, yref, accumulate);
  gf_set_level_cap(level);
  int kernel = gf_kernel_index(GF_FAMILY_MATMUL, fmt);
  gf_level ran = gf_kernel_level(kernel);
  uint64_t before = gf_counter(kernel, ran);
  double worst = 0;
  for (int threads = 1; threads <= 2; threads++) {
    gf_set_threads(threads);
    float *y = threads == 1 ? ygot : y0;
    if (threads == 1) memcpy(ygot, y0, sizeof(float) * n * out);
    else {
      /* second run into a fresh copy; compare bitwise with the first */
      float *y2 = malloc(sizeof(float) * n * out + 4);
      memcpy(y2, y0, sizeof(float) * n * out);
      gf_matmul(fmt, GF_LAYOUT_ROWS, w, out, in, x, n, y2, accumulate);
      char what[160];
      snprintf(what, sizeof what, "matmul %s %lldx%lld n=%lld at %s: 2 threads equal 1 thread",
               gf_format_name(fmt), (long long)out, (long long)in, (long long)n, gf_level_name(level));
      check(memcmp(y2, ygot, sizeof(float) * n * out) == 0, what);
      free(y2);
      break;
    }
    gf_matmul(fmt, GF_LAYOUT_ROWS, w, out, in, x, n, y, accumulate);
  }
  gf_set_threads(1);
  int ok = 1;
  for (int64_t r = 0; r < n && ok; r++)
    for (int64_t o = 0; o < out; o++) {
      double mag = fabs(accumulate ? y0[r * out + o] : 0.0);
      for (int64_t k = 0; k < in; k++) mag += fabs((double)wd[o * in + k] * x[r * in + k]);
      double err = fabs((double)ygot[r * out + o] - yref[r * out + o]);
      double tol = 4.0 * (double)(in + 2) * 1.2e-7 * mag + 1e-30;
      if (err > tol) {
        printf("  out %lld row %lld: %.9g vs scalar %.9g (tol %.3g)\n", (long long)o, (long long)r,
               ygot[r * out + o], yref[r * out + o], tol);
        ok = 0;
        break;
      }
      if (mag > 0 && err / mag > worst) worst = err / mag;
    }
  char what[200];
  snprintf(what, sizeof what, "matmul %s %lldx%lld n=%lld%s at %s within summation error of scalar",
           gf_format_name(fmt), (long long)out, (long long)in, (long long)n, accumulate ? " accumulate" : "",
           gf_level_name(level));
  check(ok, what);
  snprintf(what, sizeof what, "matmul %s counted at %s", gf_format_name(fmt), gf_level_name(ran));
  check(gf_counter(kernel, ran) == before + 2, what);
  free(wf), free(x), free(w), free(y0), free(yref), free(ygot), free(wd);
}

/* Empty shapes: nothing is read or written past the (exact-size) buffers; in_features = 0 gives
 * zeros, or leaves y alone with accumulate. */
static void test_matmul_empty(gf_level level) {
  gf_set_level_cap(level);
  for (size_t f = 0; f < 4; f++) {
    float *x = malloc(sizeof(float) * 64), *y = malloc(sizeof(float) * 3);
    uint8_t *w = malloc(4);
    for (int i = 0; i < 3; i++) y[i] = 7.0f;
    gf_matmul(formats[f], GF_LAYOUT_ROWS, w, 3, 32, x, 0, y, false);  /* no activation rows */
    gf_matmul(formats[f], GF_LAYOUT_ROWS, w, 0, 32, x, 1, y, false);  /* no output rows */
    int untouched = y[0] == 7.0f && y[1] == 7.0f && y[2] == 7.0f;
    gf_matmul(formats[f], GF_LAYOUT_ROWS, w, 3, 0, x, 1, y, true);    /* no inputs, accumulate */
    untouched &= y[0] == 7.0f && y[2] == 7.0f;
    gf_matmul(formats[f], GF_LAYOUT_ROWS, w, 3, 0, x, 1, y, false);
    char what[120];
    snprintf(what, sizeof what, "matmul %s empty shapes at %s", gf_format_name(formats[f]), gf_level_name(level));
    check(untouched && y[0] == 0.0f && y[1] == 0.0f && y[2] == 0.0f, what);
    free(x), free(y), free(w);
  }
}

static void test_matmul(gf_level level) {
  test_matmul_empty(level);
  /* at avx512, 16-row groups read in registers (n <= 32, whole and partial groups, tiles of 8
   * and rests) and regrouped for prefill (n = 33, 64) */
  const int64_t shapes[][3] = {{1, 32, 1},   {5, 96, 2},   {7, 64, 3},   {13, 160, 5},
                               {33, 512, 17}, {64, 544, 9}, {9, 2048, 1}, {6, 96, 64},
                               {48, 64, 1},  {40, 160, 31}, {17, 96, 33}, {35, 64, 64}};
  for (size_t f = 0; f < 4; f++)
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
      matmul_case(formats[f], level, shapes[s][0], shapes[s][1], shapes[s][2], (int)(s % 2));
}

/* Interleaved weights: the layout round-trips bit-exactly, the scalar kernel over it equals the
 * row-order scalar kernel bit for bit, the level's kernel is within summation error of it, and
 * row gathers equal row-order ones. Buffers are exact-size so the sanitizers see any overrun. */
static void interleaved_case(gf_format fmt, gf_level level, int64_t out, int64_t in, int64_t n) {
  size_t wbytes = (size_t)out * gf_row_bytes(fmt, in);
  float *wf = malloc(sizeof(float) * out * in), *x = malloc(sizeof(float) * n * in);
  float *yref = malloc(sizeof(float) * n * out), *ygot = malloc(sizeof(float) * n * out);
  uint8_t *w = malloc(wbytes), *wi = malloc(wbytes);
  fill(wf, out * in, 0);
  fill(x, n * in, 1);
  gf_set_level_cap(GF_LEVEL_SCALAR);
  gf_quantize(fmt, wf, out, in, w);
  memcpy(wi, w, wbytes);
  gf_interleave(fmt, wi, out, in, true);
  int moved = out < GF_GROUP_ROWS || memcmp(wi, w, wbytes) != 0;
  gf_matmul(fmt, GF_LAYOUT_ROWS, w, out, in, x, n, yref, false);
  gf_matmul(fmt, GF_LAYOUT_INTERLEAVED, wi, out, in, x, n, ygot, false);
  int scalar_equal = memcmp(yref, ygot, sizeof(float) * n * out) == 0;
  gf_set_level_cap(level);
  int kernel = gf_kernel_index(GF_FAMILY_MATMUL, fmt);
  gf_level ran = level == GF_LEVEL_AVX512 ? GF_LEVEL_AVX512 : GF_LEVEL_SCALAR; /* no avx2 kernel */
  uint64_t before = gf_counter(kernel, ran);
  gf_matmul(fmt, GF_LAYOUT_INTERLEAVED, wi, out, in, x, n, ygot, false);
  int ok = gf_counter(kernel, ran) == before + 1;
  for (int64_t i = 0; i < n * out && ok; i++) {
    double mag = 0;
    for (int64_t k = 0; k < in; k++) mag += fabs((double)wf[(i % out) * in + k] * x[(i / out) * in + k]);
    if (fabs((double)ygot[i] - yref[i]) > 4.0 * (double)(in + 2) * 1.2e-7 * mag + 1e-30) ok = 0;
  }
  int32_t idx[3] = {0, (int32_t)(out - 1), (int32_t)(out / 2)};
  float *g0 = malloc(sizeof(float) * 3 * in), *g1 = malloc(sizeof(float) * 3 * in);
  gf_dequantize_rows(fmt, GF_LAYOUT_ROWS, w, out, in, idx, 3, g0);
  gf_dequantize_rows(fmt, GF_LAYOUT_INTERLEAVED, wi, out, in, idx, 3, g1);
  int gathered = memcmp(g0, g1, sizeof(float) * 3 * in) == 0;
  gf_interleave(fmt, wi, out, in, false);
  int round_trip = memcmp(wi, w, wbytes) == 0;
  char what[200];
  snprintf(what, sizeof what, "interleaved %s %lldx%lld n=%lld at %s: layout moved and round-trips, scalar equal, "
           "level within summation error, gathers equal", gf_format_name(fmt), (long long)out, (long long)in,
           (long long)n, gf_level_name(level));
  check(moved && round_trip && scalar_equal && ok && gathered, what);
  free(wf), free(x), free(yref), free(ygot), free(w), free(wi), free(g0), free(g1);
}

static void test_matmul_interleaved(gf_level level) {
  const int64_t shapes[][3] = {{16, 32, 1}, {15, 64, 2}, {17, 96, 1}, {37, 160, 5}, {48, 512, 13}, {64, 2048, 1}, {33, 64, 7}};
  for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
    interleaved_case(GF_FMT_Q8_0, level, shapes[s][0], shapes[s][1], shapes[s][2]);
    interleaved_case(GF_FMT_Q4_0, level, shapes[s][0], shapes[s][1], shapes[s][2]);
  }
}

static void gemm_case(gf_level level, int64_t m, int64_t n, int64_t k, int ta, int tb, int64_t batch, int broadcast_b,
                      int accumulate) {
  int64_t sa = m * k, sb = broadcast_b ? 0 : k * n, sc = m * n;
  size_t na = (size_t)(batch * sa), nb = (size_t)(broadcast_b ? k * n : batch * sb), nc = (size_t)(batch * sc);
  float *a = malloc(sizeof(float) * na + 4), *b = malloc(sizeof(float) * nb + 4);
  float *c0 = malloc(sizeof(float) * nc + 4), *c = malloc(sizeof(float) * nc + 4);
  fill(a, (int64_t)na, 0);
  fill(b, (int64_t)nb, 0);
  for (size_t i = 0; i < nc; i++) c0[i] = uniform();
  memcpy(c, c0, sizeof(float) * nc);
  gf_set_level_cap(level);
  gf_gemm_f32(a, b, c, m, n, k, ta, tb, batch, sa, sb, sc, accumulate);
  int ok = 1;
  for (int64_t bi = 0; bi < batch && ok; bi++)
    for (int64_t i = 0; i < m && ok; i++)
      for (int64_t j = 0; j < n; j++) {
        double ref = accumulate ? c0[bi * sc + i * n + j] : 0, mag = fabs(ref);
        for (int64_t kk = 0; kk < k; kk++) {
          double av = a[bi * sa + (ta ? kk * m + i : i * k + kk)];
          double bv = b[bi * sb + (tb ? j * k + kk : kk * n + j)];
          ref += av * bv;
          mag += fabs(av * bv);
        }
        double err = fabs(c[bi * sc + i * n + j] - ref);
        if (err > 2.0 * (double)(k + 2) * 6e-8 * mag + 1e-30) {
          printf("  [%lld] (%lld,%lld): %.9g vs %.9g\n", (long long)bi, (long long)i, (long long)j,
                 c[bi * sc + i * n + j], ref);
          ok = 0;
          break;
        }
      }
  char what[200];
  snprintf(what, sizeof what, "gemmF32 %lldx%lldx%lld ta=%d tb=%d batch=%lld%s%s at %s", (long long)m,
           (long long)n, (long long)k, ta, tb, (long long)batch, broadcast_b ? " (B broadcast)" : "",
           accumulate ? " accumulate" : "", gf_level_name(level));
  check(ok, what);
  free(a), free(b), free(c0), free(c);
}

static void test_gemm(gf_level level) {
  const int64_t shapes[][3] = {{1, 1, 1}, {1, 200, 33}, {3, 5, 7}, {17, 40, 300}, {130, 520, 70}, {64, 64, 64}, {9, 1, 600}};
  for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
    for (int t = 0; t < 4; t++)
      gemm_case(level, shapes[s][0], shapes[s][1], shapes[s][2], t & 1, (t >> 1) & 1, 1 + (int64_t)(s % 3),
                s % 3 == 2, (int)((t + s) % 2));
}

static void test_conversions(void) {
  /* every half converts back to itself (NaNs stay NaN) */
  int ok = 1;
  for (uint32_t h = 0; h < 65536 && ok; h++) {
    float f = gf_fp16_to_fp32((uint16_t)h);
    uint16_t back = gf_fp32_to_fp16(f);
    if (isnan(f) ? !((back & 0x7c00) == 0x7c00 && (back & 0x3ff)) : back != h) ok = 0;
  }
  check(ok, "fp16 round trip of all 65536 halves");
  check(gf_fp32_to_fp16(65519.0f) == 0x7bff && gf_fp32_to_fp16(65520.0f) == 0x7c00, "fp16 overflow threshold");
  check(gf_fp32_to_fp16(5.9604645e-8f) == 1 && gf_fp32_to_fp16(2.9802322e-8f) == 0, "fp16 smallest subnormal and tie to even");
  check(gf_fp32_to_bf16(1.00390625f) == 0x3f80 && gf_fp32_to_bf16(1.01171875f) == 0x3f82, "bf16 ties to even");
}

/* ---- Mamba-2 kernels ---- */

static float *alloc_uniform(int64_t n, float lo, float hi) {
  float *p = (float *)malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
  for (int64_t i = 0; i < n; i++) p[i] = lo + (hi - lo) * (uniform() * 0.5f + 0.5f);
  return p;
}

/* The recurrence in double, from the formula, for the float outputs to be compared against. */
static double scan_error(const gf_ssm_scan_args *a) {
  const int64_t T = a->seq_len, H = a->heads, P = a->head_dim, G = a->groups, N = a->state_size;
  double worst = 0;
  double *s = (double *)calloc((size_t)(a->batch * H * P * N), sizeof(double));
  /* An in-place caller passes a copy of the state as initial_state (see scan_case). */
  if (a->initial_state && a->initial_state != a->final_state)
    for (int64_t i = 0; i < a->batch * H * P * N; i++) s[i] = a->initial_state[i];
  for (int64_t b = 0; b < a->batch; b++)
    for (int64_t t = 0; t < T; t++)
      for (int64_t h = 0; h < H; h++) {
        double v = (double)a->dt[(b * T + t) * H + h] + a->dt_bias[h];
        double dt = v > 20 ? v : log1p(exp(v));
        dt = dt < a->dt_min ? a->dt_min : dt > a->dt_max ? a->dt_max : dt;
        const double decay = exp(-dt * exp((double)a->a_log[h]));
        const int64_t g = h / (H / G);
        for (int64_t p = 0; p < P; p++) {
          const int64_t xi = ((b * T + t) * H + h) * P + p;
          double acc = 0;
          for (int64_t n = 0; n < N; n++) {
            double *sv = s + ((b * H + h) * P + p) * N + n;
            const int64_t bn = ((b * T + t) * G + g) * N + n;
            *sv = decay * *sv + dt * a->x[xi] * a->b[bn];
            acc += *sv * a->c[bn];
          }
          const double ref = acc + a->d[h] * a->x[xi];
          worst = fmax(worst, fabs(a->y[xi] - ref) / (1e-5 + 1e-4 * fabs(ref)));
        }
      }
  for (int64_t i = 0; i < a->batch * H * P * N; i++)
    worst = fmax(worst, fabs(a->final_state[i] - s[i]) / (1e-5 + 1e-4 * fabs(s[i])));
  free(s);
  return worst;
}

static void scan_case(gf_level level, int64_t batch, int64_t T, int64_t H, int64_t P, int64_t G, int64_t N,
                      int with_state, int in_place, int threads) {
  gf_set_level_cap(level);
  gf_set_threads(threads);
  const int64_t nx = batch * T * H * P, nbc = batch * T * G * N, ns = batch * H * P * N;
  gf_ssm_scan_args a = {0};
  float *x = alloc_uniform(nx, -1, 1), *dt = alloc_uniform(batch * T * H, -3, 1), *alog = alloc_uniform(H, -1, 1.5f);
  float *b = alloc_uniform(nbc, -1, 1), *c = alloc_uniform(nbc, -1, 1), *d = alloc_uniform(H, -1, 1);
  float *bias = alloc_uniform(H, -1, 1), *init = with_state ? alloc_uniform(ns, -1, 1) : NULL;
  float *y = alloc_uniform(nx, 9, 9), *fs = in_place ? init : alloc_uniform(ns, 9, 9);
  float *init_copy = NULL;
  if (in_place) {
    init_copy = (float *)malloc((size_t)ns * sizeof(float));
    memcpy(init_copy, init, (size_t)ns * sizeof(float));
  }
  a = (gf_ssm_scan_args){x, dt, alog, b, c, d, bias, init, batch, T, H, P, G, N, 0.001, 0.5, y, fs};
  uint64_t before = gf_counter(GF_KERNEL_SSM_SCAN, gf_kernel_level(GF_KERNEL_SSM_SCAN));
  check(gf_ssm_scan(&a) == GF_OK, "ssmScan returns GF_OK");
  check(gf_counter(GF_KERNEL_SSM_SCAN, level) == before + 1, "ssmScan counted at its level");
  gf_ssm_scan_args ref = a;
  if (in_place) ref.initial_state = init_copy;
  char what[160];
  snprintf(what, sizeof what, "ssmScan %s %lldx%lldx%lldx%lldx%lldx%lld state=%d in_place=%d threads=%d within float32 error",
           gf_level_name(level), (long long)batch, (long long)T, (long long)H, (long long)P, (long long)G, (long long)N,
           with_state, in_place, threads);
  check(scan_error(&ref) <= 1.0, what);
  free(x), free(dt), free(alog), free(b), free(c), free(d), free(bias), free(y), free(init_copy);
  if (!in_place) free(fs);
  free(init);
  gf_set_level_cap(GF_LEVEL_AVX512);
  gf_set_threads(1);
}

static void test_ssm_scan(gf_level level) {
  for (int threads = 1; threads <= 2; threads++) {
    scan_case(level, 1, 1, 1, 1, 1, 1, 0, 0, threads);
    scan_case(level, 2, 5, 4, 3, 2, 37, 1, 0, threads); /* masked / scalar tails of the SIMD steps */
    scan_case(level, 1, 3, 6, 2, 3, 16, 0, 0, threads);
    scan_case(level, 1, 9, 4, 4, 1, 128, 1, 0, threads);
    scan_case(level, 2, 1, 8, 4, 2, 48, 1, 1, threads); /* a decode step updating the state in place */
  }
}

/* The scan's gradient: 1 and 2 threads agree (the private dB / dC and the per-pair partials are
 * summed the same), and a finite difference of the scan's loss matches one element of each input
 * class (the oracle for the values is the Node test's float64 central differences). */
static double scan_loss(gf_ssm_scan_args *a, const float *dy, const float *dfs) {
  gf_ssm_scan(a);
  const int64_t nx = a->batch * a->seq_len * a->heads * a->head_dim, ns = a->batch * a->heads * a->head_dim * a->state_size;
  double l = 0;
  for (int64_t i = 0; i < nx; i++) l += (double)a->y[i] * dy[i];
  for (int64_t i = 0; i < ns; i++) l += (double)a->final_state[i] * dfs[i];
  return l;
}

static void test_ssm_scan_grad(void) {
  const int64_t batch = 2, T = 70, H = 4, P = 3, G = 2, N = 5;
  const int64_t nx = batch * T * H * P, nbc = batch * T * G * N, ns = batch * H * P * N, nt = batch * T * H;
  for (int with_state = 0; with_state <= 1; with_state++) {
    float *x = alloc_uniform(nx, -1, 1), *dt = alloc_uniform(nt, -3, 1), *alog = alloc_uniform(H, -1, 1.5f);
    float *b = alloc_uniform(nbc, -1, 1), *c = alloc_uniform(nbc, -1, 1), *d = alloc_uniform(H, -1, 1);
    float *bias = alloc_uniform(H, -1, 1), *init = with_state ? alloc_uniform(ns, -1, 1) : NULL;
    float *dy = alloc_uniform(nx, -1, 1), *dfs = alloc_uniform(ns, -1, 1);
    float *g[2][8];
    const int64_t sizes[8] = {nx, nt, H, nbc, nbc, H, H, ns};
    for (int threads = 1; threads <= 2; threads++) {
      gf_set_threads(threads);
      for (int k = 0; k < 8; k++) g[threads - 1][k] = alloc_uniform(sizes[k], 9, 9);
      gf_ssm_scan_grad_args a = {x, dt, alog, b, c, d, bias, init, dy, dfs, batch, T, H, P, G, N, 0.001, 0.5,
                                 g[threads - 1][0], g[threads - 1][1], g[threads - 1][2], g[threads - 1][3],
                                 g[threads - 1][4], g[threads - 1][5], g[threads - 1][6], g[threads - 1][7]};
      uint64_t before = gf_counter(GF_KERNEL_SSM_SCAN_GRAD, GF_LEVEL_SCALAR);
      check(gf_ssm_scan_grad(&a) == GF_OK, "ssmScanGrad returns GF_OK");
      check(gf_counter(GF_KERNEL_SSM_SCAN_GRAD, GF_LEVEL_SCALAR) == before + 1, "ssmScanGrad counted");
    }
    double worst = 0;
    for (int k = 0; k < 8; k++)
      for (int64_t i = 0; i < sizes[k]; i++)
        worst = fmax(worst, fabs(g[0][k][i] - g[1][k][i]) / (1e-6 + 1e-5 * fabs(g[0][k][i])));
    check(worst <= 1.0, "ssmScanGrad: 1 and 2 threads agree");
    /* d loss / d x[5] by central differences through gf_ssm_scan. */
    float *y = alloc_uniform(nx, 0, 0), *fs = alloc_uniform(ns, 0, 0);
    gf_ssm_scan_args s = {x, dt, alog, b, c, d, bias, init, batch, T, H, P, G, N, 0.001, 0.5, y, fs};
    const float saved = x[5];
    x[5] = saved + 1e-2f;
    const double up = scan_loss(&s, dy, dfs);
    x[5] = saved - 1e-2f;
    const double down = scan_loss(&s, dy, dfs);
    x[5] = saved;
    const double fd = (up - down) / 2e-2;
    check(fabs(g[1][0][5] - fd) <= 1e-2 + 1e-2 * fabs(fd), "ssmScanGrad: dx matches a finite difference");
    for (int t = 0; t < 2; t++)
      for (int k = 0; k < 8; k++) free(g[t][k]);
    free(x), free(dt), free(alog), free(b), free(c), free(d), free(bias), free(init), free(dy), free(dfs), free(y), free(fs);
  }
  gf_set_threads(1);
}

static void test_causal_conv1d(void) {
  const int64_t shapes[][4] = {{1, 1, 5, 4}, {2, 2, 37, 4}, {2, 9, 33, 3}, {1, 3, 8, 1}, {1, 40, 70, 4}};
  for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++)
    for (int variant = 0; variant < 4; variant++) {
      const int64_t B = shapes[si][0], T = shapes[si][1], C = shapes[si][2], K = shapes[si][3], S = K - 1;
      const int with_state = variant & 1, with_bias = variant & 2, silu = variant != 1;
      gf_set_threads(1 + variant % 2);
      float *x = alloc_uniform(B * T * C, -1, 1), *w = alloc_uniform(C * K, -1, 1);
      float *bias = with_bias ? alloc_uniform(C, -1, 1) : NULL, *st = with_state ? alloc_uniform(B * S * C, -1, 1) : NULL;
      float *y = alloc_uniform(B * T * C, 9, 9), *ns = alloc_uniform(B * S * C, 9, 9);
      gf_causal_conv1d_args a = {x, w, bias, st, B, T, C, K, silu, y, ns};
      check(gf_causal_conv1d(&a) == GF_OK, "causalConv1d returns GF_OK");
      double worst = 0;
      int state_ok = 1;
      for (int64_t b = 0; b < B; b++)
        for (int64_t c = 0; c < C; c++) {
#define U(r) ((r) < S ? (st ? st[(b * S + (r)) * C + c] : 0.0f) : x[(b * T + (r) - S) * C + c])
          for (int64_t t = 0; t < T; t++) {
            double v = bias ? bias[c] : 0;
            for (int64_t k = 0; k < K; k++) v += (double)w[c * K + k] * U(t + k);
            if (silu) v = v / (1 + exp(-v));
            worst = fmax(worst, fabs(y[(b * T + t) * C + c] - v) / (1e-6 + 1e-5 * fabs(v)));
          }
          for (int64_t i = 0; i < S; i++) state_ok &= ns[(b * S + i) * C + c] == U(T + i);
#undef U
        }
      char what[120];
      snprintf(what, sizeof what, "causalConv1d %lldx%lldx%lldx%lld variant %d equals the double conv", (long long)B,
               (long long)T, (long long)C, (long long)K, variant);
      check(worst <= 1.0, what);
      check(state_ok, "causalConv1d new state is the last K - 1 inputs");
      free(x), free(w), free(bias), free(st), free(y), free(ns);
    }
  gf_set_threads(1);
}

static void test_gated_rms_norm(void) {
  const int64_t shapes[][3] = {{1, 8, 8}, {3, 64, 16}, {5, 300, 100}, {2, 3072, 3072}};
  for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
    const int64_t rows = shapes[si][0], dim = shapes[si][1], gs = shapes[si][2];
    gf_set_threads(1 + (int)(si % 2));
    float *y = alloc_uniform(rows * dim, -3, 3), *z = alloc_uniform(rows * dim, -4, 4), *w = alloc_uniform(dim, -1, 1);
    float *o = alloc_uniform(rows * dim, 9, 9);
    gf_gated_rms_norm_args a = {y, z, w, rows, dim, gs, 1e-5, o};
    check(gf_gated_rms_norm(&a) == GF_OK, "gatedRmsNorm returns GF_OK");
    double worst = 0;
    for (int64_t i0 = 0; i0 < rows * dim; i0 += gs) {
      double sum = 0;
      for (int64_t i = i0; i < i0 + gs; i++) {
        const double g = y[i] * (z[i] / (1 + exp(-(double)z[i])));
        sum += g * g;
      }
      const double inv = 1 / sqrt(sum / (double)gs + 1e-5);
      for (int64_t i = i0; i < i0 + gs; i++) {
        const double ref = y[i] * (z[i] / (1 + exp(-(double)z[i]))) * inv * w[i % dim];
        worst = fmax(worst, fabs(o[i] - ref) / (1e-6 + 1e-5 * fabs(ref)));
      }
    }
    check(worst <= 1.0, "gatedRmsNorm equals the double norm");
    free(y), free(z), free(w), free(o);
  }
  gf_set_threads(1);
}

/* ---- SwiGLU ---- */

/* Distance in representable floats (ordered bit patterns; +0 and -0 are one apart). */
static int64_t ulp_distance(float a, float b) {
  int32_t ia, ib;
  memcpy(&ia, &a, 4);
  memcpy(&ib, &b, 4);
  const int64_t oa = ia < 0 ? (int64_t)INT32_MIN - ia : ia, ob = ib < 0 ? (int64_t)INT32_MIN - ib : ib;
  return oa > ob ? oa - ob : ob - oa;
}

/* The JavaScript body's formula (ops-moe's silu) in double, rounded once to float. */
static float swiglu_reference(float g, float u) {
  const double s = g >= 0 ? g / (1 + exp(-(double)g)) : g * exp((double)g) / (1 + exp((double)g));
  return (float)(s * u);
}

/* exp(-g) overflows float below this gate (expf(88.7228394) is the largest finite result). */
#define SWIGLU_OVERFLOW_GATE -88.7228394f

/*
 * The documented result: the double formula within max_ulp floats, except for finite gates where
 * exp(-g) overflows: silu(g) is then -0 (the double formula keeps |silu| < 3e-37), so act is -0 * up
 * (-inf stays NaN, as in the double formula: -inf / inf). Gates
 * within 0.001 of the threshold may land on either side (exps one ulp apart near FLT_MAX).
 */
static int swiglu_as_documented(float got, float g, float u, int64_t max_ulp) {
  const float zero_silu = -0.0f * u;
  const int past = isfinite(g) && g < SWIGLU_OVERFLOW_GATE, near = fabsf(g - SWIGLU_OVERFLOW_GATE) < 1e-3f;
  if (past || near) {
    if (memcmp(&got, &zero_silu, 4) == 0 || (isnan(zero_silu) && isnan(got))) return 1;
    if (past && !near) return 0;
  }
  const float want = swiglu_reference(g, u);
  if (isnan(want) || isnan(got)) return isnan(want) && isnan(got);
  if (got == want) return 1;
  if (isinf(want) || isinf(got)) return 0;
  return ulp_distance(got, want) <= max_ulp;
}

/* Gates that stress exp's range: huge, around the overflow and clamp thresholds, infinities, NaN,
 * zeros, subnormals. */
static const float swiglu_gate_specials[] = {1e4f, -1e4f, 88.72f, -88.72f, -88.7228f, -88.723f, -88.73f, -89.0f,
                                             -95.0f, 86.5f, -86.5f, 87.4f, -87.4f, 100.0f, -100.0f, INFINITY,
                                             -INFINITY, NAN, 0.0f, -0.0f, 1e-40f, -1e-40f, 3.4e38f, -3.4e38f,
                                             1e-7f, -1e-7f, 17.0f, -17.0f};

/* Fills a [rows, 2 inter] with gates (random magnitudes up to 30, and every 29th a special) and
 * up values (random, with some zeros, ones, infinities and NaN). */
static void fill_swiglu(float *a, int64_t rows, int64_t inter) {
  const size_t specials = sizeof swiglu_gate_specials / sizeof swiglu_gate_specials[0];
  for (int64_t r = 0; r < rows; r++)
    for (int64_t i = 0; i < inter; i++) {
      float *g = a + r * 2 * inter + i, *u = g + inter;
      const uint64_t pick = next_u64();
      *g = pick % 29 == 0 ? swiglu_gate_specials[(pick >> 8) % specials] : uniform() * 30.0f * (uniform() * 0.5f + 0.5f);
      *u = pick % 31 == 0   ? 0.0f
           : pick % 37 == 0 ? ((pick >> 20) & 1 ? INFINITY : -INFINITY)
           : pick % 41 == 0 ? 1.0f
           : pick % 43 == 0 ? NAN
                            : uniform() * 4.0f;
    }
}

/* got against the scalar level's want: both NaN, equal, within max_ulp floats, or (gates at exp's
 * overflow threshold) one of them -0 * up. */
static int swiglu_close(float got, float want, float g, int64_t max_ulp) {
  if (isnan(want) || isnan(got)) return isnan(want) && isnan(got);
  if (got == want) return 1;
  if (fabsf(g - SWIGLU_OVERFLOW_GATE) < 1e-3f && (got == 0 || want == 0)) return 1;
  if (isinf(want) || isinf(got)) return 0;
  return ulp_distance(got, want) <= max_ulp;
}

static void swiglu_case(gf_level level, int64_t rows, int64_t inter, int threads) {
  const int64_t n = rows * inter;
  float *a = malloc(sizeof(float) * (size_t)(2 * n > 0 ? 2 * n : 1));
  float *ref = malloc(sizeof(float) * (size_t)(n > 0 ? n : 1)), *got = malloc(sizeof(float) * (size_t)(n > 0 ? n : 1));
  fill_swiglu(a, rows, inter);
  for (int64_t i = 0; i < n; i++) got[i] = 12345.0f;
  gf_set_threads(threads);
  gf_set_level_cap(GF_LEVEL_SCALAR);
  check(gf_swiglu(a, rows, inter, ref) == GF_OK, "swiglu returns GF_OK");
  gf_set_level_cap(level);
  const uint64_t before = gf_counter(GF_KERNEL_SWIGLU, level);
  gf_swiglu(a, rows, inter, got);
  check(gf_counter(GF_KERNEL_SWIGLU, level) == before + 1, "swiglu counted at its level");
  int64_t bad_scalar = -1, bad_ref = -1;
  for (int64_t o = 0; o < n; o++) {
    const float g = a[(o / inter) * 2 * inter + o % inter], u = a[(o / inter) * 2 * inter + inter + o % inter];
    if (bad_scalar < 0 && !swiglu_close(got[o], ref[o], g, 4)) bad_scalar = o;
    if (bad_ref < 0 && !swiglu_as_documented(got[o], g, u, 3)) bad_ref = o;
  }
  char what[200];
  snprintf(what, sizeof what, "swiglu %lldx%lld at %s, %d threads, within 4 ulp of scalar (first bad output %lld)",
           (long long)rows, (long long)inter, gf_level_name(level), threads, (long long)bad_scalar);
  check(bad_scalar < 0, what);
  snprintf(what, sizeof what, "swiglu %lldx%lld at %s, %d threads, within 3 ulp of the double formula (first bad output %lld)",
           (long long)rows, (long long)inter, gf_level_name(level), threads, (long long)bad_ref);
  check(bad_ref < 0, what);
  free(a), free(ref), free(got);
  gf_set_level_cap(GF_LEVEL_AVX512);
  gf_set_threads(1);
}

/* Every gate from -90 to 90 in steps of 2^-12 (up = 1): the exp over its whole range. Each level
 * within 2 ulp of the double formula, so two levels within 4 ulp of each other. */
static void swiglu_sweep(gf_level level) {
  const int64_t n = 180 * 4096 + 1;
  float *a = malloc(sizeof(float) * (size_t)(2 * n)), *got = malloc(sizeof(float) * (size_t)n);
  for (int64_t i = 0; i < n; i++) a[i] = -90.0f + (float)i / 4096.0f, a[n + i] = 1.0f;
  gf_set_level_cap(level);
  gf_swiglu(a, 1, n, got);
  int64_t worst = 0, bad = -1;
  for (int64_t i = 0; i < n; i++) {
    if (a[i] >= SWIGLU_OVERFLOW_GATE) {
      const int64_t d = ulp_distance(got[i], swiglu_reference(a[i], 1.0f));
      worst = d > worst ? d : worst;
    }
    if (bad < 0 && !swiglu_as_documented(got[i], a[i], 1.0f, 2)) bad = i;
  }
  char what[160];
  snprintf(what, sizeof what, "swiglu gate sweep -90..90 at %s within 2 ulp of the double formula (worst %lld ulp, first bad gate %.9g)",
           gf_level_name(level), (long long)worst, bad < 0 ? 0.0 : (double)a[bad]);
  check(bad < 0, what);
  free(a), free(got);
  gf_set_level_cap(GF_LEVEL_AVX512);
}

static void test_swiglu(gf_level level) {
  /* Ragged rows around the 8- and 16-lane steps and their masked tails; H-Micro's decode call
   * (1 x 8192) and blocks that two threads split, at row ends (4 x 8192) or inside rows (2 x 9001). */
  const int64_t shapes[][2] = {{1, 1}, {1, 7}, {2, 15}, {3, 16}, {1, 17}, {2, 33}, {5, 100}, {0, 8}, {1, 8192}, {4, 8192}, {3, 5001}, {2, 9001}};
  for (int threads = 1; threads <= 2; threads++)
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) swiglu_case(level, shapes[s][0], shapes[s][1], threads);
  swiglu_sweep(level);
}

/* The AVX2 and AVX-512 exps are the same computation: their results agree bit for bit. */
static void test_swiglu_levels_agree(void) {
  const int64_t rows = 3, inter = 1000, n = rows * inter;
  float *a = malloc(sizeof(float) * (size_t)(2 * n)), *y2 = malloc(sizeof(float) * (size_t)n), *y5 = malloc(sizeof(float) * (size_t)n);
  fill_swiglu(a, rows, inter);
  gf_set_level_cap(GF_LEVEL_AVX2);
  gf_swiglu(a, rows, inter, y2);
  gf_set_level_cap(GF_LEVEL_AVX512);
  gf_swiglu(a, rows, inter, y5);
  check(memcmp(y2, y5, sizeof(float) * (size_t)n) == 0, "swiglu avx2 equals avx512 bit for bit");
  free(a), free(y2), free(y5);
}

/* Routed experts in one call equal matmul + swiglu per expert (one token: slot order; more: by
 * expert) bit for bit; exact-size buffers for the sanitizers. */
static void moe_case(gf_level level, gf_format f1, gf_format f2, int64_t n, int64_t k) {
  const int64_t h = 64, inter = 32, experts = 5;
  size_t b1 = (size_t)(experts * 2 * inter) * gf_row_bytes(f1, h), b2 = (size_t)(experts * h) * gf_row_bytes(f2, inter);
  float *wf1 = malloc(sizeof(float) * experts * 2 * inter * h), *wf2 = malloc(sizeof(float) * experts * h * inter);
  uint8_t *w1 = malloc(b1), *w2 = malloc(b2);
  float *x = malloc(sizeof(float) * n * h), *wts = malloc(sizeof(float) * n * k);
  float *y = malloc(sizeof(float) * n * h), *want = malloc(sizeof(float) * n * h);
  int32_t *idx = malloc(sizeof(int32_t) * n * k);
  for (int64_t i = 0; i < experts * 2 * inter * h; i++) wf1[i] = uniform() * 0.2f;
  for (int64_t i = 0; i < experts * h * inter; i++) wf2[i] = uniform() * 0.2f;
  for (int64_t i = 0; i < n * h; i++) x[i] = uniform() * 2.0f;
  for (int64_t s = 0; s < n * k; s++) {
    idx[s] = (int32_t)(next_u64() % experts);
    wts[s] = uniform();
  }
  gf_set_level_cap(level);
  gf_quantize(f1, wf1, experts * 2 * inter, h, w1);
  gf_quantize(f2, wf2, experts * h, inter, w2);
  memset(want, 0, sizeof(float) * n * h);
  const int64_t slots = n * k;
  float *xs = malloc(sizeof(float) * slots * h), *a = malloc(sizeof(float) * slots * 2 * inter);
  float *act = malloc(sizeof(float) * slots * inter), *ys = malloc(sizeof(float) * slots * h);
  int64_t *group = malloc(sizeof(int64_t) * slots);
  /* One token: each slot alone, in slot order. More: each expert's slots together (one matmul of
   * all its rows, as the kernel does), experts in order, slots in order within an expert. */
  for (int64_t e = 0; e < (n == 1 ? slots : experts); e++) {
    int64_t c = 0;
    for (int64_t s = 0; s < slots; s++)
      if (n == 1 ? s == e : idx[s] == e) group[c++] = s;
    if (c == 0) continue;
    int64_t ex = idx[group[0]];
    for (int64_t t = 0; t < c; t++) memcpy(xs + t * h, x + (group[t] / k) * h, sizeof(float) * h);
    gf_matmul(f1, GF_LAYOUT_ROWS, w1 + ex * 2 * inter * gf_row_bytes(f1, h), 2 * inter, h, xs, c, a, false);
    gf_swiglu(a, c, inter, act);
    gf_matmul(f2, GF_LAYOUT_ROWS, w2 + ex * h * gf_row_bytes(f2, inter), h, inter, act, c, ys, false);
    for (int64_t t = 0; t < c; t++)
      for (int64_t col = 0; col < h; col++) want[(group[t] / k) * h + col] += wts[group[t]] * ys[t * h + col];
  }
  free(xs), free(group);
  gf_moe_args args = {f1, f2, w1, w2, x, idx, wts, n, h, inter, experts, k, y};
  gf_moe_experts(&args);
  char what[160];
  snprintf(what, sizeof what, "moeExperts %s/%s n=%lld k=%lld at %s equals matmul + swiglu per expert", gf_format_name(f1),
           gf_format_name(f2), (long long)n, (long long)k, gf_level_name(level));
  check(memcmp(y, want, sizeof(float) * n * h) == 0, what);
  free(wf1), free(wf2), free(w1), free(w2), free(x), free(wts), free(y), free(want), free(idx), free(a), free(act), free(ys);
}

static void test_moe(gf_level level) {
  moe_case(level, GF_FMT_Q4_0, GF_FMT_Q4_0, 1, 3);
  moe_case(level, GF_FMT_Q8_0, GF_FMT_Q4_0, 1, 5);
  moe_case(level, GF_FMT_Q4_0, GF_FMT_Q8_0, 4, 2);
}

/* Index of element 0 of position s of KV head kvh of sequence b, in either layout. */
static int64_t kv_index(const gf_attention_args *a, int64_t b, int64_t s, int64_t kvh) {
  return a->heads_major ? ((b * a->kv_heads + kvh) * a->capacity + s) * a->head_dim
                        : ((b * a->capacity + s) * a->kv_heads + kvh) * a->head_dim;
}

/* Attention in double from the formula, whole score rows; worst scaled error of a->out. */
static double attention_error(const gf_attention_args *a) {
  const int64_t T = a->q_len, Hq = a->q_heads, Hkv = a->kv_heads, hd = a->head_dim, S = a->key_len;
  const int64_t rep = Hq / Hkv;
  double worst = 0;
  double *p = (double *)malloc((size_t)(S > 0 ? S : 1) * sizeof(double));
  for (int64_t b = 0; b < a->batch; b++)
    for (int64_t t = 0; t < T; t++)
      for (int64_t j = 0; j < Hq; j++) {
        const float *q = a->q + ((b * T + t) * Hq + j) * hd;
        const int64_t kvh = j / rep;
        double max = -INFINITY, total = 0;
        for (int64_t s = 0; s < S; s++) {
          const int allowed = (!a->key_mask || a->key_mask[b * S + s] != 0.0f) && (!a->causal || s <= S - T + t);
          p[s] = -INFINITY;
          if (!allowed) continue;
          const float *k = a->k + kv_index(a, b, s, kvh);
          double dot = 0;
          for (int64_t d = 0; d < hd; d++) dot += (double)q[d] * k[d];
          p[s] = dot * a->scale;
          max = fmax(max, p[s]);
        }
        for (int64_t s = 0; s < S; s++) total += p[s] == -INFINITY ? 0 : exp(p[s] - max);
        for (int64_t d = 0; d < hd; d++) {
          double ref = 0;
          for (int64_t s = 0; s < S; s++)
            if (p[s] != -INFINITY) ref += exp(p[s] - max) / total * a->v[kv_index(a, b, s, kvh) + d];
          const double got = a->out[((b * T + t) * Hq + j) * hd + d];
          worst = fmax(worst, fabs(got - ref) / (1e-6 + 1e-5 * fabs(ref)));
        }
      }
  free(p);
  return worst;
}

static void attention_case(gf_level level, int64_t batch, int64_t T, int64_t Hq, int64_t Hkv, int64_t hd, int64_t S,
                           int64_t capacity, int causal, int padded, int threads, int heads_major) {
  gf_set_level_cap(level);
  gf_set_threads(threads);
  const int64_t nq = batch * T * Hq * hd, nkv = batch * capacity * Hkv * hd;
  float *q = alloc_uniform(nq, -2, 2), *k = alloc_uniform(nkv, -2, 2), *v = alloc_uniform(nkv, -1, 1);
  float *out = alloc_uniform(nq, 9, 9), *mask = padded ? alloc_uniform(batch * S, 1, 1) : NULL;
  if (padded)
    for (int64_t s = 0; s < S && s < 19; s++) mask[(batch - 1) * S + s] = 0.0f; /* left padding of the last sequence */
  gf_attention_args a = {q, k, v, mask, batch, T, Hq, Hkv, hd, S, capacity, causal != 0, heads_major != 0, 0.125f, out};
  /* The SIMD body may only read the first key_len positions: anything past them is poison. */
  for (int64_t b = 0; b < batch; b++)
    for (int64_t h = 0; h < Hkv; h++)
      for (int64_t s = S; s < capacity; s++)
        for (int64_t d = 0; d < hd; d++) k[kv_index(&a, b, s, h) + d] = v[kv_index(&a, b, s, h) + d] = NAN;
  const gf_level runs = gf_kernel_level(GF_KERNEL_ATTENTION);
  uint64_t before = gf_counter(GF_KERNEL_ATTENTION, runs);
  check(gf_attention(&a) == GF_OK, "attention returns GF_OK");
  check(gf_counter(GF_KERNEL_ATTENTION, runs) == before + 1, "attention counted at its level");
  char what[200];
  snprintf(what, sizeof what, "attention %s b%lld T%lld Hq%lld Hkv%lld hd%lld S%lld cap%lld causal=%d padded=%d threads=%d heads_major=%d",
           gf_level_name(runs), (long long)batch, (long long)T, (long long)Hq, (long long)Hkv, (long long)hd, (long long)S,
           (long long)capacity, causal, padded, threads, heads_major);
  check(attention_error(&a) <= 1.0, what);
  free(q), free(k), free(v), free(out), free(mask);
  gf_set_level_cap(GF_LEVEL_AVX512);
  gf_set_threads(1);
}

static void test_attention(gf_level level) {
  for (int threads = 1; threads <= 2; threads++)
    for (int hm = 0; hm <= 1; hm++) {
      attention_case(level, 1, 1, 4, 1, 8, 1, 1, 1, 0, threads, hm);
      attention_case(level, 1, 1, 32, 8, 64, 300, 512, 1, 0, threads, hm); /* an H-Micro decode step */
      attention_case(level, 2, 5, 6, 2, 24, 37, 40, 1, 1, threads, hm);    /* masked tails of the 16-lane steps */
      attention_case(level, 1, 19, 3, 3, 100, 19, 19, 1, 0, threads, hm);
      attention_case(level, 2, 17, 8, 2, 64, 50, 64, 1, 1, threads, hm);   /* queries that see no key */
      attention_case(level, 2, 3, 4, 4, 16, 33, 33, 0, 1, threads, hm);
      attention_case(level, 1, 2, 2, 1, 8, 0, 4, 0, 0, threads, hm);       /* no keys at all */
    }
}

int main(void) {
  gf_level best = gf_cpu_level();
  printf("cpu level: %s\n", gf_level_name(best));
  test_conversions();
  for (int l = GF_LEVEL_SCALAR; l <= (int)best; l++) {
    test_quantize((gf_level)l);
    test_matmul((gf_level)l);
    test_matmul_interleaved((gf_level)l);
    test_gemm((gf_level)l);
    test_ssm_scan((gf_level)l);
    test_swiglu((gf_level)l);
    test_moe((gf_level)l);
    test_attention((gf_level)l);
  }
  if (best >= GF_LEVEL_AVX512) test_swiglu_levels_agree();
  test_ssm_scan_grad();
  test_causal_conv1d();
  test_gated_rms_norm();
  for (int l = (int)best + 1; l < GF_LEVEL_COUNT; l++)
    printf("skipped level %s: not on this CPU or not in this build\n", gf_level_name((gf_level)l));
  printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}
