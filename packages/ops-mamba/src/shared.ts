/**
 * The backend-free math of the fused kernels over Float32Arrays, with no side effects: usable as
 * an oracle in tests or by other backends for tiny shapes. Import as `@graniteflow/ops-mamba/shared`.
 * @module shared
 */
export { selectiveScanImpl, type ScanArrays, type ScanDims, type ScanOutputs } from './kernels/SelectiveScan_impl';
export { selectiveScanGradImpl, type ScanCotangents, type ScanGradients } from './kernels/SelectiveScanGrad_impl';
export { selectiveStateUpdateImpl, type StateUpdateArrays } from './kernels/SelectiveStateUpdate_impl';
export { causalConv1dImpl, type ConvArrays, type ConvDims } from './kernels/CausalConv1d_impl';
export { gatedRmsNormImpl } from './kernels/GatedRmsNorm_impl';
export { discretizeDt, silu, softplus } from './kernels/discretize_impl';
