/**
 * Mamba-2 kernels for TensorFlow.js: the selective scan (SSD) and its one-token step, a causal
 * depthwise conv with a cache, the gated RMSNorm, and a Mamba-2 mixer built from them. Importing
 * the package registers the fused cpu and wasm kernels and their gradients.
 * @module ops-mamba
 */
import './register_kernels';

export { selectiveScan, type SelectiveScanArgs, type SelectiveScanOptions } from './ops/selective_scan';
export { selectiveStateUpdate, type SelectiveStateUpdateArgs } from './ops/selective_state_update';
export { causalConv1d, type CausalConv1dOptions } from './ops/causal_conv1d';
export { gatedRmsNorm, type GatedRmsNormOptions } from './ops/gated_rms_norm';
export { selectiveScanReference } from './ops/selective_scan_reference';
export { selectiveStateUpdateReference } from './ops/selective_state_update_reference';
export { causalConv1dReference } from './ops/causal_conv1d_reference';
export { gatedRmsNormReference } from './ops/gated_rms_norm_reference';
/** Core's, re-exported: the shape errors of every graniteflow package are one class. */
export { ShapeError } from '@graniteflow/core';
export { selectiveScanKernel } from './kernels/SelectiveScan';
export { selectiveScanGradKernel } from './kernels/SelectiveScanGrad';
export { selectiveStateUpdateKernel } from './kernels/SelectiveStateUpdate';
export { causalConv1dKernel } from './kernels/CausalConv1d';
export { gatedRmsNormKernel } from './kernels/GatedRmsNorm';
export { MAMBA_KERNELS } from './register_kernels';
export * from './kernel_names';
export {
  mambaConvDim,
  mambaInnerSize,
  mambaProjDim,
  validateMamba2Config,
  type Mamba2Config,
} from './modules/mamba2_config';
export { MambaCache } from './modules/mamba_cache';
export { DepthwiseConv1d } from './modules/depthwise_conv1d';
export { GatedRMSNorm } from './modules/gated_rms_norm_module';
export { Mamba2Mixer, type Mamba2ForwardOptions } from './modules/mamba2_mixer';
export { setSimdEnabled } from '@graniteflow/core';
