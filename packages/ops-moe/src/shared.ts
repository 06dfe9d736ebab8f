/**
 * Backend-free math of the ops-moe kernels over flat typed arrays (no tfjs engine, no side
 * effects): usable as an oracle, or to run tiny shapes outside tfjs.
 * @module shared
 */
export { topKRouterImpl } from './kernels/MoeTopKRouter_impl';
export { moeDispatchImpl } from './kernels/MoeDispatch_impl';
export { moeCombineImpl } from './kernels/MoeCombine_impl';
export { gatherRowsImpl, scatterRowsImpl } from './kernels/MoeRows_impl';
export { silu, swigluImpl } from './kernels/MoeSwiGLU_impl';
export { jsMatVec, moeExpertsGemvImpl, type ExpertDims, type MatVec } from './kernels/MoeExpertsGemv_impl';
