/**
 * Side-effect module: registers every fused kernel of @graniteflow/ops-moe (cpu and wasm) and their
 * gradients with tfjs. Idempotent. Imported by the package index.
 */
import { moeCombineKernel } from './kernels/MoeCombine';
import { moeDispatchKernel } from './kernels/MoeDispatch';
import { moeExpertsGemvKernel } from './kernels/MoeExpertsGemv';
import { moePackedExpertsKernel } from './kernels/MoePackedExperts';
import { moeGatherRowsKernel, moeScatterRowsKernel } from './kernels/MoeRows';
import { moeSwiGLUKernel } from './kernels/MoeSwiGLU';
import { moeTakeRowsKernel } from './kernels/MoeTakeRows';
import { moeTopKRouterKernel } from './kernels/MoeTopKRouter';

/** Every kernel of this package. */
export const MOE_KERNELS = [
  moeTopKRouterKernel,
  moeDispatchKernel,
  moeSwiGLUKernel,
  moeExpertsGemvKernel,
  moePackedExpertsKernel,
  moeCombineKernel,
  moeGatherRowsKernel,
  moeScatterRowsKernel,
  moeTakeRowsKernel,
] as const;

for (const kernel of MOE_KERNELS) kernel.register();
