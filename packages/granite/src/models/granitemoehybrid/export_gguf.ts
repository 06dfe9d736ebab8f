/**
 * A Granite 4.0 hybrid checkpoint folder as a GGUF file llama.cpp loads as `granitehybrid`: the
 * hyper-parameters llama.cpp reads for that architecture, the tensors renamed and reshaped the way
 * llama.cpp's converter does (GraniteHybridModel / Mamba2Model / GraniteMoeModel), the tokenizer,
 * and the 2-D weights in the requested format. Tensors stream from the safetensors shards to the
 * GGUF in bounded pieces, so a checkpoint larger than memory converts.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  Checkpoint,
  decodeFloatsInto,
  dequantizeRowsInto,
  floatToHalf,
  ggufValue,
  isFloatDtype,
  packedRowBytes,
  quantizeRowsInto,
  writeGguf,
  type FloatDtype,
  type GgmlType,
  type GgufTensor,
  type GgufValue,
  type SafetensorsDtype,
  type SafetensorsTensorInfo,
} from '@graniteflow/core';
import { byteFallbackVocabMetadata, ggufVocabMetadata } from '../../gguf/gguf_vocab';
import { readConfigJson, readModelConfig } from '../../loading/model_files';
import { headDim, mambaInnerSize, useMoe, type GraniteMoeHybridConfig } from './config';
import { GraniteMoeHybridForCausalLM } from './model';

/** Storage of the 2-D weights in the GGUF (norms, biases, conv, router and SSM vectors stay f32). */
export type GgufExportFormat = 'f32' | 'bf16' | 'q8_0' | 'q4_0';

export const GGUF_EXPORT_FORMATS: readonly GgufExportFormat[] = ['f32', 'bf16', 'q8_0', 'q4_0'];

/** Options of {@link exportGguf}. */
export interface ExportGgufOptions {
  /** Default `'bf16'`: lossless for the released (bf16) checkpoints. */
  format?: GgufExportFormat;
  /** `general.name` (default: the folder's name). */
  name?: string;
  /**
   * Export a checkpoint with `mamba_n_groups` > 1 although llama.cpp then computes a different
   * model: it RMS-normalises the Mamba gated norm per group, Hugging Face over all channels at once
   * (model guide: Pitfalls, P12). Every released Granite 4.0 model has one group. Default false.
   */
  allowGroupedNorm?: boolean;
  /** Called after each tensor is written. */
  onProgress?: (progress: { tensor: string; done: number; total: number }) => void;
}

/** What {@link exportGguf} wrote. */
export interface ExportGgufResult {
  path: string;
  format: GgufExportFormat;
  tensors: number;
  bytes: number;
  /**
   * The GGUF's vocabulary: the folder's tokenizer.json, or (a folder without one) a stand-in of the
   * 256 byte-level bytes, enough for llama.cpp to load the model and run token ids.
   */
  tokenizer: 'tokenizer.json' | 'bytes';
}

/** A checkpoint that cannot be written as a llama.cpp granitehybrid GGUF, and why. */
export class GgufExportError extends Error {
  override name = 'GgufExportError';
}

/** llama.cpp's `llama_ftype` per format (`general.file_type`). */
const FILE_TYPE: Record<GgufExportFormat, number> = { f32: 0, q4_0: 2, q8_0: 7, bf16: 32 };

const ARCH = 'granitehybrid';

/** Rows [rowStart, rowStart + rows) of a source tensor seen as rows of the GGUF tensor's row length. */
interface Segment {
  source: string;
  rowStart: number;
  rows: number;
}

/** One GGUF tensor: where its rows come from and how they are stored. */
export interface GgufTensorPlan {
  name: string;
  type: GgmlType;
  /** Row-major; the last dimension is the row. */
  shape: number[];
  segments: Segment[];
  /** Applied to every value before storing (A = −exp(A_log)). */
  transform?: (v: number) => number;
}

/** The converter's rule (and llama-quantize's): which tensors stay float32 whatever the format. */
function tensorType(name: string, shape: readonly number[], format: GgufExportFormat): GgmlType {
  if (shape.length <= 1 || name.endsWith('_norm.weight') || !name.endsWith('.weight')) return 'F32';
  if (name.endsWith('.ssm_conv1d.weight') || name.endsWith('.ffn_gate_inp.weight')) return 'F32';
  const row = shape[shape.length - 1];
  switch (format) {
    case 'f32':
      return 'F32';
    case 'bf16':
      return 'BF16';
    case 'q8_0':
    case 'q4_0':
      // The converter falls back to F16 when a row is not whole 32-weight blocks.
      return row % 32 === 0 ? (format === 'q8_0' ? 'Q8_0' : 'Q4_0') : 'F16';
  }
}

/** Why llama.cpp's granitehybrid would compute something else than Hugging Face for this config, or null. */
function unsupportedReason(cfg: GraniteMoeHybridConfig, allowGroupedNorm: boolean): string | null {
  if (!cfg.layer_types.includes('mamba')) {
    return 'has no Mamba layers; llama.cpp runs such a model as its "granite" / "granitemoe" architecture, which this exporter does not write';
  }
  if (mambaInnerSize(cfg) !== 2 * cfg.hidden_size) {
    return `has a Mamba inner size mamba_n_heads × mamba_d_head = ${mambaInnerSize(cfg)}, but llama.cpp's granitehybrid supports only 2 × hidden_size = ${2 * cfg.hidden_size}`;
  }
  if (cfg.mamba_proj_bias) return "has mamba_proj_bias: true, but llama.cpp's granitehybrid has no in_proj / out_proj biases";
  if (cfg.position_embedding_type === 'rope') {
    return 'has position_embedding_type "rope", but llama.cpp\'s converter turns RoPE off for every hybrid Granite model, so the GGUF would run without it';
  }
  const [lo, hi] = cfg.time_step_limit;
  if (lo > 0 || Number.isFinite(hi)) {
    return `clamps dt to time_step_limit [${lo}, ${hi}], which llama.cpp does not do`;
  }
  if (cfg.mamba_n_groups > 1 && !allowGroupedNorm) {
    return `has mamba_n_groups = ${cfg.mamba_n_groups}: llama.cpp normalises the Mamba gated norm per group, Hugging Face over all ${mambaInnerSize(cfg)} channels, so the GGUF would compute a different model (pass allowGroupedNorm to export it anyway)`;
  }
  return null;
}

/**
 * The GGUF tensors of a config, from the checkpoint tensor shapes `shapeOf` reports (the names of
 * graniteflow's model skeleton, which equal the Hugging Face keys).
 */
export function planGgufTensors(
  cfg: GraniteMoeHybridConfig,
  format: GgufExportFormat,
  shapeOf: (name: string) => readonly number[],
): GgufTensorPlan[] {
  const plans: GgufTensorPlan[] = [];
  const rowsOf = (shape: readonly number[]) => shape.slice(0, -1).reduce((a, b) => a * b, 1);
  /** The whole source tensor, viewed as `shape` (same element order). */
  const whole = (name: string, source: string, shape?: number[], transform?: (v: number) => number) => {
    const src = shapeOf(source);
    const out = shape ?? [...src];
    plans.push({
      name,
      type: tensorType(name, out, format),
      shape: out,
      segments: [{ source, rowStart: 0, rows: rowsOf(out) }],
      transform,
    });
  };
  /** The first (`half` 0) or second half of every `per`-row block of a source's rows (gate / up). */
  const halves = (name: string, source: string, half: 0 | 1) => {
    const src = shapeOf(source);
    const cols = src[src.length - 1];
    const outer = src.length === 3 ? src[0] : 1;
    const per = src[src.length - 2];
    const width = per / 2;
    const segments = Array.from({ length: outer }, (_, e) => ({ source, rowStart: e * per + half * width, rows: width }));
    const shape = src.length === 3 ? [outer, width, cols] : [width, cols];
    plans.push({ name, type: tensorType(name, shape, format), shape, segments });
  };

  whole('token_embd.weight', 'model.embed_tokens.weight');
  const moe = useMoe(cfg);
  const dIn = mambaInnerSize(cfg);
  const G = cfg.mamba_n_groups;
  cfg.layer_types.forEach((type, i) => {
    const hf = `model.layers.${i}`;
    const blk = `blk.${i}`;
    whole(`${blk}.attn_norm.weight`, `${hf}.input_layernorm.weight`);
    if (type === 'mamba') {
      const m = `${hf}.mamba`;
      const Hm = cfg.mamba_n_heads;
      whole(`${blk}.ssm_in.weight`, `${m}.in_proj.weight`);
      const [convDim, , K] = shapeOf(`${m}.conv1d.weight`);
      whole(`${blk}.ssm_conv1d.weight`, `${m}.conv1d.weight`, [convDim, K]);
      if (cfg.mamba_conv_bias) whole(`${blk}.ssm_conv1d.bias`, `${m}.conv1d.bias`);
      whole(`${blk}.ssm_dt.bias`, `${m}.dt_bias`);
      // llama.cpp keeps A itself, as [Hm, 1] like Mamba-1's A (and D alike, to broadcast).
      whole(`${blk}.ssm_a`, `${m}.A_log`, [Hm, 1], (v) => -Math.exp(v));
      whole(`${blk}.ssm_d`, `${m}.D`, [Hm, 1]);
      whole(`${blk}.ssm_norm.weight`, `${m}.norm.weight`, [G, dIn / G]);
      whole(`${blk}.ssm_out.weight`, `${m}.out_proj.weight`);
    } else {
      const a = `${hf}.self_attn`;
      for (const [proj, gguf] of [
        ['q_proj', 'attn_q'],
        ['k_proj', 'attn_k'],
        ['v_proj', 'attn_v'],
        ['o_proj', 'attn_output'],
      ]) {
        whole(`${blk}.${gguf}.weight`, `${a}.${proj}.weight`);
        if (cfg.attention_bias) whole(`${blk}.${gguf}.bias`, `${a}.${proj}.bias`);
      }
    }
    whole(`${blk}.ffn_norm.weight`, `${hf}.post_attention_layernorm.weight`);
    const shared = `${hf}.shared_mlp`;
    if (moe) {
      const e = `${hf}.block_sparse_moe`;
      whole(`${blk}.ffn_gate_inp.weight`, `${e}.router.layer.weight`);
      halves(`${blk}.ffn_gate_exps.weight`, `${e}.input_linear.weight`, 0);
      halves(`${blk}.ffn_up_exps.weight`, `${e}.input_linear.weight`, 1);
      whole(`${blk}.ffn_down_exps.weight`, `${e}.output_linear.weight`);
      halves(`${blk}.ffn_gate_shexp.weight`, `${shared}.input_linear.weight`, 0);
      halves(`${blk}.ffn_up_shexp.weight`, `${shared}.input_linear.weight`, 1);
      whole(`${blk}.ffn_down_shexp.weight`, `${shared}.output_linear.weight`);
    } else {
      // Dense models: the shared MLP is llama.cpp's plain FFN.
      halves(`${blk}.ffn_gate.weight`, `${shared}.input_linear.weight`, 0);
      halves(`${blk}.ffn_up.weight`, `${shared}.input_linear.weight`, 1);
      whole(`${blk}.ffn_down.weight`, `${shared}.output_linear.weight`);
    }
  });
  whole('output_norm.weight', 'model.norm.weight');
  if (!cfg.tie_word_embeddings) whole('output.weight', 'lm_head.weight');
  return plans;
}

/** The hyper-parameters llama.cpp reads for granitehybrid (llama-model.cpp and the converter). */
function architectureMetadata(cfg: GraniteMoeHybridConfig, format: GgufExportFormat, name: string): [string, GgufValue][] {
  const k = (key: string) => `${ARCH}.${key}`;
  const moe = useMoe(cfg);
  return [
    ['general.architecture', ggufValue.string(ARCH)],
    ['general.type', ggufValue.string('model')],
    ['general.name', ggufValue.string(name)],
    ['general.file_type', ggufValue.u32(FILE_TYPE[format])],
    [k('vocab_size'), ggufValue.u32(cfg.vocab_size)],
    // The converter writes 2^20 for the NoPE hybrids: no position limit.
    [k('context_length'), ggufValue.u32(2 ** 20)],
    [k('embedding_length'), ggufValue.u32(cfg.hidden_size)],
    [k('block_count'), ggufValue.u32(cfg.num_hidden_layers)],
    // llama.cpp sizes the dense FFN by feed_forward_length; a dense model's FFN is the shared MLP,
    // whose width is shared_intermediate_size (the converter writes intermediate_size, which
    // matches only when the two are equal).
    [k('feed_forward_length'), ggufValue.u32(moe ? cfg.intermediate_size : cfg.shared_intermediate_size)],
    [k('attention.head_count'), ggufValue.u32(cfg.num_attention_heads)],
    // Per layer; 0 marks a recurrent (Mamba) layer.
    [
      k('attention.head_count_kv'),
      ggufValue.array(
        'i32',
        cfg.layer_types.map((t) => (t === 'attention' ? cfg.num_key_value_heads : 0)),
      ),
    ],
    [k('attention.layer_norm_rms_epsilon'), ggufValue.f32(cfg.rms_norm_eps)],
    [k('attention.scale'), ggufValue.f32(cfg.attention_multiplier)],
    [k('embedding_scale'), ggufValue.f32(cfg.embedding_multiplier)],
    [k('residual_scale'), ggufValue.f32(cfg.residual_multiplier)],
    [k('logit_scale'), ggufValue.f32(cfg.logits_scaling)],
    [k('rope.freq_base'), ggufValue.f32(cfg.rope_theta)],
    [k('rope.dimension_count'), ggufValue.u32(headDim(cfg))],
    // granitehybrid applies RoPE unless this says otherwise.
    [k('rope.scaling.finetuned'), ggufValue.bool(false)],
    [k('expert_count'), ggufValue.u32(moe ? cfg.num_local_experts : 0)],
    // llama.cpp refuses experts used without experts; dense configs may carry a leftover top-k.
    [k('expert_used_count'), ggufValue.u32(moe ? cfg.num_experts_per_tok : 0)],
    [k('expert_shared_feed_forward_length'), ggufValue.u32(cfg.shared_intermediate_size)],
    [k('ssm.conv_kernel'), ggufValue.u32(cfg.mamba_d_conv)],
    [k('ssm.state_size'), ggufValue.u32(cfg.mamba_d_state)],
    [k('ssm.group_count'), ggufValue.u32(cfg.mamba_n_groups)],
    [k('ssm.inner_size'), ggufValue.u32(mambaInnerSize(cfg))],
    // llama.cpp reads the SSM head count from this key.
    [k('ssm.time_step_rank'), ggufValue.u32(cfg.mamba_n_heads)],
  ];
}

/** Source bytes read per piece: what the export holds of a tensor at a time (plus its encoding). */
const PIECE_BYTES = 4 << 20;

const SOURCE_BYTES: Record<FloatDtype, number> = { F32: 4, BF16: 2, F16: 2 };

/** Reads byte ranges of tensors from their shard files, one descriptor per shard. */
class ShardReader {
  private readonly fds = new Map<string, number>();

  read(file: string, position: number, dst: Uint8Array): void {
    let fd = this.fds.get(file);
    if (fd === undefined) {
      fd = fs.openSync(file, 'r');
      this.fds.set(file, fd);
    }
    let done = 0;
    while (done < dst.length) {
      const got = fs.readSync(fd, dst, done, dst.length - done, position + done);
      if (got === 0) throw new GgufExportError(`${file}: the file ended while reading tensor data at byte ${position + done}.`);
      done += got;
    }
  }

  close(): void {
    for (const fd of this.fds.values()) fs.closeSync(fd);
    this.fds.clear();
  }
}

/** Encodes float32 rows as a GGUF tensor type. */
function encodeRows(type: GgmlType, values: Float32Array, rows: number, cols: number): Uint8Array {
  if (type === 'F16') {
    const out = new Uint16Array(values.length);
    for (let i = 0; i < values.length; i++) out[i] = floatToHalf(values[i]);
    return new Uint8Array(out.buffer);
  }
  const format = type === 'F32' ? 'f32' : type === 'BF16' ? 'bf16' : type === 'Q8_0' ? 'q8_0' : 'q4_0';
  const out = new Uint8Array(rows * packedRowBytes(format, cols));
  quantizeRowsInto(format, values, rows, cols, out);
  return out;
}

/** GGUF tensor type of a packed block format whose bytes are ggml's. */
const PACKED_GGML: Record<'q8_0' | 'q4_0', GgmlType> = { q8_0: 'Q8_0', q4_0: 'Q4_0' };

/** A graniteflow packed q8_0 / q4_0 source tensor's format, else undefined (bf16 packs are plain BF16). */
function blockFormat(info: SafetensorsTensorInfo): 'q8_0' | 'q4_0' | undefined {
  const f = info.packed?.format;
  return f === 'q8_0' || f === 'q4_0' ? f : undefined;
}

function ggufTensorOf(plan: GgufTensorPlan, checkpoint: Checkpoint, reader: ShardReader): GgufTensor {
  const cols = plan.shape[plan.shape.length - 1];
  return {
    name: plan.name,
    type: plan.type,
    shape: plan.shape,
    write(dst) {
      for (const { source, rowStart, rows } of plan.segments) {
        const info = checkpoint.info(source);
        const blocks = blockFormat(info);
        if (blocks !== undefined && info.packed!.shape[info.packed!.shape.length - 1] !== cols) {
          throw new GgufExportError(
            `${info.file}: tensor ${JSON.stringify(source)} is packed ${blocks}, but ${plan.name} needs it reshaped to rows of ${cols}; export it from an unpacked checkpoint.`,
          );
        }
        const dtype = info.dtype as FloatDtype;
        const rowBytes = blocks !== undefined ? packedRowBytes(blocks, cols) : cols * SOURCE_BYTES[dtype];
        // Same storage in and out (a packed checkpoint's block rows are GGUF's): the bytes go across untouched.
        const verbatim =
          plan.transform === undefined &&
          (blocks !== undefined
            ? PACKED_GGML[blocks] === plan.type
            : (dtype === 'F32' && plan.type === 'F32') ||
              (dtype === 'BF16' && plan.type === 'BF16') ||
              (dtype === 'F16' && plan.type === 'F16'));
        const perPiece = Math.max(1, Math.floor(PIECE_BYTES / rowBytes));
        for (let r = 0; r < rows; r += perPiece) {
          const n = Math.min(perPiece, rows - r);
          const bytes = new Uint8Array(n * rowBytes);
          reader.read(info.file, info.offset + (rowStart + r) * rowBytes, bytes);
          if (verbatim) {
            dst.write(bytes);
            continue;
          }
          const values = new Float32Array(n * cols);
          if (blocks !== undefined) dequantizeRowsInto(blocks, bytes, cols, 0, n, values);
          else decodeFloatsInto(dtype, bytes, values);
          if (plan.transform) for (let i = 0; i < values.length; i++) values[i] = plan.transform(values[i]);
          dst.write(encodeRows(plan.type, values, n, cols));
        }
      }
    },
  };
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

/**
 * Writes the checkpoint in `folder` (config.json and safetensors weights in F32, BF16 or F16, as
 * Hugging Face and graniteflow write them, or a graniteflow packed checkpoint, whose q8_0 / q4_0
 * block rows are copied as they are when `format` is theirs) to `outPath` as a GGUF that llama.cpp (and everything
 * built on it: node-llama-cpp, Ollama, LM Studio) runs as `granitehybrid`. 2-D weights are stored
 * in `format`; norms, biases, the conv, the router and the SSM vectors in f32, as llama.cpp's
 * converter does. The tokenizer comes from the folder's tokenizer.json; a folder without one gets a
 * stand-in byte vocabulary (token ids in, logits out).
 *
 * @example
 * ```ts
 * await exportGguf('/models/granite-4.0-h-micro', '/models/granite-4.0-h-micro-q8_0.gguf', { format: 'q8_0' });
 * ```
 */
export async function exportGguf(folder: string, outPath: string, options: ExportGgufOptions = {}): Promise<ExportGgufResult> {
  const format = options.format ?? 'bf16';
  if (!GGUF_EXPORT_FORMATS.includes(format)) {
    throw new GgufExportError(`Unknown GGUF format ${JSON.stringify(format)}; expected one of ${GGUF_EXPORT_FORMATS.join(', ')}.`);
  }
  const { config, file: configFile } = readModelConfig(folder);
  if (config.model_type !== 'granitemoehybrid') {
    throw new GgufExportError(
      `${configFile}: model_type "${config.model_type}"; the GGUF export writes granitemoehybrid checkpoints only.`,
    );
  }
  const cfg = config as GraniteMoeHybridConfig;
  const reason = unsupportedReason(cfg, options.allowGroupedNorm ?? false);
  if (reason !== null) throw new GgufExportError(`${configFile}: this checkpoint ${reason}.`);

  const checkpoint = Checkpoint.open(folder);
  const reader = new ShardReader();
  try {
    // The tensors graniteflow's loader expects (the Hugging Face keys), with their shapes.
    const expected = new Map<string, readonly number[]>();
    for (const [name, p] of new GraniteMoeHybridForCausalLM(cfg).namedParameters()) expected.set(name, p.shape);
    const present = new Set(checkpoint.names());
    if (cfg.tie_word_embeddings) present.delete('lm_head.weight'); // tied: Hugging Face ignores it too
    const missing = [...expected.keys()].filter((n) => !present.has(n));
    const unexpected = [...present].filter((n) => !expected.has(n));
    if (missing.length > 0 || unexpected.length > 0) {
      const list = (names: string[]) =>
        names
          .slice(0, 5)
          .map((n) => JSON.stringify(n))
          .join(', ') + (names.length > 5 ? `, … (${names.length} in all)` : '');
      throw new GgufExportError(
        `${folder}: the weights do not match config.json${missing.length ? `; missing ${list(missing)}` : ''}${unexpected.length ? `; unexpected ${list(unexpected)}` : ''}.`,
      );
    }
    for (const [name, shape] of expected) {
      const info = checkpoint.info(name);
      const logical = info.packed?.shape ?? info.shape;
      if (blockFormat(info) === undefined && !isFloatDtype(info.dtype as SafetensorsDtype)) {
        throw new GgufExportError(
          `${info.file}: tensor ${JSON.stringify(name)} is ${info.dtype}; the GGUF export reads F32, BF16 and F16 weights and graniteflow's packed ones.`,
        );
      }
      if (!sameShape(logical, shape)) {
        throw new GgufExportError(
          `${info.file}: tensor ${JSON.stringify(name)} has shape [${logical}], but config.json implies [${shape}].`,
        );
      }
    }

    const plans = planGgufTensors(cfg, format, (name) => expected.get(name)!);
    const rawConfig = readConfigJson(folder);
    const vocab = ggufVocabMetadata(folder, cfg.vocab_size, rawConfig);
    const metadata: [string, GgufValue][] = [
      ...architectureMetadata(cfg, format, options.name ?? path.basename(path.resolve(folder))),
      ...(vocab ?? byteFallbackVocabMetadata(cfg.vocab_size, rawConfig, configFile)),
    ];
    let done = 0;
    const tensors = plans.map((plan) => {
      const t = ggufTensorOf(plan, checkpoint, reader);
      return {
        ...t,
        write: async (dst: Parameters<GgufTensor['write']>[0]) => {
          await t.write(dst);
          options.onProgress?.({ tensor: plan.name, done: ++done, total: plans.length });
        },
      };
    });
    await writeGguf(outPath, metadata, tensors);
    return {
      path: outPath,
      format,
      tensors: plans.length,
      bytes: fs.statSync(outPath).size,
      tokenizer: vocab ? 'tokenizer.json' : 'bytes',
    };
  } finally {
    reader.close();
    checkpoint.close();
  }
}
