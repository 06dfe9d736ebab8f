/* 4x4 dword transpose for the AVX-512 kernels; include after gf_target.h (it needs the target). */
#ifndef GF_TRANSPOSE_AVX512_H
#define GF_TRANSPOSE_AVX512_H

/* Inside each 128-bit lane i: t[j] dword m = a_m dword j (four 4x4 transposes at once). */
static inline void transpose4(__m512i a0, __m512i a1, __m512i a2, __m512i a3, __m512i t[4]) {
  __m512i t0 = _mm512_unpacklo_epi32(a0, a1), t1 = _mm512_unpackhi_epi32(a0, a1);
  __m512i t2 = _mm512_unpacklo_epi32(a2, a3), t3 = _mm512_unpackhi_epi32(a2, a3);
  t[0] = _mm512_unpacklo_epi64(t0, t2);
  t[1] = _mm512_unpackhi_epi64(t0, t2);
  t[2] = _mm512_unpacklo_epi64(t1, t3);
  t[3] = _mm512_unpackhi_epi64(t1, t3);
}

#endif
