// The one side-effect module of this package: makes every fused kernel and gradient known to tfjs.
// Registration is idempotent, so loading the package twice stays silent.
import { causalConv1dKernel } from './kernels/CausalConv1d';
import { gatedRmsNormKernel } from './kernels/GatedRmsNorm';
import { selectiveScanKernel } from './kernels/SelectiveScan';
import { selectiveScanGradKernel } from './kernels/SelectiveScanGrad';
import { selectiveStateUpdateKernel } from './kernels/SelectiveStateUpdate';

/** Every kernel this package defines, in one list. */
export const MAMBA_KERNELS = [
  selectiveScanKernel,
  selectiveScanGradKernel,
  selectiveStateUpdateKernel,
  causalConv1dKernel,
  gatedRmsNormKernel,
] as const;

for (const kernel of MAMBA_KERNELS) kernel.register();
