/*
 * SwiGLU on packed halves (the body of @graniteflow/ops-moe's MoeSwiGLU on the native backend):
 * act[r, i] = silu(a[r, i]) * a[r, I + i] with the gate in the first half of each row and the up
 * projection in the second.
 *
 * silu(g) = g / (1 + exp(-g)) at every level, in this operation order, so that the levels differ
 * only by their exp (libm's expf here, a polynomial in act_avx2.c / act_avx512.c). The form stays
 * finite for large |g|: exp(-g) overflows to infinity for g below -88.7 and the quotient is -0
 * (the JavaScript body, in float64, gives values under 3e-37 in magnitude there); g = -inf gives
 * -inf / inf = NaN and g = +inf gives +inf, as the JavaScript body does.
 */
#include "gf_internal.h"

/* Fewer outputs than this per thread is not worth waking a worker. Measured on 1-row calls at
 * avx512 with a spinning worker: 8192 outputs take 2.6 us on one thread, 3.1 us on two; the two
 * break even at ~12k and two win from 16k (4.3 vs 5.0 us). */
#define MIN_OUTPUTS_PER_THREAD (1 << 13)

void gf_swiglu_scalar(const float *gate, const float *up, float *out, int64_t n) {
  for (int64_t i = 0; i < n; i++) {
    const float g = gate[i];
    out[i] = g / (1.0f + expf(-g)) * up[i];
  }
}

static gf_swiglu_fn swiglu_impl(gf_level level) {
#if GF_X86
  if (level == GF_LEVEL_AVX512) return gf_swiglu_avx512;
  if (level == GF_LEVEL_AVX2) return gf_swiglu_avx2;
#else
  (void)level;
#endif
  return gf_swiglu_scalar;
}

typedef struct {
  const float *a;
  int64_t inter;
  float *act;
  gf_swiglu_fn fn;
} swiglu_ctx;

/* Outputs [begin, end) of the flattened [rows, inter] act, cut at row ends. */
static void swiglu_task(void *ctx, int64_t begin, int64_t end, int thread) {
  (void)thread;
  const swiglu_ctx *sc = (const swiglu_ctx *)ctx;
  const int64_t I = sc->inter;
  for (int64_t o = begin; o < end;) {
    const int64_t r = o / I, i = o % I, n = GF_MIN(I - i, end - o);
    const float *gate = sc->a + r * 2 * I + i;
    sc->fn(gate, gate + I, sc->act + o, n);
    o += n;
  }
}

void gf_swiglu_nolock(gf_level level, const float *a, int64_t rows, int64_t inter, float *act) {
  swiglu_ctx ctx = {a, inter, act, swiglu_impl(level)};
  /* Ranges start on 64-byte multiples of act so that no two threads write one cache line. */
  gf_parallel_for(rows * inter, 16, MIN_OUTPUTS_PER_THREAD, swiglu_task, &ctx);
}

int gf_swiglu(const float *a, int64_t rows, int64_t inter, float *act) {
  gf_call_lock();
  const gf_level level = gf_kernel_level(GF_KERNEL_SWIGLU);
  gf_swiglu_nolock(level, a, rows, inter, act);
  gf_count(GF_KERNEL_SWIGLU, level);
  gf_call_unlock();
  return GF_OK;
}
