import * as fs from 'node:fs';
import * as path from 'node:path';
import { INDEX_FILE, SINGLE_FILE, writeSafetensors, type WritableTensor } from '@graniteflow/core';
import { createPrng } from '../generation/prng';
import type { GraniteMoeHybridConfig } from '../models/granitemoehybrid/config';
import { GraniteMoeHybridForCausalLM } from '../models/granitemoehybrid/model';

/** Options of {@link writeRandomCheckpoint}. */
export interface RandomCheckpointOptions {
  seed?: number;
  /** Storage dtype of the weights (default BF16, as the released checkpoints). */
  dtype?: 'F32' | 'BF16';
  /** Start a new shard (with an index file) once a shard reaches this many bytes (default 2 GB). */
  maxShardBytes?: number;
  /** Standard deviation of the linear and embedding weights, drawn uniformly (default 0.02). */
  std?: number;
}

/** Hugging Face's initialisation of the parameters that are not plain N(0, std) (GRANITE.md §10). */
function initialValue(name: string, shape: readonly number[], index: number): number | undefined {
  if (name.endsWith('.A_log')) return Math.log(index + 1);
  if (name.endsWith('.dt_bias') || name.endsWith('.D')) return 1;
  if (name.endsWith('norm.weight') || name.endsWith('layernorm.weight')) return 1;
  if (name.endsWith('.bias')) return 0;
  void shape;
  return undefined;
}

/**
 * Writes a Hugging Face–layout checkpoint folder (config.json, safetensors, index when sharded) of
 * a config with random weights: for tests and benchmarks at real layer shapes without downloading.
 * Tensors are generated and written shard by shard, so memory stays near one shard.
 */
export function writeRandomCheckpoint(
  dir: string,
  config: GraniteMoeHybridConfig,
  options: RandomCheckpointOptions = {},
): void {
  const { seed = 0, dtype = 'BF16', maxShardBytes = 2e9, std = 0.02 } = options;
  const rng = createPrng(seed);
  // Uniform on [−√3·std, √3·std] has standard deviation std, at one draw per weight (benchmark
  // checkpoints hold billions).
  const halfWidth = Math.sqrt(3) * std;
  fs.mkdirSync(dir, { recursive: true });
  const skeleton = new GraniteMoeHybridForCausalLM(config);
  const bytesPer = dtype === 'F32' ? 4 : 2;
  const shards: Map<string, WritableTensor>[] = [new Map()];
  const shardFiles: string[] = [];
  const weightMap: Record<string, string> = {};
  let shardBytes = 0;
  let total = 0;
  const flush = (final: boolean) => {
    const index = shardFiles.length;
    const name = `model-${index + 1}.safetensors`;
    writeSafetensors(path.join(dir, name), shards[index], { metadata: { format: 'pt' } });
    shardFiles.push(name);
    if (!final) shards.push(new Map());
    shardBytes = 0;
  };
  for (const [name, param] of skeleton.namedParameters()) {
    const data = new Float32Array(param.size);
    const fixed = initialValue(name, param.shape, 0) !== undefined;
    for (let i = 0; i < data.length; i++) {
      data[i] = fixed ? initialValue(name, param.shape, i % param.shape[0])! : halfWidth * (2 * rng.nextFloat() - 1);
    }
    const bytes = data.length * bytesPer;
    if (shardBytes > 0 && shardBytes + bytes > maxShardBytes) flush(false);
    shards[shards.length - 1].set(name, { shape: [...param.shape], data, dtype });
    weightMap[name] = `model-${shards.length}.safetensors`;
    shardBytes += bytes;
    total += bytes;
  }
  flush(true);
  const count = shardFiles.length;
  const finalName = (i: number) => (count === 1 ? SINGLE_FILE : `model-${String(i + 1).padStart(5, '0')}-of-${String(count).padStart(5, '0')}.safetensors`);
  shardFiles.forEach((f, i) => fs.renameSync(path.join(dir, f), path.join(dir, finalName(i))));
  if (count > 1) {
    for (const k of Object.keys(weightMap)) weightMap[k] = finalName(Number(/model-(\d+)/.exec(weightMap[k])![1]) - 1);
    fs.writeFileSync(path.join(dir, INDEX_FILE), JSON.stringify({ metadata: { total_size: total }, weight_map: weightMap }, null, 2));
  }
  const { time_step_limit: limit, ...rest } = config;
  const json = { ...rest, time_step_limit: [limit[0], Number.isFinite(limit[1]) ? limit[1] : null], architectures: ['GraniteMoeHybridForCausalLM'] };
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(json, null, 2));
}
