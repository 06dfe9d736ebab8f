/*
 * Routed SwiGLU experts in one call (the body of @graniteflow/ops-moe's MoePackedExperts on the
 * native backend for q8_0 / q4_0 experts).
 *
 * Why one call: a decode token meets k experts per layer, each two small matrices (H-Tiny: 0.9 and
 * 0.4 MB in q4_0). Called one matrix at a time from JavaScript, each product paid its own thread
 * hand-off and call overhead, and the pool's two halves of a 0.4 MB matrix are too short to stream
 * at full speed. Here one token's k experts go through the threads together: one pass over all
 * their input_linear rows, one SwiGLU, one pass over all their output_linear rows. Several tokens
 * are grouped by expert (a stable counting sort), so each expert's rows multiply all of its tokens
 * in one matmul; unselected experts are never read.
 */
#include "gf_internal.h"

/* Floats of scratch for `c` gathered rows: xs [c, h], a [c, 2I], act [c, I], ys [c, h]. */
static size_t group_floats(int64_t c, int64_t h, int64_t inter) { return (size_t)c * (size_t)(2 * h + 3 * inter); }

static int one_token(const gf_moe_args *a, gf_level level, float *scratch) {
  const int64_t k = a->k, h = a->h, inter = a->inter;
  const size_t w1_bytes = (size_t)(2 * inter) * gf_row_bytes(a->input_format, h);
  const size_t w2_bytes = (size_t)h * gf_row_bytes(a->output_format, inter);
  const uint8_t *w1[GF_MAX_MATRICES], *w2[GF_MAX_MATRICES];
  for (int64_t j = 0; j < k; j++) {
    w1[j] = (const uint8_t *)a->input_linear + (size_t)a->indices[j] * w1_bytes;
    w2[j] = (const uint8_t *)a->output_linear + (size_t)a->indices[j] * w2_bytes;
  }
  float *gate_up = scratch, *act = gate_up + k * 2 * inter, *ys = act + k * inter;
  int rc = gf_qmm_matrices_nolock(a->input_format, level, w1, k, 2 * inter, h, a->x, true, gate_up);
  if (rc != GF_OK) return rc;
  gf_swiglu_nolock(gf_kernel_level(GF_KERNEL_SWIGLU), gate_up, k, inter, act);
  rc = gf_qmm_matrices_nolock(a->output_format, level, w2, k, h, inter, act, false, ys);
  if (rc != GF_OK) return rc;
  for (int64_t c = 0; c < h; c++) a->y[c] = 0.0f;
  for (int64_t j = 0; j < k; j++) {
    const float g = a->weights[j];
    for (int64_t c = 0; c < h; c++) a->y[c] += g * ys[j * h + c];
  }
  return GF_OK;
}

static int many_tokens(const gf_moe_args *a, gf_level level) {
  const int64_t slots = a->n * a->k, h = a->h, inter = a->inter;
  int32_t *offsets = (int32_t *)gf_scratch(0, GF_SCRATCH_MOE_SORT, sizeof(int32_t) * (size_t)(2 * a->experts + 1 + slots));
  if (!offsets) return GF_ERR_NOMEM;
  int32_t *order = offsets + a->experts + 1;
  /* Stable counting sort of the slots by expert. */
  memset(offsets, 0, sizeof(int32_t) * (size_t)(a->experts + 1));
  for (int64_t s = 0; s < slots; s++) offsets[a->indices[s] + 1]++;
  for (int64_t e = 0; e < a->experts; e++) offsets[e + 1] += offsets[e];
  int32_t *next = order + slots; /* a cursor per expert */
  memcpy(next, offsets, sizeof(int32_t) * (size_t)a->experts);
  for (int64_t s = 0; s < slots; s++) order[next[a->indices[s]]++] = (int32_t)s;
  int64_t largest = 0;
  for (int64_t e = 0; e < a->experts; e++) largest = GF_MAX(largest, offsets[e + 1] - offsets[e]);
  float *scratch = (float *)gf_scratch(0, GF_SCRATCH_MOE, sizeof(float) * group_floats(largest, h, inter));
  if (!scratch) return GF_ERR_NOMEM;

  const size_t w1_bytes = (size_t)(2 * inter) * gf_row_bytes(a->input_format, h);
  const size_t w2_bytes = (size_t)h * gf_row_bytes(a->output_format, inter);
  memset(a->y, 0, sizeof(float) * (size_t)(a->n * h));
  for (int64_t e = 0; e < a->experts; e++) {
    const int64_t c = offsets[e + 1] - offsets[e];
    if (c == 0) continue;
    float *xs = scratch, *gate_up = xs + c * h, *act = gate_up + c * 2 * inter, *ys = act + c * inter;
    for (int64_t t = 0; t < c; t++)
      memcpy(xs + t * h, a->x + (order[offsets[e] + t] / a->k) * h, sizeof(float) * (size_t)h);
    int rc = gf_matmul_nolock(a->input_format, GF_LAYOUT_ROWS, level, (const uint8_t *)a->input_linear + e * w1_bytes,
                              2 * inter, h, xs, c, gate_up, false);
    if (rc != GF_OK) return rc;
    gf_swiglu_nolock(gf_kernel_level(GF_KERNEL_SWIGLU), gate_up, c, inter, act);
    rc = gf_matmul_nolock(a->output_format, GF_LAYOUT_ROWS, level, (const uint8_t *)a->output_linear + e * w2_bytes,
                          h, inter, act, c, ys, false);
    if (rc != GF_OK) return rc;
    for (int64_t t = 0; t < c; t++) {
      const int32_t slot = order[offsets[e] + t];
      const float g = a->weights[slot];
      float *dst = a->y + (slot / a->k) * h;
      for (int64_t col = 0; col < h; col++) dst[col] += g * ys[t * h + col];
    }
  }
  return GF_OK;
}

int gf_moe_experts(const gf_moe_args *a) {
  gf_call_lock();
  const gf_level level = gf_kernel_level(GF_KERNEL_MOE_EXPERTS);
  int rc = GF_OK;
  if (a->n == 0 || a->h == 0) {
    /* nothing to compute */
  } else if (a->k == 0 || a->inter == 0) {
    memset(a->y, 0, sizeof(float) * (size_t)(a->n * a->h));
  } else if (a->n == 1 && a->k <= GF_MAX_MATRICES) {
    float *scratch = (float *)gf_scratch(0, GF_SCRATCH_MOE, sizeof(float) * group_floats(a->k, a->h, a->inter));
    rc = scratch ? one_token(a, level, scratch) : GF_ERR_NOMEM;
  } else {
    rc = many_tokens(a, level);
  }
  if (rc == GF_OK) gf_count(GF_KERNEL_MOE_EXPERTS, level);
  gf_call_unlock();
  return rc;
}
