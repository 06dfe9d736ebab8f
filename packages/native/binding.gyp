{
  "targets": [
    {
      "target_name": "graniteflow_native",
      "sources": [
        "csrc/addon.c",
        "csrc/cpu.c",
        "csrc/pool.c",
        "csrc/quant.c",
        "csrc/quant_avx2.c",
        "csrc/quant_avx512.c",
        "csrc/matmul.c",
        "csrc/matmul_q_avx2.c",
        "csrc/matmul_q_avx512.c",
        "csrc/interleave.c",
        "csrc/matmul_q16_avx512.c",
        "csrc/matmul_f_avx2.c",
        "csrc/matmul_f_avx512.c",
        "csrc/gemm.c",
        "csrc/gemm_avx2.c",
        "csrc/gemm_avx512.c",
        "csrc/ssm.c",
        "csrc/ssm_avx2.c",
        "csrc/ssm_avx512.c",
        "csrc/ssm_grad.c",
        "csrc/act.c",
        "csrc/act_avx2.c",
        "csrc/act_avx512.c",
        "csrc/moe.c",
        "csrc/attention.c",
        "csrc/attention_avx2.c",
        "csrc/attention_avx512.c"
      ],
      "defines": ["_GNU_SOURCE", "NAPI_VERSION=8"],
      "cflags": ["-std=c11", "-O3", "-fvisibility=hidden", "-ffp-contract=off"],
      "libraries": ["-lm", "-lpthread"],
      "xcode_settings": {
        "OTHER_CFLAGS": ["-std=c11", "-O3", "-fvisibility=hidden", "-ffp-contract=off"]
      }
    }
  ]
}
