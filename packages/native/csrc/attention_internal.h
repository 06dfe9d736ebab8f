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
/* What a unit (sequence b, KV head kvh, queries [t0, t1)) reads, and its running state in `work`. */
typedef struct {
  const float *keys, *values; /* position 0 of the head; position s at + s * pos_stride */
  const float *mask;          /* the sequence's key mask, or NULL */
  int64_t pos_stride;         /* floats between consecutive positions of one head */
  int64_t past;               /* causal: query t sees keys s <= past + t */
  int64_t s_end;              /* keys past this are seen by no query of the unit */
  float *m, *l, *acc;         /* per row: running maximum, running sum, running output [rows, head_dim] */
} gf_attention_unit;

/* The unit's view of the arguments, with its first `rows` rows of state reset (m = -inf, l = 0,
 * acc = 0) in `work`, laid out m[rows], l[rows], then `between` floats, then acc. */
static inline gf_attention_unit gf_attention_unit_begin(const gf_attention_args *a, int64_t b, int64_t kvh, int64_t t1,
                                                        float *work, int64_t rows, int64_t between) {
  gf_attention_unit u;
  const int64_t hd = a->head_dim;
  const int64_t offset = b * a->capacity * a->kv_heads * hd + kvh * (a->heads_major ? a->capacity * hd : hd);
  u.keys = a->k + offset;
  u.values = a->v + offset;
  u.mask = a->key_mask ? a->key_mask + b * a->key_len : NULL;
  u.pos_stride = a->heads_major ? hd : a->kv_heads * hd;
  u.past = a->key_len - a->q_len;
  u.s_end = a->causal ? u.past + t1 : a->key_len;
  u.m = work;
  u.l = work + rows;
  u.acc = work + 2 * rows + between;
  for (int64_t i = 0; i < rows; i++) {
    u.m[i] = -INFINITY;
    u.l[i] = 0.0f;
  }
  memset(u.acc, 0, (size_t)(rows * hd) * sizeof(float));
  return u;
}
void gf_attention_unit_scalar(const gf_attention_args *a, int64_t b, int64_t kvh, int64_t t0, int64_t t1,
                              float *work);
#if GF_X86
void gf_attention_unit_avx2(const gf_attention_args *a, int64_t b, int64_t kvh, int64_t t0, int64_t t1,
                            float *work);
void gf_attention_unit_avx512(const gf_attention_args *a, int64_t b, int64_t kvh, int64_t t0, int64_t t1,
                              float *work);
#endif
/* Keys of a tile starting at s0 (lane j = key s0 + j, `lanes` of them) that a query seeing keys
 * up to `last` may attend, as bits. */
static inline unsigned gf_attention_causal_bits(int64_t last, int64_t s0, int lanes) {
  const int64_t span = last - s0; /* the last allowed lane */
  if (span < 0) return 0;
  if (span >= lanes - 1) return (1u << lanes) - 1;
  return (2u << span) - 1;
}

/* The query rows i0 .. i0 + count - 1 of a unit (row i = query head kvh * rep + i / nq, query
 * t0 + i % nq; rows past the unit's last repeat it) and the last key each may see. */
static inline void gf_attention_rows(const gf_attention_args *a, const gf_attention_unit *u, int64_t b, int64_t kvh,
                                     int64_t t0, int64_t nq, int64_t rows, int64_t i0, int count, const float **qrow,
                                     int64_t *last) {
  const int64_t rep = a->q_heads / a->kv_heads;
  for (int r = 0; r < count; r++) {
    const int64_t i = GF_MIN(i0 + r, rows - 1), t = t0 + i % nq;
    qrow[r] = a->q + ((b * a->q_len + t) * a->q_heads + kvh * rep + i / nq) * a->head_dim;
    last[r] = a->causal ? u->past + t : a->key_len - 1;
  }
}

/* out rows of the unit = acc rows (acc_stride floats apart) / l, zeros where l is 0. */
void gf_attention_store_rows(const gf_attention_args *a, int64_t b, int64_t kvh, int64_t t0, int64_t t1,
                             const float *l, const float *acc, int64_t acc_stride);

#endif
