/* Declarations shared by attention.c and its SIMD units. */
#ifndef GF_ATTENTION_INTERNAL_H
#define GF_ATTENTION_INTERNAL_H

#include "gf_internal.h"

/* Keys per tile of the SIMD units (one AVX-512 register of scores per row). */
#define GF_ATTN_TILE 16

/* One unit of work: queries [t0, t1) of every query head reading KV head kvh of sequence b.
 * work: gf_attention_work_floats(rows, head_dim) floats of the thread's scratch. */
typedef void (*gf_attention_unit_fn)(const gf_attention_args *a, int64_t b, int64_t kvh, int64_t t0,
                                     int64_t t1, float *work);
size_t gf_attention_work_floats(int64_t rows, int64_t head_dim);
/* Floats between consecutive positions of one KV head, and the offset of (sequence b, head kvh). */
static inline int64_t gf_attention_pos_stride(const gf_attention_args *a) {
  return a->heads_major ? a->head_dim : a->kv_heads * a->head_dim;
}
static inline int64_t gf_attention_kv_offset(const gf_attention_args *a, int64_t b, int64_t kvh) {
  const int64_t per_sequence = a->capacity * a->kv_heads * a->head_dim;
  return b * per_sequence + kvh * (a->heads_major ? a->capacity * a->head_dim : a->head_dim);
}
void gf_attention_unit_scalar(const gf_attention_args *a, int64_t b, int64_t kvh, int64_t t0, int64_t t1,
                              float *work);
#if GF_X86
void gf_attention_unit_avx512(const gf_attention_args *a, int64_t b, int64_t kvh, int64_t t0, int64_t t1,
                              float *work);
#endif
/* out rows of the unit = acc rows (acc_stride floats apart) / l, zeros where l is 0. */
void gf_attention_store_rows(const gf_attention_args *a, int64_t b, int64_t kvh, int64_t t0, int64_t t1,
                             const float *l, const float *acc, int64_t acc_stride);

#endif
