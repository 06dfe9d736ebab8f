import * as os from 'node:os';
import { headDim, mambaConvDim, mambaInnerSize, useMoe, type GraniteMoeHybridConfig } from '../models/granitemoehybrid/config';

/** What a model needs in memory, in bytes (float32 compute: tfjs holds no bf16). */
export interface MemoryEstimate {
  parameters: number;
  /** Routed-expert parameters not used per token (total − active). */
  activeParameters: number;
  weightBytes: number;
  /** Mamba conv + SSM state of one sequence. */
  stateBytesPerSequence: number;
  /** Attention keys and values of one token of one sequence. */
  kvBytesPerToken: number;
  contextLength: number;
  batchSize: number;
  /** weights + state + KV for the context and batch. */
  totalBytes: number;
}

/** Weights of a Linear layer `inFeatures → outFeatures` (core's Linear: [out, in] plus an optional bias). */
function linearParameters(inFeatures: number, outFeatures: number, bias: boolean): number {
  return inFeatures * outFeatures + (bias ? outFeatures : 0);
}

/**
 * Parameter counts from the config alone, by formula: nothing is built or allocated, so an
 * enormous config costs no more than a small one. Each term is the parameter shapes of one
 * module of `GraniteMoeHybridForCausalLM` (the tests check that both agree on every preset).
 */
export function countParameters(cfg: GraniteMoeHybridConfig): { total: number; active: number } {
  const hidden = cfg.hidden_size;
  const mambaLayers = cfg.layer_types.filter((t) => t === 'mamba').length;
  const attentionLayers = cfg.num_hidden_layers - mambaLayers;
  // Mamba2Mixer: in_proj → [z, xBC, dt], depthwise conv1d, dt_bias / A_log / D, gated norm, out_proj.
  const inner = mambaInnerSize(cfg);
  const convDim = mambaConvDim(cfg);
  const heads = cfg.mamba_n_heads;
  const mamba =
    linearParameters(hidden, inner + convDim + heads, cfg.mamba_proj_bias) +
    convDim * cfg.mamba_d_conv +
    (cfg.mamba_conv_bias ? convDim : 0) +
    3 * heads +
    inner +
    linearParameters(inner, hidden, cfg.mamba_proj_bias);
  // GraniteAttention: q, k, v, o projections (no head_dim key: the heads split hidden_size).
  const queryWidth = cfg.num_attention_heads * headDim(cfg);
  const keyValueWidth = cfg.num_key_value_heads * headDim(cfg);
  const attention =
    attentionLayers === 0
      ? 0
      : linearParameters(hidden, queryWidth, cfg.attention_bias) +
        2 * linearParameters(hidden, keyValueWidth, cfg.attention_bias) +
        linearParameters(queryWidth, hidden, cfg.attention_bias);
  // Every layer: two RMSNorms, the shared SwiGLU MLP, and (MoE) the router plus stacked experts.
  const perExpert = 3 * hidden * cfg.intermediate_size;
  const experts = useMoe(cfg) ? hidden * cfg.num_local_experts + cfg.num_local_experts * perExpert : 0;
  const everyLayer = 2 * hidden + 3 * hidden * cfg.shared_intermediate_size + experts;
  const embeddings = cfg.vocab_size * hidden;
  const total =
    embeddings +
    hidden + // final norm
    (cfg.tie_word_embeddings ? 0 : embeddings) +
    cfg.num_hidden_layers * everyLayer +
    mambaLayers * mamba +
    attentionLayers * attention;
  const inactive = useMoe(cfg) ? cfg.num_hidden_layers * (cfg.num_local_experts - cfg.num_experts_per_tok) * perExpert : 0;
  return { total, active: total - inactive };
}

/** Memory for the weights plus caches of `batchSize` sequences of `contextLength` tokens. */
export function estimateMemory(
  cfg: GraniteMoeHybridConfig,
  { contextLength = 4096, batchSize = 1 }: { contextLength?: number; batchSize?: number } = {},
): MemoryEstimate {
  const { total, active } = countParameters(cfg);
  const mambaLayers = cfg.layer_types.filter((t) => t === 'mamba').length;
  const attentionLayers = cfg.num_hidden_layers - mambaLayers;
  const stateFloats =
    mambaLayers *
    ((cfg.mamba_d_conv - 1) * mambaConvDim(cfg) + cfg.mamba_n_heads * cfg.mamba_d_head * cfg.mamba_d_state);
  const kvFloats = attentionLayers * 2 * cfg.num_key_value_heads * headDim(cfg);
  const weightBytes = 4 * total;
  const stateBytesPerSequence = 4 * stateFloats;
  const kvBytesPerToken = 4 * kvFloats;
  return {
    parameters: total,
    activeParameters: active,
    weightBytes,
    stateBytesPerSequence,
    kvBytesPerToken,
    contextLength,
    batchSize,
    totalBytes: weightBytes + batchSize * (stateBytesPerSequence + contextLength * kvBytesPerToken),
  };
}

/** The wasm heap stops at 4 GiB; ~3 GiB of tensors fit in practice (DESIGN §2). */
export const WASM_TENSOR_BUDGET = 3 * 1024 ** 3;

/** Thrown before loading when a model cannot fit; the message says what to do instead. */
export class InsufficientMemoryError extends Error {
  override name = 'InsufficientMemoryError';

  constructor(
    message: string,
    readonly estimate: MemoryEstimate,
  ) {
    super(message);
  }
}

const BYTE_UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB', 'EiB'];
/** Sizes from here on print as "over 1024 EiB": no machine has them, and the digits would mean nothing. */
const LARGEST_PRINTED_BYTES = 1024 ** BYTE_UNITS.length;

/** A byte count for people: `512 B`, `3.2 GiB`; never `Infinity` or `NaN`. */
export function formatBytes(n: number): string {
  if (Number.isNaN(n)) return 'an unknown size';
  if (n >= LARGEST_PRINTED_BYTES) return `over 1024 ${BYTE_UNITS[BYTE_UNITS.length - 1]}`;
  let i = 0;
  while (n >= 1024 && i < BYTE_UNITS.length - 1) {
    n /= 1024;
    i++;
  }
  return `${n.toFixed(i === 0 ? 0 : 1)} ${BYTE_UNITS[i]}`;
}

/**
 * Refuses, with the reason and a fix, a model whose estimate exceeds what `backend` can hold
 * (the wasm heap) or the machine's free memory.
 */
export function assertFitsInMemory(
  estimate: MemoryEstimate,
  backend: string,
  freeBytes: number = os.freemem(),
): void {
  const need = formatBytes(estimate.totalBytes);
  const detail = `${formatBytes(estimate.weightBytes)} of float32 weights (${(estimate.parameters / 1e9).toFixed(2)} B parameters) + ${formatBytes(estimate.totalBytes - estimate.weightBytes)} of state and KV cache for ${estimate.batchSize} × ${estimate.contextLength} tokens`;
  if (backend === 'wasm' && estimate.totalBytes > WASM_TENSOR_BUDGET) {
    throw new InsufficientMemoryError(
      `This model needs about ${need} (${detail}), more than the wasm backend can hold (its heap stops at 4 GiB, about ${formatBytes(WASM_TENSOR_BUDGET)} of tensors). ` +
        `Use the cpu backend (--backend cpu, or GRANITEFLOW_BACKEND=cpu) if the machine has the memory, install @tensorflow/tfjs-node for the tensorflow backend, choose a smaller model, or lower the context length.`,
      estimate,
    );
  }
  if (estimate.totalBytes > freeBytes) {
    throw new InsufficientMemoryError(
      `This model needs about ${need} (${detail}) but only ${formatBytes(freeBytes)} of memory is free. ` +
        `Close other programs, choose a smaller model, or lower the context length.`,
      estimate,
    );
  }
}
