/* CPU feature detection, level selection and per-kernel call counters. */
#include <stdatomic.h>
#include <stdlib.h>

#include "gf_internal.h"

#if GF_X86
#include <cpuid.h>
#endif

static const char *const format_names[GF_FMT_COUNT] = {"f32", "bf16", "q8_0", "q4_0"};
static const char *const level_names[GF_LEVEL_COUNT] = {"scalar", "avx2", "avx512"};
static const char *const family_names[GF_FAMILY_COUNT] = {"quantize", "dequantize",
                                                          "dequantizeRows", "matmul", "gemmF32"};

const char *gf_format_name(gf_format format) {
  return (unsigned)format < GF_FMT_COUNT ? format_names[format] : "?";
}
const char *gf_level_name(gf_level level) {
  return (unsigned)level < GF_LEVEL_COUNT ? level_names[level] : "?";
}
int gf_format_from_name(const char *name) {
  for (int i = 0; i < GF_FMT_COUNT; i++)
    if (strcmp(name, format_names[i]) == 0) return i;
  return -1;
}
int gf_level_from_name(const char *name) {
  for (int i = 0; i < GF_LEVEL_COUNT; i++)
    if (strcmp(name, level_names[i]) == 0) return i;
  return -1;
}

size_t gf_row_bytes(gf_format format, int64_t cols) {
  switch (format) {
    case GF_FMT_F32: return (size_t)cols * 4;
    case GF_FMT_BF16: return (size_t)cols * 2;
    case GF_FMT_Q8_0: return (size_t)(cols / GF_BLOCK) * GF_Q8_0_BLOCK_BYTES;
    case GF_FMT_Q4_0: return (size_t)(cols / GF_BLOCK) * GF_Q4_0_BLOCK_BYTES;
    default: return 0;
  }
}

static gf_cpu_features features;
static gf_level cpu_level = GF_LEVEL_SCALAR;
static atomic_int level_cap = GF_LEVEL_AVX512;
static atomic_uint_fast64_t counters[GF_KERNEL_COUNT][GF_LEVEL_COUNT];

#if GF_X86
static uint64_t read_xcr0(void) {
  uint32_t eax, edx;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return ((uint64_t)edx << 32) | eax;
}
#endif

static void detect(void) {
#if GF_X86
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return;
  bool osxsave = (c >> 27) & 1, avx = (c >> 28) & 1;
  features.fma = (c >> 12) & 1;
  features.f16c = (c >> 29) & 1;
  if (osxsave && avx) {
    uint64_t xcr0 = read_xcr0();
    features.os_avx = (xcr0 & 0x6) == 0x6;      /* SSE + AVX state */
    features.os_avx512 = (xcr0 & 0xe6) == 0xe6; /* + opmask, ZMM_Hi256, Hi16_ZMM */
  }
  if (__get_cpuid_max(0, NULL) >= 7) {
    __cpuid_count(7, 0, a, b, c, d);
    features.avx2 = (b >> 5) & 1;
    features.avx512f = (b >> 16) & 1;
    features.avx512bw = (b >> 30) & 1;
    features.avx512vl = (b >> 31) & 1;
    features.avx512vnni = (c >> 11) & 1;
    __cpuid_count(7, 1, a, b, c, d);
    features.avx512bf16 = (a >> 5) & 1;
  }
  if (features.os_avx && features.avx2 && features.fma && features.f16c) cpu_level = GF_LEVEL_AVX2;
  if (cpu_level == GF_LEVEL_AVX2 && features.os_avx512 && features.avx512f && features.avx512bw &&
      features.avx512vl && features.avx512vnni)
    cpu_level = GF_LEVEL_AVX512;
#endif
}

__attribute__((constructor)) static void gf_cpu_init(void) { detect(); }

const gf_cpu_features *gf_cpu(void) { return &features; }
gf_level gf_cpu_level(void) { return cpu_level; }
void gf_set_level_cap(gf_level cap) { atomic_store(&level_cap, (int)cap); }
gf_level gf_level_cap(void) { return (gf_level)atomic_load(&level_cap); }

int gf_kernel_index(gf_family family, gf_format format) {
  if (family == GF_FAMILY_GEMM_F32) return GF_KERNEL_GEMM_F32;
  return (int)family * GF_FMT_COUNT + (int)format;
}

static char kernel_names[GF_KERNEL_COUNT][32];
/* The single-entry kernels after gemmF32. */
static const char *const single_names[GF_KERNEL_COUNT - GF_KERNEL_SSM_SCAN] = {"ssmScan", "causalConv1d",
                                                                             "gatedRmsNorm", "swiglu", "moeExperts",
                                                                             "attention", "ssmScanGrad"};

/* "family.format" for every kernel but gemmF32, built once at load. */
__attribute__((constructor)) static void gf_names_init(void) {
  for (int k = 0; k < GF_KERNEL_COUNT; k++) {
    if (k >= GF_KERNEL_SSM_SCAN) {
      const char *name = single_names[k - GF_KERNEL_SSM_SCAN];
      memcpy(kernel_names[k], name, strlen(name) + 1);
      continue;
    }
    const char *family = family_names[k / GF_FMT_COUNT];
    if (k == GF_KERNEL_GEMM_F32) {
      memcpy(kernel_names[k], family, strlen(family) + 1);
      continue;
    }
    const char *format = format_names[k % GF_FMT_COUNT];
    size_t n = strlen(family), m = strlen(format);
    memcpy(kernel_names[k], family, n);
    kernel_names[k][n] = '.';
    memcpy(kernel_names[k] + n + 1, format, m + 1);
  }
}

const char *gf_kernel_name(int kernel) {
  return kernel >= 0 && kernel < GF_KERNEL_COUNT ? kernel_names[kernel] : "?";
}

/* The highest level implemented for a kernel in this build. */
static gf_level implemented_level(int kernel) {
#if GF_X86
  if (kernel == GF_KERNEL_GEMM_F32 || kernel == GF_KERNEL_SSM_SCAN || kernel == GF_KERNEL_SWIGLU ||
      kernel == GF_KERNEL_MOE_EXPERTS || kernel == GF_KERNEL_ATTENTION)
    return GF_LEVEL_AVX512;
  /* Short streaming loops the compiler vectorizes at the baseline. */
  if (kernel == GF_KERNEL_CAUSAL_CONV1D || kernel == GF_KERNEL_GATED_RMS_NORM) return GF_LEVEL_SCALAR;
  gf_format format = (gf_format)(kernel % GF_FMT_COUNT);
  gf_family family = (gf_family)(kernel / GF_FMT_COUNT);
  /* f32 quantize / dequantize are copies: nothing for SIMD to add. */
  if (format == GF_FMT_F32 && family != GF_FAMILY_MATMUL) return GF_LEVEL_SCALAR;
  return GF_LEVEL_AVX512;
#else
  (void)kernel;
  return GF_LEVEL_SCALAR;
#endif
}

gf_level gf_kernel_level(int kernel) {
  gf_level level = cpu_level;
  gf_level cap = gf_level_cap();
  gf_level impl = implemented_level(kernel);
  if (cap < level) level = cap;
  if (impl < level) level = impl;
  return level;
}

void gf_count(int kernel, gf_level level) {
  atomic_fetch_add_explicit(&counters[kernel][level], 1, memory_order_relaxed);
}
uint64_t gf_counter(int kernel, gf_level level) {
  return atomic_load_explicit(&counters[kernel][level], memory_order_relaxed);
}
void gf_reset_counters(void) {
  for (int k = 0; k < GF_KERNEL_COUNT; k++)
    for (int l = 0; l < GF_LEVEL_COUNT; l++) atomic_store(&counters[k][l], 0);
}
