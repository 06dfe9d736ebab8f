import * as os from 'node:os';
import { headDim, mambaConvDim, type GraniteMoeHybridConfig } from '../models/granitemoehybrid/config';
import { GraniteMoeHybridForCausalLM } from '../models/granitemoehybrid/model';

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

/** Parameter counts from the config alone (building a module tree allocates no tensors). */
export function countParameters(cfg: GraniteMoeHybridConfig): { total: number; active: number } {
  const model = new GraniteMoeHybridForCausalLM(cfg);
  const total = model.parameterCount();
  const perExpert = 3 * cfg.hidden_size * cfg.intermediate_size;
  const inactive =
    cfg.num_local_experts > 0 ? cfg.num_hidden_layers * (cfg.num_local_experts - cfg.num_experts_per_tok) * perExpert : 0;
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

export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${n.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
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
