/*
 * Node-API binding. Every argument from JavaScript is checked here again (types, integer counts,
 * buffer sizes against the shapes, overlapping outputs) before a kernel trusts it; the messages
 * name the function, the argument and what was expected.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <node_api.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gf_internal.h"

#define MAX_ARGS 26
#define MAX_SAFE_INTEGER 9007199254740991.0

typedef struct {
  napi_env env;
  const char *fn;
  size_t argc;
  napi_value argv[MAX_ARGS];
  bool failed; /* an exception is pending: stop and return */
} call_t;

static void throw_error(call_t *c, const char *kind, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void throw_error(call_t *c, const char *kind, const char *code, const char *fmt, ...) {
  if (c->failed) return;
  char message[768];
  int n = snprintf(message, sizeof message, "%s: ", c->fn);
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(message + n, sizeof message - (size_t)n, fmt, ap);
  va_end(ap);
  if (strcmp(kind, "type") == 0)
    napi_throw_type_error(c->env, code, message);
  else if (strcmp(kind, "range") == 0)
    napi_throw_range_error(c->env, code, message);
  else
    napi_throw_error(c->env, code, message);
  c->failed = true;
}

static bool begin(call_t *c, napi_env env, napi_callback_info info, const char *fn, size_t min_args) {
  c->env = env;
  c->fn = fn;
  c->failed = false;
  c->argc = MAX_ARGS;
  if (napi_get_cb_info(env, info, &c->argc, c->argv, NULL, NULL) != napi_ok) {
    throw_error(c, "error", NULL, "could not read the arguments");
    return false;
  }
  /* napi reports how many were passed, which may exceed what argv holds. */
  if (c->argc > MAX_ARGS) c->argc = MAX_ARGS;
  if (c->argc < min_args) {
    throw_error(c, "type", NULL, "expected at least %zu arguments, got %zu", min_args, c->argc);
    return false;
  }
  return true;
}

static napi_valuetype type_of(call_t *c, size_t i) {
  napi_valuetype t = napi_undefined;
  if (i < c->argc) napi_typeof(c->env, c->argv[i], &t);
  return t;
}

/* A non-negative integer (at most max). */
static int64_t arg_count(call_t *c, size_t i, const char *name, int64_t max) {
  if (c->failed) return 0;
  double v;
  if (type_of(c, i) != napi_number || napi_get_value_double(c->env, c->argv[i], &v) != napi_ok) {
    throw_error(c, "type", NULL, "%s must be a number", name);
    return 0;
  }
  if (!(v >= 0 && v <= MAX_SAFE_INTEGER) || v != (double)(int64_t)v) {
    throw_error(c, "range", NULL, "%s must be a non-negative integer, got %.17g", name, v);
    return 0;
  }
  if ((int64_t)v > max) {
    throw_error(c, "range", NULL, "%s must be at most %lld, got %.17g", name, (long long)max, v);
    return 0;
  }
  return (int64_t)v;
}

static bool arg_bool(call_t *c, size_t i, const char *name) {
  if (c->failed) return false;
  napi_valuetype t = type_of(c, i);
  if (t == napi_undefined) return false;
  bool v = false;
  if (t != napi_boolean || napi_get_value_bool(c->env, c->argv[i], &v) != napi_ok)
    throw_error(c, "type", NULL, "%s must be a boolean", name);
  return v;
}

/* A short string argument copied into buf. */
static bool arg_string(call_t *c, size_t i, const char *name, char *buf, size_t size) {
  if (c->failed) return false;
  size_t len;
  if (type_of(c, i) != napi_string ||
      napi_get_value_string_utf8(c->env, c->argv[i], buf, size, &len) != napi_ok) {
    throw_error(c, "type", NULL, "%s must be a string", name);
    return false;
  }
  if (len + 1 >= size) {
    throw_error(c, "range", NULL, "%s is too long", name);
    return false;
  }
  return true;
}

static gf_format arg_format(call_t *c, size_t i) {
  char name[16];
  if (!arg_string(c, i, "format", name, sizeof name)) return GF_FMT_F32;
  int f = gf_format_from_name(name);
  if (f < 0) throw_error(c, "range", NULL, "format must be one of f32, bf16, q8_0, q4_0, got '%s'", name);
  return f < 0 ? GF_FMT_F32 : (gf_format)f;
}

typedef struct {
  void *data;
  size_t bytes;
  napi_typedarray_type type;
} view_t;

static const char *type_name(napi_typedarray_type t) {
  switch (t) {
    case napi_int8_array: return "Int8Array";
    case napi_uint8_array: return "Uint8Array";
    case napi_uint8_clamped_array: return "Uint8ClampedArray";
    case napi_int16_array: return "Int16Array";
    case napi_uint16_array: return "Uint16Array";
    case napi_int32_array: return "Int32Array";
    case napi_uint32_array: return "Uint32Array";
    case napi_float32_array: return "Float32Array";
    case napi_float64_array: return "Float64Array";
    case napi_bigint64_array: return "BigInt64Array";
    case napi_biguint64_array: return "BigUint64Array";
    default: return "typed array";
  }
}

static size_t element_size(napi_typedarray_type t) {
  switch (t) {
    case napi_int8_array:
    case napi_uint8_array:
    case napi_uint8_clamped_array: return 1;
    case napi_int16_array:
    case napi_uint16_array: return 2;
    case napi_int32_array:
    case napi_uint32_array:
    case napi_float32_array: return 4;
    default: return 8;
  }
}

/* A typed array (of `want` type unless want < 0), any size. */
static view_t arg_view_any(call_t *c, size_t i, const char *name, int want) {
  view_t v = {NULL, 0, napi_uint8_array};
  if (c->failed) return v;
  bool is_typed = false;
  if (i < c->argc) napi_is_typedarray(c->env, c->argv[i], &is_typed);
  if (!is_typed) {
    throw_error(c, "type", NULL, "%s must be a %s", name,
                want < 0 ? "typed array (e.g. a Uint8Array)" : type_name((napi_typedarray_type)want));
    return v;
  }
  size_t length, offset;
  napi_value buffer;
  napi_get_typedarray_info(c->env, c->argv[i], &v.type, &length, &v.data, &buffer, &offset);
  if (want >= 0 && v.type != (napi_typedarray_type)want) {
    throw_error(c, "type", NULL, "%s must be a %s, got a %s", name,
                type_name((napi_typedarray_type)want), type_name(v.type));
    return v;
  }
  v.bytes = length * element_size(v.type);
  return v;
}

/* A typed array (of `want` type unless want < 0) of exactly `bytes` bytes. */
static view_t arg_view(call_t *c, size_t i, const char *name, int want, size_t bytes) {
  view_t v = arg_view_any(c, i, name, want);
  if (!c->failed && v.bytes != bytes) {
    if (want >= 0) {
      size_t unit = element_size((napi_typedarray_type)want);
      throw_error(c, "range", NULL, "%s must hold %zu elements, got %zu", name, bytes / unit, v.bytes / unit);
    } else {
      throw_error(c, "range", NULL, "%s must hold %zu bytes, got %zu", name, bytes, v.bytes);
    }
  }
  return v;
}

static int64_t mul_checked(call_t *c, int64_t a, int64_t b, const char *what) {
  int64_t r;
  if (c->failed) return 0;
  if (__builtin_mul_overflow(a, b, &r) || r > (int64_t)1 << 52) {
    throw_error(c, "range", NULL, "%s is too large", what);
    return 0;
  }
  return r;
}

static void check_block_cols(call_t *c, gf_format format, int64_t cols, const char *name) {
  if (c->failed) return;
  if ((format == GF_FMT_Q8_0 || format == GF_FMT_Q4_0) && cols % GF_BLOCK != 0)
    throw_error(c, "range", NULL, "%s must be a multiple of 32 for %s (its blocks hold 32 values), got %lld",
                name, gf_format_name(format), (long long)cols);
}

static bool overlaps(view_t a, view_t b) {
  if (a.bytes == 0 || b.bytes == 0) return false;
  uintptr_t a0 = (uintptr_t)a.data, b0 = (uintptr_t)b.data;
  return a0 < b0 + b.bytes && b0 < a0 + a.bytes;
}

static void check_disjoint(call_t *c, view_t out, const char *out_name, view_t in, const char *in_name) {
  if (!c->failed && overlaps(out, in))
    throw_error(c, "range", NULL, "%s must not share memory with %s", out_name, in_name);
}

static napi_value finish(call_t *c, int rc) {
  if (!c->failed && rc == GF_ERR_NOMEM) throw_error(c, "error", "ENOMEM", "out of memory for scratch buffers");
  napi_value undefined;
  napi_get_undefined(c->env, &undefined);
  return undefined;
}

static const int64_t MAX_DIM = (int64_t)1 << 40;

/* quantize(format, src: Float32Array, rows, cols, dst) */
static napi_value js_quantize(napi_env env, napi_callback_info info) {
  call_t c;
  if (!begin(&c, env, info, "quantize", 5)) return NULL;
  gf_format format = arg_format(&c, 0);
  int64_t rows = arg_count(&c, 2, "rows", MAX_DIM), cols = arg_count(&c, 3, "cols", MAX_DIM);
  check_block_cols(&c, format, cols, "cols");
  int64_t n = mul_checked(&c, rows, cols, "rows * cols");
  view_t src = arg_view(&c, 1, "src", napi_float32_array, (size_t)n * 4);
  view_t dst = arg_view(&c, 4, "dst", -1, (size_t)rows * gf_row_bytes(format, cols));
  check_disjoint(&c, dst, "dst", src, "src");
  if (c.failed) return NULL;
  return finish(&c, gf_quantize(format, (const float *)src.data, rows, cols, dst.data));
}

/* dequantize(format, src, rows, cols, dst: Float32Array) */
static napi_value js_dequantize(napi_env env, napi_callback_info info) {
  call_t c;
  if (!begin(&c, env, info, "dequantize", 5)) return NULL;
  gf_format format = arg_format(&c, 0);
  int64_t rows = arg_count(&c, 2, "rows", MAX_DIM), cols = arg_count(&c, 3, "cols", MAX_DIM);
  check_block_cols(&c, format, cols, "cols");
  int64_t n = mul_checked(&c, rows, cols, "rows * cols");
  view_t src = arg_view(&c, 1, "src", -1, (size_t)rows * gf_row_bytes(format, cols));
  view_t dst = arg_view(&c, 4, "dst", napi_float32_array, (size_t)n * 4);
  check_disjoint(&c, dst, "dst", src, "src");
  if (c.failed) return NULL;
  return finish(&c, gf_dequantize(format, src.data, rows, cols, (float *)dst.data));
}

static void check_interleavable(call_t *c, gf_format format, bool interleaved) {
  if (!c->failed && interleaved && format != GF_FMT_Q8_0 && format != GF_FMT_Q4_0)
    throw_error(c, "range", NULL, "only q8_0 and q4_0 weights can be interleaved, got %s", gf_format_name(format));
}

/* dequantizeRows(format, src, cols, rowIndices: Int32Array, dst: Float32Array, interleaved) */
static napi_value js_dequantize_rows(napi_env env, napi_callback_info info) {
  call_t c;
  if (!begin(&c, env, info, "dequantizeRows", 5)) return NULL;
  gf_format format = arg_format(&c, 0);
  int64_t cols = arg_count(&c, 2, "cols", MAX_DIM);
  check_block_cols(&c, format, cols, "cols");
  if (!c.failed && cols == 0) throw_error(&c, "range", NULL, "cols must be positive");
  view_t src = arg_view_any(&c, 1, "src", -1);
  if (c.failed) return NULL;
  size_t row_bytes = gf_row_bytes(format, cols);
  if (src.bytes % row_bytes != 0) {
    throw_error(&c, "range", NULL,
                "src must hold whole rows of %zu bytes (%s, cols = %lld), got %zu bytes", row_bytes,
                gf_format_name(format), (long long)cols, src.bytes);
    return NULL;
  }
  int64_t src_rows = (int64_t)(src.bytes / row_bytes);
  view_t idx = arg_view_any(&c, 3, "rowIndices", napi_int32_array);
  if (c.failed) return NULL;
  int64_t n_idx = (int64_t)(idx.bytes / 4);
  const int32_t *rows = (const int32_t *)idx.data;
  for (int64_t i = 0; i < n_idx; i++)
    if (rows[i] < 0 || rows[i] >= src_rows) {
      throw_error(&c, "range", NULL, "rowIndices[%lld] = %d is outside the %lld rows of src",
                  (long long)i, rows[i], (long long)src_rows);
      return NULL;
    }
  int64_t n = mul_checked(&c, n_idx, cols, "rowIndices.length * cols");
  view_t dst = arg_view(&c, 4, "dst", napi_float32_array, (size_t)n * 4);
  check_disjoint(&c, dst, "dst", src, "src");
  check_disjoint(&c, dst, "dst", idx, "rowIndices");
  bool interleaved = arg_bool(&c, 5, "interleaved");
  check_interleavable(&c, format, interleaved);
  if (c.failed) return NULL;
  return finish(&c, gf_dequantize_rows(format, interleaved ? GF_LAYOUT_INTERLEAVED : GF_LAYOUT_ROWS, src.data,
                                       src_rows, cols, rows, n_idx, (float *)dst.data));
}

/* matmul(format, w, outFeatures, inFeatures, x: Float32Array, nRows, y: Float32Array, accumulate,
 *        interleaved) */
static napi_value js_matmul(napi_env env, napi_callback_info info) {
  call_t c;
  if (!begin(&c, env, info, "matmul", 7)) return NULL;
  gf_format format = arg_format(&c, 0);
  int64_t out = arg_count(&c, 2, "outFeatures", MAX_DIM), in = arg_count(&c, 3, "inFeatures", MAX_DIM);
  check_block_cols(&c, format, in, "inFeatures");
  int64_t n = arg_count(&c, 5, "nRows", MAX_DIM);
  bool accumulate = arg_bool(&c, 7, "accumulate");
  bool interleaved = arg_bool(&c, 8, "interleaved");
  check_interleavable(&c, format, interleaved);
  view_t w = arg_view(&c, 1, "w", -1, (size_t)out * gf_row_bytes(format, in));
  view_t x = arg_view(&c, 4, "x", napi_float32_array, (size_t)mul_checked(&c, n, in, "nRows * inFeatures") * 4);
  view_t y = arg_view(&c, 6, "y", napi_float32_array, (size_t)mul_checked(&c, n, out, "nRows * outFeatures") * 4);
  mul_checked(&c, out, in, "outFeatures * inFeatures");
  check_disjoint(&c, y, "y", x, "x");
  check_disjoint(&c, y, "y", w, "w");
  if (c.failed) return NULL;
  return finish(&c, gf_matmul(format, interleaved ? GF_LAYOUT_INTERLEAVED : GF_LAYOUT_ROWS, w.data, out, in,
                              (const float *)x.data, n, (float *)y.data, accumulate));
}

/* gemmF32(a, b, c, M, N, K, transposeA, transposeB, batch, strideA, strideB, strideC, accumulate) */
static napi_value js_gemm_f32(napi_env env, napi_callback_info info) {
  call_t c;
  if (!begin(&c, env, info, "gemmF32", 13)) return NULL;
  int64_t m = arg_count(&c, 3, "M", MAX_DIM), n = arg_count(&c, 4, "N", MAX_DIM), k = arg_count(&c, 5, "K", MAX_DIM);
  bool ta = arg_bool(&c, 6, "transposeA"), tb = arg_bool(&c, 7, "transposeB");
  int64_t batch = arg_count(&c, 8, "batch", MAX_DIM);
  int64_t sa = arg_count(&c, 9, "strideA", MAX_DIM), sb = arg_count(&c, 10, "strideB", MAX_DIM),
          sc = arg_count(&c, 11, "strideC", MAX_DIM);
  bool accumulate = arg_bool(&c, 12, "accumulate");
  int64_t size_a = mul_checked(&c, m, k, "M * K"), size_b = mul_checked(&c, k, n, "K * N"),
          size_c = mul_checked(&c, m, n, "M * N");
  if (!c.failed && batch > 1 && sc < size_c)
    throw_error(&c, "range", NULL, "strideC must be at least M * N = %lld so that the batch's outputs do not overlap, got %lld",
                (long long)size_c, (long long)sc);
  /* Elements each operand must hold: the last problem's start plus one problem. */
  int64_t last = batch > 0 ? batch - 1 : 0;
  int64_t need_a = batch ? mul_checked(&c, last, sa, "strideA * (batch - 1)") + size_a : 0;
  int64_t need_b = batch ? mul_checked(&c, last, sb, "strideB * (batch - 1)") + size_b : 0;
  int64_t need_c = batch ? mul_checked(&c, last, sc, "strideC * (batch - 1)") + size_c : 0;
  view_t a = arg_view_any(&c, 0, "a", napi_float32_array);
  view_t b = arg_view_any(&c, 1, "b", napi_float32_array);
  view_t cv = arg_view_any(&c, 2, "c", napi_float32_array);
  if (!c.failed && (int64_t)(a.bytes / 4) < need_a)
    throw_error(&c, "range", NULL, "a must hold at least %lld elements (batch %lld, M = %lld, K = %lld, strideA = %lld), got %zu",
                (long long)need_a, (long long)batch, (long long)m, (long long)k, (long long)sa, a.bytes / 4);
  if (!c.failed && (int64_t)(b.bytes / 4) < need_b)
    throw_error(&c, "range", NULL, "b must hold at least %lld elements (batch %lld, K = %lld, N = %lld, strideB = %lld), got %zu",
                (long long)need_b, (long long)batch, (long long)k, (long long)n, (long long)sb, b.bytes / 4);
  if (!c.failed && (int64_t)(cv.bytes / 4) < need_c)
    throw_error(&c, "range", NULL, "c must hold at least %lld elements (batch %lld, M = %lld, N = %lld, strideC = %lld), got %zu",
                (long long)need_c, (long long)batch, (long long)m, (long long)n, (long long)sc, cv.bytes / 4);
  check_disjoint(&c, cv, "c", a, "a");
  check_disjoint(&c, cv, "c", b, "b");
  if (c.failed) return NULL;
  return finish(&c, gf_gemm_f32((const float *)a.data, (const float *)b.data, (float *)cv.data, m, n, k, ta, tb,
                                batch, sa, sb, sc, accumulate));
}

/* ---- Mamba-2 kernels ---- */

/* A number other than NaN (+-Infinity allowed: dtMax defaults to Infinity). */
static double arg_number(call_t *c, size_t i, const char *name) {
  if (c->failed) return 0;
  double v;
  if (type_of(c, i) != napi_number || napi_get_value_double(c->env, c->argv[i], &v) != napi_ok) {
    throw_error(c, "type", NULL, "%s must be a number", name);
    return 0;
  }
  if (v != v) throw_error(c, "range", NULL, "%s must not be NaN", name);
  return v;
}

/* A Float32Array of exactly n elements, or NULL when the argument is null / undefined. */
static const float *arg_f32_opt(call_t *c, size_t i, const char *name, int64_t n, view_t *out) {
  napi_valuetype t = type_of(c, i);
  out->data = NULL;
  out->bytes = 0;
  if (c->failed || t == napi_undefined || t == napi_null) return NULL;
  *out = arg_view(c, i, name, napi_float32_array, (size_t)n * 4);
  return (const float *)out->data;
}

/* A scan's sizes from the six counts and two limits starting at argument `first`, with the element
 * counts of its arrays (overflow-checked). */
typedef struct {
  int64_t batch, T, H, P, G, N, n_x, n_t, n_bc, n_s;
  double dt_min, dt_max;
} scan_dims_t;

static scan_dims_t scan_dims(call_t *c, size_t first) {
  scan_dims_t d;
  d.batch = arg_count(c, first, "batch", MAX_DIM), d.T = arg_count(c, first + 1, "seqLen", MAX_DIM);
  d.H = arg_count(c, first + 2, "heads", MAX_DIM), d.P = arg_count(c, first + 3, "headDim", MAX_DIM);
  d.G = arg_count(c, first + 4, "groups", MAX_DIM), d.N = arg_count(c, first + 5, "stateSize", MAX_DIM);
  d.dt_min = arg_number(c, first + 6, "dtMin"), d.dt_max = arg_number(c, first + 7, "dtMax");
  if (!c->failed && (d.G == 0 || d.H % d.G != 0))
    throw_error(c, "range", NULL, "groups must be positive and divide heads = %lld, got %lld", (long long)d.H, (long long)d.G);
  const int64_t bt = mul_checked(c, d.batch, d.T, "batch * seqLen");
  d.n_t = mul_checked(c, bt, d.H, "batch * seqLen * heads");
  d.n_x = mul_checked(c, d.n_t, d.P, "batch * seqLen * heads * headDim");
  d.n_bc = mul_checked(c, mul_checked(c, bt, d.G, "batch * seqLen * groups"), d.N, "batch * seqLen * groups * stateSize");
  d.n_s = mul_checked(c, mul_checked(c, d.batch * d.H, d.P, "batch * heads * headDim"), d.N, "batch * heads * headDim * stateSize");
  return d;
}

/* ssmScan(x, dt, A_log, B, C, D, dt_bias, initialState | null, batch, seqLen, heads, headDim,
 *         groups, stateSize, dtMin, dtMax, y, finalState) */
static napi_value js_ssm_scan(napi_env env, napi_callback_info info) {
  call_t c;
  if (!begin(&c, env, info, "ssmScan", 18)) return NULL;
  const scan_dims_t sd = scan_dims(&c, 8);
  const int64_t batch = sd.batch, T = sd.T, H = sd.H, P = sd.P, G = sd.G, N = sd.N;
  const int64_t n_x = sd.n_x, n_bc = sd.n_bc, n_s = sd.n_s;
  const double dt_min = sd.dt_min, dt_max = sd.dt_max;
  view_t x = arg_view(&c, 0, "x", napi_float32_array, (size_t)n_x * 4);
  view_t dt = arg_view(&c, 1, "dt", napi_float32_array, (size_t)sd.n_t * 4);
  view_t a_log = arg_view(&c, 2, "A_log", napi_float32_array, (size_t)H * 4);
  view_t b = arg_view(&c, 3, "B", napi_float32_array, (size_t)n_bc * 4);
  view_t cc = arg_view(&c, 4, "C", napi_float32_array, (size_t)n_bc * 4);
  view_t d = arg_view(&c, 5, "D", napi_float32_array, (size_t)H * 4);
  view_t bias = arg_view(&c, 6, "dt_bias", napi_float32_array, (size_t)H * 4);
  view_t init;
  const float *init_data = arg_f32_opt(&c, 7, "initialState", n_s, &init);
  view_t y = arg_view(&c, 16, "y", napi_float32_array, (size_t)n_x * 4);
  view_t fs = arg_view(&c, 17, "finalState", napi_float32_array, (size_t)n_s * 4);
  const view_t ins[] = {x, dt, a_log, b, cc, d, bias, init};
  const char *const in_names[] = {"x", "dt", "A_log", "B", "C", "D", "dt_bias", "initialState"};
  for (size_t i = 0; i < sizeof ins / sizeof ins[0]; i++) {
    check_disjoint(&c, y, "y", ins[i], in_names[i]);
    /* finalState may be initialState itself (an in-place update), but not part of it. */
    if (i == 7 && init.data == fs.data && init.bytes == fs.bytes) continue;
    check_disjoint(&c, fs, "finalState", ins[i], in_names[i]);
  }
  check_disjoint(&c, fs, "finalState", y, "y");
  if (c.failed) return NULL;
  gf_ssm_scan_args a = {(const float *)x.data, (const float *)dt.data, (const float *)a_log.data,
                        (const float *)b.data, (const float *)cc.data, (const float *)d.data,
                        (const float *)bias.data, init_data, batch, T, H, P, G, N, dt_min, dt_max,
                        (float *)y.data, (float *)fs.data};
  return finish(&c, gf_ssm_scan(&a));
}

/* ssmScanGrad(x, dt, A_log, B, C, D, dt_bias, initialState | null, dy, dFinalState, batch, seqLen,
 *             heads, headDim, groups, stateSize, dtMin, dtMax,
 *             dx, ddt, dA_log, dB, dC, dD, ddt_bias, dInitialState) */
static napi_value js_ssm_scan_grad(napi_env env, napi_callback_info info) {
  call_t c;
  if (!begin(&c, env, info, "ssmScanGrad", 26)) return NULL;
  const scan_dims_t sd = scan_dims(&c, 10);
  const int64_t H = sd.H, n_x = sd.n_x, n_bc = sd.n_bc, n_s = sd.n_s;
  view_t in[10];
  const char *const in_names[] = {"x", "dt", "A_log", "B", "C", "D", "dt_bias", "initialState", "dy", "dFinalState"};
  const int64_t in_sizes[] = {n_x, sd.n_t, H, n_bc, n_bc, H, H, n_s, n_x, n_s};
  for (size_t i = 0; i < 10; i++) {
    if (i == 7) {
      arg_f32_opt(&c, 7, "initialState", n_s, &in[7]);
      continue;
    }
    in[i] = arg_view(&c, i, in_names[i], napi_float32_array, (size_t)in_sizes[i] * 4);
  }
  view_t out[8];
  const char *const out_names[] = {"dx", "ddt", "dA_log", "dB", "dC", "dD", "ddt_bias", "dInitialState"};
  const int64_t out_sizes[] = {n_x, sd.n_t, H, n_bc, n_bc, H, H, n_s};
  for (size_t i = 0; i < 8; i++) out[i] = arg_view(&c, 18 + i, out_names[i], napi_float32_array, (size_t)out_sizes[i] * 4);
  for (size_t o = 0; o < 8; o++) {
    for (size_t i = 0; i < 10; i++) check_disjoint(&c, out[o], out_names[o], in[i], in_names[i]);
    for (size_t p = 0; p < o; p++) check_disjoint(&c, out[o], out_names[o], out[p], out_names[p]);
  }
  if (c.failed) return NULL;
  gf_ssm_scan_grad_args a = {(const float *)in[0].data, (const float *)in[1].data, (const float *)in[2].data,
                             (const float *)in[3].data, (const float *)in[4].data, (const float *)in[5].data,
                             (const float *)in[6].data, (const float *)in[7].data, (const float *)in[8].data,
                             (const float *)in[9].data, sd.batch, sd.T, H, sd.P, sd.G, sd.N, sd.dt_min, sd.dt_max,
                             (float *)out[0].data, (float *)out[1].data, (float *)out[2].data, (float *)out[3].data,
                             (float *)out[4].data, (float *)out[5].data, (float *)out[6].data, (float *)out[7].data};
  return finish(&c, gf_ssm_scan_grad(&a));
}

/* causalConv1d(x, weight, bias | null, convState | null, batch, seqLen, channels, kernelSize,
 *              silu, y, newState) */
static napi_value js_causal_conv1d(napi_env env, napi_callback_info info) {
  call_t c;
  if (!begin(&c, env, info, "causalConv1d", 11)) return NULL;
  int64_t batch = arg_count(&c, 4, "batch", MAX_DIM), T = arg_count(&c, 5, "seqLen", MAX_DIM),
          C = arg_count(&c, 6, "channels", MAX_DIM), K = arg_count(&c, 7, "kernelSize", MAX_DIM);
  bool silu = arg_bool(&c, 8, "silu");
  if (!c.failed && K < 1) throw_error(&c, "range", NULL, "kernelSize must be at least 1, got 0");
  int64_t n_x = mul_checked(&c, mul_checked(&c, batch, T, "batch * seqLen"), C, "batch * seqLen * channels");
  int64_t n_s = mul_checked(&c, mul_checked(&c, batch, K > 0 ? K - 1 : 0, "batch * (kernelSize - 1)"), C,
                            "batch * (kernelSize - 1) * channels");
  view_t x = arg_view(&c, 0, "x", napi_float32_array, (size_t)n_x * 4);
  view_t w = arg_view(&c, 1, "weight", napi_float32_array, (size_t)mul_checked(&c, C, K, "channels * kernelSize") * 4);
  view_t bias, state;
  const float *bias_data = arg_f32_opt(&c, 2, "bias", C, &bias);
  const float *state_data = arg_f32_opt(&c, 3, "convState", n_s, &state);
  view_t y = arg_view(&c, 9, "y", napi_float32_array, (size_t)n_x * 4);
  view_t ns = arg_view(&c, 10, "newState", napi_float32_array, (size_t)n_s * 4);
  const view_t ins[] = {x, w, bias, state};
  const char *const in_names[] = {"x", "weight", "bias", "convState"};
  for (size_t i = 0; i < 4; i++) {
    check_disjoint(&c, y, "y", ins[i], in_names[i]);
    check_disjoint(&c, ns, "newState", ins[i], in_names[i]);
  }
  check_disjoint(&c, ns, "newState", y, "y");
  if (c.failed) return NULL;
  gf_causal_conv1d_args a = {(const float *)x.data, (const float *)w.data, bias_data, state_data, batch, T, C, K,
                             silu, (float *)y.data, (float *)ns.data};
  return finish(&c, gf_causal_conv1d(&a));
}

/* gatedRmsNorm(y, z, weight, rows, dim, groupSize, eps, out) */
static napi_value js_gated_rms_norm(napi_env env, napi_callback_info info) {
  call_t c;
  if (!begin(&c, env, info, "gatedRmsNorm", 8)) return NULL;
  int64_t rows = arg_count(&c, 3, "rows", MAX_DIM), dim = arg_count(&c, 4, "dim", MAX_DIM),
          gs = arg_count(&c, 5, "groupSize", MAX_DIM);
  double eps = arg_number(&c, 6, "eps");
  if (!c.failed && (gs == 0 || dim % gs != 0))
    throw_error(&c, "range", NULL, "groupSize must be positive and divide dim = %lld, got %lld", (long long)dim, (long long)gs);
  int64_t n = mul_checked(&c, rows, dim, "rows * dim");
  view_t y = arg_view(&c, 0, "y", napi_float32_array, (size_t)n * 4);
  view_t z = arg_view(&c, 1, "z", napi_float32_array, (size_t)n * 4);
  view_t w = arg_view(&c, 2, "weight", napi_float32_array, (size_t)dim * 4);
  view_t out = arg_view(&c, 7, "out", napi_float32_array, (size_t)n * 4);
  check_disjoint(&c, out, "out", y, "y");
  check_disjoint(&c, out, "out", z, "z");
  check_disjoint(&c, out, "out", w, "weight");
  if (c.failed) return NULL;
  gf_gated_rms_norm_args a = {(const float *)y.data, (const float *)z.data, (const float *)w.data, rows, dim, gs, eps,
                              (float *)out.data};
  return finish(&c, gf_gated_rms_norm(&a));
}

/* swiglu(a, rows, inter, act) */
static napi_value js_swiglu(napi_env env, napi_callback_info info) {
  call_t c;
  if (!begin(&c, env, info, "swiglu", 4)) return NULL;
  int64_t rows = arg_count(&c, 1, "rows", MAX_DIM), inter = arg_count(&c, 2, "inter", MAX_DIM);
  int64_t n = mul_checked(&c, rows, inter, "rows * inter");
  view_t a = arg_view(&c, 0, "a", napi_float32_array, (size_t)mul_checked(&c, n, 2, "rows * 2 * inter") * 4);
  view_t act = arg_view(&c, 3, "act", napi_float32_array, (size_t)n * 4);
  check_disjoint(&c, act, "act", a, "a");
  if (c.failed) return NULL;
  return finish(&c, gf_swiglu((const float *)a.data, rows, inter, (float *)act.data));
}

/* attention(q, k, v, keyMask | null, batch, queryLength, queryHeads, kvHeads, headDim, keyLength,
 *           capacity, causal, scale, out, headsMajor) */
static napi_value js_attention(napi_env env, napi_callback_info info) {
  call_t c;
  if (!begin(&c, env, info, "attention", 14)) return NULL;
  int64_t batch = arg_count(&c, 4, "batch", MAX_DIM), T = arg_count(&c, 5, "queryLength", MAX_DIM),
          Hq = arg_count(&c, 6, "queryHeads", MAX_DIM), Hkv = arg_count(&c, 7, "kvHeads", MAX_DIM),
          hd = arg_count(&c, 8, "headDim", MAX_DIM), S = arg_count(&c, 9, "keyLength", MAX_DIM),
          cap = arg_count(&c, 10, "capacity", MAX_DIM);
  bool causal = arg_bool(&c, 11, "causal");
  double scale = arg_number(&c, 12, "scale");
  if (!c.failed && (Hkv == 0 || Hq % Hkv != 0))
    throw_error(&c, "range", NULL, "kvHeads must be positive and divide queryHeads = %lld, got %lld", (long long)Hq,
                (long long)Hkv);
  if (!c.failed && S > cap)
    throw_error(&c, "range", NULL, "keyLength (%lld) must be at most capacity (%lld)", (long long)S, (long long)cap);
  if (!c.failed && causal && S < T)
    throw_error(&c, "range", NULL, "causal attention needs keyLength >= queryLength, got %lld < %lld", (long long)S,
                (long long)T);
  /* The SIMD unit gathers a tile's keys with 32-bit offsets of up to 15 positions. */
  if (!c.failed && mul_checked(&c, Hkv, hd, "kvHeads * headDim") > ((int64_t)1 << 26))
    throw_error(&c, "range", NULL, "kvHeads * headDim must be at most %lld", (long long)1 << 26);
  int64_t n_q = mul_checked(&c, mul_checked(&c, mul_checked(&c, batch, T, "batch * queryLength"), Hq,
                                            "batch * queryLength * queryHeads"),
                            hd, "batch * queryLength * queryHeads * headDim");
  int64_t n_kv = mul_checked(&c, mul_checked(&c, mul_checked(&c, batch, cap, "batch * capacity"), Hkv,
                                             "batch * capacity * kvHeads"),
                             hd, "batch * capacity * kvHeads * headDim");
  view_t q = arg_view(&c, 0, "q", napi_float32_array, (size_t)n_q * 4);
  view_t k = arg_view(&c, 1, "k", napi_float32_array, (size_t)n_kv * 4);
  view_t v = arg_view(&c, 2, "v", napi_float32_array, (size_t)n_kv * 4);
  view_t mask;
  const float *mask_data = arg_f32_opt(&c, 3, "keyMask", mul_checked(&c, batch, S, "batch * keyLength"), &mask);
  view_t out = arg_view(&c, 13, "out", napi_float32_array, (size_t)n_q * 4);
  const view_t ins[] = {q, k, v, mask};
  const char *const in_names[] = {"q", "k", "v", "keyMask"};
  for (size_t i = 0; i < 4; i++) check_disjoint(&c, out, "out", ins[i], in_names[i]);
  if (c.failed) return NULL;
  bool heads_major = arg_bool(&c, 14, "headsMajor");
  if (c.failed) return NULL;
  gf_attention_args a = {(const float *)q.data, (const float *)k.data, (const float *)v.data, mask_data,
                         batch, T, Hq, Hkv, hd, S, cap, causal, heads_major, (float)scale, (float *)out.data};
  return finish(&c, gf_attention(&a));
}

/* moeExperts(inputFormat, inputLinear, outputFormat, outputLinear, x, n, h, inter, experts, k,
 *            indices: Int32Array, weights: Float32Array, y: Float32Array) */
static napi_value js_moe_experts(napi_env env, napi_callback_info info) {
  call_t c;
  if (!begin(&c, env, info, "moeExperts", 13)) return NULL;
  gf_moe_args a;
  a.input_format = arg_format(&c, 0);
  a.output_format = arg_format(&c, 2);
  a.n = arg_count(&c, 5, "n", MAX_DIM);
  a.h = arg_count(&c, 6, "h", MAX_DIM);
  a.inter = arg_count(&c, 7, "inter", MAX_DIM);
  a.experts = arg_count(&c, 8, "experts", MAX_DIM);
  a.k = arg_count(&c, 9, "k", MAX_DIM);
  if (!c.failed && ((a.input_format != GF_FMT_Q8_0 && a.input_format != GF_FMT_Q4_0) ||
                    (a.output_format != GF_FMT_Q8_0 && a.output_format != GF_FMT_Q4_0)))
    throw_error(&c, "range", NULL, "expert weights must be q8_0 or q4_0, got %s and %s",
                gf_format_name(a.input_format), gf_format_name(a.output_format));
  check_block_cols(&c, a.input_format, a.h, "h");
  check_block_cols(&c, a.output_format, a.inter, "inter");
  int64_t w1 = mul_checked(&c, mul_checked(&c, a.experts, 2 * a.inter, "experts * 2 * inter"),
                           (int64_t)gf_row_bytes(a.input_format, a.h), "input_linear bytes");
  int64_t w2 = mul_checked(&c, mul_checked(&c, a.experts, a.h, "experts * h"),
                           (int64_t)gf_row_bytes(a.output_format, a.inter), "output_linear bytes");
  int64_t slots = mul_checked(&c, a.n, a.k, "n * k"), xn = mul_checked(&c, a.n, a.h, "n * h");
  view_t v1 = arg_view(&c, 1, "inputLinear", -1, (size_t)w1);
  view_t v2 = arg_view(&c, 3, "outputLinear", -1, (size_t)w2);
  view_t x = arg_view(&c, 4, "x", napi_float32_array, (size_t)xn * 4);
  view_t idx = arg_view(&c, 10, "indices", napi_int32_array, (size_t)slots * 4);
  view_t wts = arg_view(&c, 11, "weights", napi_float32_array, (size_t)slots * 4);
  view_t y = arg_view(&c, 12, "y", napi_float32_array, (size_t)xn * 4);
  check_disjoint(&c, y, "y", x, "x");
  check_disjoint(&c, y, "y", v1, "inputLinear");
  check_disjoint(&c, y, "y", v2, "outputLinear");
  check_disjoint(&c, y, "y", idx, "indices");
  check_disjoint(&c, y, "y", wts, "weights");
  if (c.failed) return NULL;
  const int32_t *ids = (const int32_t *)idx.data;
  for (int64_t s = 0; s < slots; s++)
    if (ids[s] < 0 || ids[s] >= a.experts) {
      throw_error(&c, "range", NULL, "indices[%lld, %lld] = %d is outside the %lld experts",
                  (long long)(s / a.k), (long long)(s % a.k), ids[s], (long long)a.experts);
      return NULL;
    }
  a.input_linear = v1.data;
  a.output_linear = v2.data;
  a.x = (const float *)x.data;
  a.indices = ids;
  a.weights = (const float *)wts.data;
  a.y = (float *)y.data;
  return finish(&c, gf_moe_experts(&a));
}

/* ---- mmap ---- */

typedef struct mapping {
  void *base;
  size_t length;
  bool writable;
  struct mapping *next, *prev; /* the live mappings (touched on the JS thread only) */
} mapping_t;

static mapping_t *live_mappings;

static void unmap_finalizer(napi_env env, void *data, void *hint) {
  (void)env;
  (void)data;
  mapping_t *m = (mapping_t *)hint;
  if (m->prev) m->prev->next = m->next;
  else live_mappings = m->next;
  if (m->next) m->next->prev = m->prev;
  munmap(m->base, m->length);
  free(m);
}

/* Whether [data, data + bytes) overlaps a mapping made without `writable` (writing it would
 * fault). */
static bool in_read_only_mapping(const void *data, size_t bytes) {
  uintptr_t a0 = (uintptr_t)data;
  for (const mapping_t *m = live_mappings; m; m = m->next) {
    uintptr_t b0 = (uintptr_t)m->base;
    if (!m->writable && a0 < b0 + m->length && b0 < a0 + bytes) return true;
  }
  return false;
}

static const char *errno_code(int e) {
  switch (e) {
    case ENOENT: return "ENOENT";
    case EACCES: return "EACCES";
    case EISDIR: return "EISDIR";
    case ENOTDIR: return "ENOTDIR";
    case ENOMEM: return "ENOMEM";
    case EMFILE: return "EMFILE";
    case ENFILE: return "ENFILE";
    case ELOOP: return "ELOOP";
    case ENAMETOOLONG: return "ENAMETOOLONG";
    default: return "EIO";
  }
}

/* mmapFile(path, offset, length (undefined: to the end), advice, writable). writable: a private
 * copy-on-write mapping (writes change this process's pages, never the file). */
static napi_value js_mmap_file(napi_env env, napi_callback_info info) {
  call_t c;
  if (!begin(&c, env, info, "mmapFile", 4)) return NULL;
  bool writable = arg_bool(&c, 4, "writable");
  char path[4096], advice[16];
  if (!arg_string(&c, 0, "path", path, sizeof path)) return NULL;
  int64_t offset = arg_count(&c, 1, "offset", INT64_MAX / 2);
  bool to_end = type_of(&c, 2) == napi_undefined;
  int64_t length = to_end ? 0 : arg_count(&c, 2, "length", INT64_MAX / 2);
  if (!arg_string(&c, 3, "advice", advice, sizeof advice)) return NULL;
  int advice_flag;
  if (strcmp(advice, "normal") == 0) advice_flag = MADV_NORMAL;
  else if (strcmp(advice, "sequential") == 0) advice_flag = MADV_SEQUENTIAL;
  else if (strcmp(advice, "random") == 0) advice_flag = MADV_RANDOM;
  else if (strcmp(advice, "willneed") == 0) advice_flag = MADV_WILLNEED;
  else {
    throw_error(&c, "range", NULL, "advice must be one of normal, sequential, random, willneed, got '%s'", advice);
    return NULL;
  }
  if (c.failed) return NULL;

  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int e = errno;
    throw_error(&c, "error", errno_code(e), "cannot open '%s': %s (%s)", path, strerror(e), errno_code(e));
    return NULL;
  }
  struct stat st;
  if (fstat(fd, &st) != 0) {
    int e = errno;
    close(fd);
    throw_error(&c, "error", errno_code(e), "cannot stat '%s': %s", path, strerror(e));
    return NULL;
  }
  if (!S_ISREG(st.st_mode)) {
    close(fd);
    throw_error(&c, "error", "EINVAL", "'%s' is not a regular file%s", path,
                S_ISDIR(st.st_mode) ? " (it is a directory)" : "");
    return NULL;
  }
  int64_t size = (int64_t)st.st_size;
  if (offset > size) {
    close(fd);
    throw_error(&c, "range", NULL, "offset %lld is beyond the end of '%s' (%lld bytes)", (long long)offset, path,
                (long long)size);
    return NULL;
  }
  if (to_end) length = size - offset;
  if (length > size - offset) {
    close(fd);
    throw_error(&c, "range", NULL,
                "offset %lld + length %lld is beyond the end of '%s' (%lld bytes)", (long long)offset,
                (long long)length, path, (long long)size);
    return NULL;
  }
  napi_value result;
  if (length == 0) {
    close(fd);
    void *unused;
    napi_create_arraybuffer(env, 0, &unused, &result);
    return result;
  }
  long page = sysconf(_SC_PAGESIZE);
  int64_t delta = offset % page;
  size_t map_length = (size_t)(length + delta);
  void *base = mmap(NULL, map_length, PROT_READ | (writable ? PROT_WRITE : 0), MAP_PRIVATE, fd,
                    (off_t)(offset - delta));
  int map_errno = errno;
  close(fd);
  if (base == MAP_FAILED) {
    throw_error(&c, "error", errno_code(map_errno), "cannot map '%s': %s", path, strerror(map_errno));
    return NULL;
  }
  if (advice_flag != MADV_NORMAL) madvise(base, map_length, advice_flag);
  mapping_t *m = (mapping_t *)malloc(sizeof *m);
  if (!m) {
    munmap(base, map_length);
    throw_error(&c, "error", "ENOMEM", "out of memory");
    return NULL;
  }
  m->base = base;
  m->length = map_length;
  m->writable = writable;
  m->prev = NULL;
  m->next = live_mappings;
  if (live_mappings) live_mappings->prev = m;
  live_mappings = m;
  napi_status status = napi_create_external_arraybuffer(env, (uint8_t *)base + delta, (size_t)length,
                                                        unmap_finalizer, m, &result);
  if (status != napi_ok) {
    /* Node runs the finalizer itself when it cannot make the buffer (seen for lengths past V8's
     * ArrayBuffer limit): unmapping and freeing here too would free twice. The JS side refuses such
     * lengths before calling; this is the second line. */
    throw_error(&c, "error", NULL, "cannot create an external ArrayBuffer over '%s' (status %d)", path, (int)status);
    return NULL;
  }
  return result;
}

/* interleave(format, bytes, rows, cols, toInterleaved): converts a q8_0 / q4_0 matrix between
 * row order and the interleaved layout (gf.h) in place. */
static napi_value js_interleave(napi_env env, napi_callback_info info) {
  call_t c;
  if (!begin(&c, env, info, "interleave", 5)) return NULL;
  gf_format format = arg_format(&c, 0);
  int64_t rows = arg_count(&c, 2, "rows", MAX_DIM), cols = arg_count(&c, 3, "cols", MAX_DIM);
  check_block_cols(&c, format, cols, "cols");
  check_interleavable(&c, format, true);
  bool to_interleaved = arg_bool(&c, 4, "toInterleaved");
  view_t bytes = arg_view(&c, 1, "bytes", -1, (size_t)mul_checked(&c, rows, (int64_t)gf_row_bytes(format, cols), "rows * row bytes"));
  if (!c.failed && in_read_only_mapping(bytes.data, bytes.bytes))
    throw_error(&c, "type", NULL, "bytes lie in a read-only memory mapping: map the file with writable: true to convert it in place");
  if (c.failed) return NULL;
  return finish(&c, gf_interleave(format, bytes.data, rows, cols, to_interleaved));
}

/* ---- threads, levels, counters ---- */

static napi_value js_set_threads(napi_env env, napi_callback_info info) {
  call_t c;
  if (!begin(&c, env, info, "setThreads", 1)) return NULL;
  int64_t n = arg_count(&c, 0, "n", GF_MAX_THREADS);
  if (!c.failed && n < 1) throw_error(&c, "range", NULL, "n must be at least 1, got 0");
  if (c.failed) return NULL;
  gf_set_threads((int)n);
  return finish(&c, GF_OK);
}

static napi_value make_int(napi_env env, int64_t v) {
  napi_value r;
  napi_create_int64(env, v, &r);
  return r;
}

static napi_value make_string(napi_env env, const char *s) {
  napi_value r;
  napi_create_string_utf8(env, s, NAPI_AUTO_LENGTH, &r);
  return r;
}

static void set_bool(napi_env env, napi_value obj, const char *key, bool v) {
  napi_value b;
  napi_get_boolean(env, v, &b);
  napi_set_named_property(env, obj, key, b);
}

static napi_value js_threads(napi_env env, napi_callback_info info) {
  (void)info;
  return make_int(env, gf_threads());
}

static napi_value js_cpu_features(napi_env env, napi_callback_info info) {
  (void)info;
  const gf_cpu_features *f = gf_cpu();
  napi_value obj;
  napi_create_object(env, &obj);
  set_bool(env, obj, "avx2", f->avx2);
  set_bool(env, obj, "fma", f->fma);
  set_bool(env, obj, "f16c", f->f16c);
  set_bool(env, obj, "avx512f", f->avx512f);
  set_bool(env, obj, "avx512bw", f->avx512bw);
  set_bool(env, obj, "avx512vl", f->avx512vl);
  set_bool(env, obj, "avx512vnni", f->avx512vnni);
  set_bool(env, obj, "avx512bf16", f->avx512bf16);
  set_bool(env, obj, "osAvx", f->os_avx);
  set_bool(env, obj, "osAvx512", f->os_avx512);
  return obj;
}

static napi_value js_cpu_level(napi_env env, napi_callback_info info) {
  (void)info;
  return make_string(env, gf_level_name(gf_cpu_level()));
}

static int arg_kernel(call_t *c, size_t i) {
  char name[48];
  if (!arg_string(c, i, "kernel", name, sizeof name)) return -1;
  for (int k = 0; k < GF_KERNEL_COUNT; k++)
    if (strcmp(name, gf_kernel_name(k)) == 0) return k;
  throw_error(c, "range", NULL,
              "kernel must be a name from kernelNames() such as 'matmul.q4_0' or 'gemmF32', got '%s'", name);
  return -1;
}

static napi_value js_kernel_level(napi_env env, napi_callback_info info) {
  call_t c;
  if (!begin(&c, env, info, "kernelLevel", 1)) return NULL;
  int k = arg_kernel(&c, 0);
  if (c.failed) return NULL;
  return make_string(env, gf_level_name(gf_kernel_level(k)));
}

static napi_value js_set_level(napi_env env, napi_callback_info info) {
  call_t c;
  if (!begin(&c, env, info, "setLevel", 1)) return NULL;
  char name[16];
  if (!arg_string(&c, 0, "level", name, sizeof name)) return NULL;
  int level = gf_level_from_name(name);
  if (level < 0) {
    throw_error(&c, "range", NULL, "level must be one of scalar, avx2, avx512, got '%s'", name);
    return NULL;
  }
  gf_set_level_cap((gf_level)level);
  return finish(&c, GF_OK);
}

static napi_value js_level_cap(napi_env env, napi_callback_info info) {
  (void)info;
  return make_string(env, gf_level_name(gf_level_cap()));
}

static napi_value js_kernel_names(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value arr;
  napi_create_array_with_length(env, GF_KERNEL_COUNT, &arr);
  for (int k = 0; k < GF_KERNEL_COUNT; k++) napi_set_element(env, arr, (uint32_t)k, make_string(env, gf_kernel_name(k)));
  return arr;
}

static napi_value js_counters(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value obj;
  napi_create_object(env, &obj);
  for (int k = 0; k < GF_KERNEL_COUNT; k++) {
    napi_value per;
    napi_create_object(env, &per);
    for (int l = 0; l < GF_LEVEL_COUNT; l++)
      napi_set_named_property(env, per, gf_level_name((gf_level)l), make_int(env, (int64_t)gf_counter(k, (gf_level)l)));
    napi_set_named_property(env, obj, gf_kernel_name(k), per);
  }
  return obj;
}

static napi_value js_reset_counters(napi_env env, napi_callback_info info) {
  (void)info;
  gf_reset_counters();
  napi_value undefined;
  napi_get_undefined(env, &undefined);
  return undefined;
}

static napi_value js_row_bytes(napi_env env, napi_callback_info info) {
  call_t c;
  if (!begin(&c, env, info, "rowBytes", 2)) return NULL;
  gf_format format = arg_format(&c, 0);
  int64_t cols = arg_count(&c, 1, "cols", MAX_DIM);
  check_block_cols(&c, format, cols, "cols");
  if (c.failed) return NULL;
  return make_int(env, (int64_t)gf_row_bytes(format, cols));
}

NAPI_MODULE_INIT() {
  static const struct {
    const char *name;
    napi_callback fn;
  } fns[] = {
      {"quantize", js_quantize},         {"dequantize", js_dequantize},
      {"dequantizeRows", js_dequantize_rows}, {"matmul", js_matmul},
      {"gemmF32", js_gemm_f32},          {"mmapFile", js_mmap_file},
      {"setThreads", js_set_threads},    {"threads", js_threads},
      {"cpuFeatures", js_cpu_features},  {"cpuLevel", js_cpu_level},
      {"kernelLevel", js_kernel_level},  {"setLevel", js_set_level},
      {"levelCap", js_level_cap},        {"kernelNames", js_kernel_names},
      {"counters", js_counters},         {"resetCounters", js_reset_counters},
      {"rowBytes", js_row_bytes},        {"interleave", js_interleave},
      {"ssmScan", js_ssm_scan},          {"causalConv1d", js_causal_conv1d},
      {"ssmScanGrad", js_ssm_scan_grad},
      {"gatedRmsNorm", js_gated_rms_norm}, {"swiglu", js_swiglu},
      {"moeExperts", js_moe_experts},    {"attention", js_attention},
  };
  for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
    napi_value f;
    napi_create_function(env, fns[i].name, NAPI_AUTO_LENGTH, fns[i].fn, NULL, &f);
    napi_set_named_property(env, exports, fns[i].name, f);
  }
  return exports;
}
