/*
 * Per-file instruction-set targets: a SIMD source defines GF_TARGET (a string such as
 * "avx2,fma,f16c") and includes this, so only that file's functions may use those instructions
 * and the build's baseline flags stay generic x86-64. Pair with gf_target_end.h at the end.
 */
#define GF_PRAGMA_(x) _Pragma(#x)
#if defined(__clang__)
#define GF_TARGET_PUSH_(t) GF_PRAGMA_(clang attribute push(__attribute__((target(t))), apply_to = function))
GF_TARGET_PUSH_(GF_TARGET)
#elif defined(__GNUC__)
#pragma GCC push_options
#define GF_TARGET_PUSH_(t) GF_PRAGMA_(GCC target(t))
GF_TARGET_PUSH_(GF_TARGET)
#endif
#include <immintrin.h>
