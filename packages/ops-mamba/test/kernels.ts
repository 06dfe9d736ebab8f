// Test-side re-exports of the kernel handles and core's Kernel type.
export type { Kernel } from '@graniteflow/core';
export {
  causalConv1dKernel,
  gatedRmsNormKernel,
  selectiveScanGradKernel,
  selectiveScanKernel,
  selectiveStateUpdateKernel,
} from '../src';
