/**
 * Sparse mixture-of-experts for TensorFlow.js: top-k router, sorted dispatch, grouped SwiGLU
 * experts (float32 or packed BF16 / Q8_0 / Q4_0 expert weights), combine, the shared MLP, the
 * load-balancing loss, and the Granite-named modules.
 * @module ops-moe
 */
import './register_kernels';

export * from './kernel_names';
/** Core's, re-exported: what the ops throw for arguments of the wrong shape. */
export { ShapeError } from '@graniteflow/core';
export { topKRouter, type TopKRouting } from './ops/top_k_router';
export { topKRouterReference } from './ops/top_k_router_reference';
export { moeDispatch, type MoeDispatchResult } from './ops/moe_dispatch';
export { moeDispatchReference } from './ops/moe_dispatch_reference';
export { moeCombine } from './ops/moe_combine';
export { moeCombineReference } from './ops/moe_combine_reference';
export { swiglu } from './ops/swiglu';
export { swigluReference } from './ops/swiglu_reference';
export { activate, gatedActivation, GATED_ACTIVATIONS, isGatedActivation, type GatedActivation } from './ops/gated_activation';
export { moeExperts, resolveMoeExpertsPath, type ExpertWeight, type MoeExpertsOptions, type MoeExpertsPath } from './ops/moe_experts';
export { moeExpertsReference } from './ops/moe_experts_reference';
export { groupedExperts } from './ops/grouped_experts';
export { moeExpertsWithDeltas, type ExpertDelta } from './ops/adapted_experts';
export { packedExpertsReference } from './ops/packed_experts_reference';
export { sparseMoe, sparseMoeFromRouterLogits, type SparseMoeResult } from './ops/sparse_moe';
export { sparseMoeReference } from './ops/sparse_moe_reference';
export { loadBalancingLoss } from './ops/load_balancing_loss';
export { ExpertLinear, MoeRouter, SparseMoE, type SparseMoEConfig } from './modules/sparse_moe';
export { SharedMLP, type SharedMLPConfig } from './modules/shared_mlp';
export { MOE_KERNELS } from './register_kernels';
export { EXPERT_GEMV_SIMD_CALL, OPS_MOE_SIMD_MODULES } from './kernels/simd/expert_gemv_simd';
